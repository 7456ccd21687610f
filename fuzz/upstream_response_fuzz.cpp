// The upstream answer acceptance path on arbitrary bytes: the source check
// (Do53UdpUpstream::is_resolver), parse_response_question, then
// answers_question against a question dnsgate sent. Checked against a
// reference written here: an answer is accepted exactly when it parses as a
// response (QR=1) with one question whose name equals the sent name ASCII
// case-insensitively, octet for octet (a question name is never compressed),
// and whose type and class are the sent ones.
//
// Input: octet 0 picks the sent question (one of a fixed few, or the
// response's own question with its case flipped, which must match); octets
// 1-28 are the source address (sockaddr bytes); the rest is the datagram.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dnsgate/endpoint.hpp"
#include "dnsgate/parser.hpp"
#include "fuzz_check.hpp"
#include "upstream/do53_udp.hpp"

namespace {

using namespace dnsgate;
using Bytes = std::vector<std::uint8_t>;

Bytes question(std::initializer_list<const char*> labels, std::uint16_t qtype,
               std::uint16_t qclass) {
  Bytes out;
  for (const char* label : labels) {
    out.push_back(static_cast<std::uint8_t>(std::strlen(label)));
    out.insert(out.end(), label, label + std::strlen(label));
  }
  out.push_back(0);
  out.push_back(static_cast<std::uint8_t>(qtype >> 8));
  out.push_back(static_cast<std::uint8_t>(qtype));
  out.push_back(static_cast<std::uint8_t>(qclass >> 8));
  out.push_back(static_cast<std::uint8_t>(qclass));
  return out;
}

const std::array<Bytes, 4> kSent = {
    question({"www", "example", "com"}, 1, 1),
    question({"WwW", "ExAmple", "COM"}, 28, 1),
    question({}, 2, 1),  // the root, NS
    question({"a"}, 65280, 3),
};

constexpr std::size_t kAddressOctets = 28;  // sizeof(sockaddr_in6)

const Do53UdpUpstream& upstream() {
  // fd -1: the constructor's fcntl/setsockopt fail harmlessly, and the
  // checks under test never touch the socket.
  static const Do53UdpUpstream resolver(-1, *Endpoint::parse("127.0.0.1:5300"));
  return resolver;
}

std::uint8_t lower(std::uint8_t c) {
  return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

bool reference_accepts(std::span<const std::uint8_t> packet, std::span<const std::uint8_t> sent) {
  if (packet.size() < 12 || (packet[2] & 0x80) == 0) return false;
  if (packet[4] != 0 || packet[5] != 1) return false;  // QDCOUNT == 1
  if (packet.size() < 12 + sent.size()) return false;
  for (std::size_t i = 0; i < sent.size(); ++i) {
    if (lower(packet[12 + i]) != lower(sent[i])) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 + kAddressOctets) return 0;
  const std::uint8_t mode = data[0];

  // The source check: only 127.0.0.1:5300 is the resolver.
  sockaddr_storage source{};
  std::memcpy(&source, data + 1, kAddressOctets);
  const auto* address = reinterpret_cast<const sockaddr*>(&source);
  const socklen_t length = static_cast<socklen_t>(data[1 + 2] % (sizeof source + 1));
  const sockaddr_in* in4 = reinterpret_cast<const sockaddr_in*>(&source);
  const bool expected_source = source.ss_family == AF_INET && length >= sizeof(sockaddr_in) &&
                               ntohs(in4->sin_port) == 5300 &&
                               ntohl(in4->sin_addr.s_addr) == INADDR_LOOPBACK;
  FUZZ_CHECK(upstream().is_resolver(address, length) == expected_source);

  const Bytes packet(data + 1 + kAddressOctets, data + size);
  const auto response = parse_response_question(packet);

  Bytes sent;
  if (mode % 5 < kSent.size()) {
    sent = kSent[mode % 5];
  } else if (response.ok() && response.value().header.qdcount == 1) {
    // The response's own question with letters' case flipped must match;
    // with another type it must not.
    const auto name = response.value().question.name.wire();
    sent.assign(name.begin(), name.end());
    for (std::uint8_t& c : sent) {
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) c ^= 0x20;
    }
    const std::uint16_t qtype = response.value().question.qtype;
    const std::uint16_t qclass = response.value().question.qclass;
    sent.push_back(static_cast<std::uint8_t>(qtype >> 8));
    sent.push_back(static_cast<std::uint8_t>(qtype));
    sent.push_back(static_cast<std::uint8_t>(qclass >> 8));
    sent.push_back(static_cast<std::uint8_t>(qclass));
    FUZZ_CHECK(answers_question(response.value(), sent));
    Bytes other_type(sent);
    other_type[other_type.size() - 3] ^= 0x01;
    FUZZ_CHECK(!answers_question(response.value(), other_type));
    Bytes shorter(sent.begin(), sent.end() - 1);
    FUZZ_CHECK(!answers_question(response.value(), shorter));
  } else {
    sent = kSent[0];
  }

  const bool accepted = response.ok() && answers_question(response.value(), sent);
  FUZZ_CHECK(accepted == reference_accepts(packet, sent));
  return 0;
}
