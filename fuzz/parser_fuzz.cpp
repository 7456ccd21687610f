// parse_query and parse_response_question on arbitrary bytes.
//
// Beyond "no crash, no read past the packet" (ASan) and "no undefined
// behaviour" (UBSan), every query the parser accepts must be answerable:
// each response dnsgate could synthesize for it must parse back as a
// response carrying the same question (or none, for another opcode without
// one), octet for octet, with only the flags RFC 1035 and RFC 8906 allow,
// and must be accepted by the upstream answer check for that question.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dnsgate/name.hpp"
#include "dnsgate/parser.hpp"
#include "dnsgate/response.hpp"
#include "fuzz_check.hpp"
#include "upstream/do53_udp.hpp"

namespace {

using namespace dnsgate;

constexpr std::array kRcodes{Rcode::refused, Rcode::nxdomain, Rcode::notimp, Rcode::servfail};
constexpr std::array kEdes{ExtendedError::none, ExtendedError::blocked,
                           ExtendedError::no_reachable_authority, ExtendedError::network_error};

std::uint16_t u16_at(std::span<const std::uint8_t> bytes, std::size_t at) {
  return static_cast<std::uint16_t>(bytes[at] << 8 | bytes[at + 1]);
}

// The question of an accepted query: held verbatim in the packet.
void check_question(std::span<const std::uint8_t> packet, const ParsedQuery& query) {
  const auto name = query.question.name.wire();
  FUZZ_CHECK(name.size() >= 1 && name.size() <= kMaxNameOctets);
  FUZZ_CHECK(query.question_end == kHeaderOctets + name.size() + 4);
  FUZZ_CHECK(query.question_end <= packet.size());
  // The question name is never compressed, so the packet holds it verbatim.
  for (std::size_t i = 0; i < name.size(); ++i) FUZZ_CHECK(packet[kHeaderOctets + i] == name[i]);
  FUZZ_CHECK(query.question.qtype == u16_at(packet, kHeaderOctets + name.size()));
  FUZZ_CHECK(query.question.qclass == u16_at(packet, kHeaderOctets + name.size() + 2));
  FUZZ_CHECK(query.question.name.equals_ignore_case(query.question.name));
  const auto again = QueryName::from_wire(name);
  FUZZ_CHECK(again.has_value() && again->equals_ignore_case(query.question.name));
  FUZZ_CHECK(!query.question.name.to_string().empty());
}

void check_accepted_query(std::span<const std::uint8_t> packet, const ParsedQuery& query) {
  // What the parser promises about an accepted query: a QUERY has exactly
  // one question; another opcode has QDCOUNT 0 or 1 as read, or only its
  // header was read.
  FUZZ_CHECK(packet.size() >= kHeaderOctets);
  FUZZ_CHECK(!query.header.qr());
  const bool is_query = query.header.opcode() == kOpcodeQuery;
  if (is_query) {
    FUZZ_CHECK(query.header.qdcount == 1 && query.has_question && !query.header_only);
  } else if (query.header_only) {
    FUZZ_CHECK(!query.has_question && !query.edns.present);
  } else {
    FUZZ_CHECK(query.header.qdcount <= 1);
    FUZZ_CHECK(query.has_question == (query.header.qdcount == 1));
  }
  if (query.has_question) {
    check_question(packet, query);
  } else {
    FUZZ_CHECK(query.question_end == kHeaderOctets);
  }
  const auto name = query.question.name.wire();

  // Every synthesized answer reads back as the answer to this question.
  const QueryEcho echo = echo_of(query, packet);
  FUZZ_CHECK(echo.question.size() == (query.has_question ? name.size() + 4 : 0));
  for (const Rcode rcode : kRcodes) {
    const Rcode sent = response_rcode(echo, rcode);
    FUZZ_CHECK(sent == (query.edns.present && query.edns.version > 0 ? Rcode::badvers : rcode));
    for (const ExtendedError ede : kEdes) {
      std::array<std::uint8_t, kMaxSynthesizedOctets> out{};
      const std::size_t size = synthesize_response(echo, rcode, ede, out);
      FUZZ_CHECK(size > 0 && size <= out.size());
      const std::span<const std::uint8_t> answer{out.data(), size};
      const auto response = parse_response_question(answer);
      FUZZ_CHECK(response.ok());
      const ResponseQuestion& r = response.value();
      FUZZ_CHECK(r.header.qr());
      FUZZ_CHECK(r.header.id == query.header.id);
      FUZZ_CHECK(r.header.opcode() == query.header.opcode());
      FUZZ_CHECK(r.header.rcode() == (static_cast<std::uint8_t>(sent) & flag::kRcodeMask));
      // AA TC Z AD never; RD CD copied and RA set for QUERY only.
      const std::uint16_t kept = is_query ? query.header.flags & (flag::kRd | flag::kCd) : 0;
      FUZZ_CHECK((r.header.flags & ~(flag::kOpcodeMask | flag::kRcodeMask)) ==
                 (flag::kQr | kept | (is_query ? flag::kRa : 0)));
      FUZZ_CHECK(r.header.qdcount == (query.has_question ? 1 : 0));
      FUZZ_CHECK(r.header.ancount == 0 && r.header.nscount == 0);
      FUZZ_CHECK(r.header.arcount == (query.edns.present ? 1 : 0));
      if (query.has_question) {
        const auto echoed = r.question.name.wire();
        FUZZ_CHECK(echoed.size() == name.size());
        for (std::size_t i = 0; i < name.size(); ++i) FUZZ_CHECK(echoed[i] == name[i]);
        FUZZ_CHECK(r.question.qtype == query.question.qtype);
        FUZZ_CHECK(r.question.qclass == query.question.qclass);
        FUZZ_CHECK(answers_question(r, echo.question));
      }

      // With QR cleared it is a well-formed query again: same question,
      // and an OPT exactly when the original had one, at version 0 with the
      // extended rcode's upper bits.
      std::vector<std::uint8_t> as_query(answer.begin(), answer.end());
      as_query[2] = static_cast<std::uint8_t>(as_query[2] & 0x7F);
      const auto reparsed = parse_query(as_query);
      FUZZ_CHECK(reparsed.ok());
      FUZZ_CHECK(!reparsed.value().header_only);
      FUZZ_CHECK(reparsed.value().has_question == query.has_question);
      FUZZ_CHECK(reparsed.value().question_end == query.question_end);
      FUZZ_CHECK(reparsed.value().edns.present == query.edns.present);
      if (query.edns.present) {
        FUZZ_CHECK(reparsed.value().edns.dnssec_ok == query.edns.dnssec_ok);
        FUZZ_CHECK(reparsed.value().edns.udp_payload_size == kAdvertisedUdpPayload);
        FUZZ_CHECK(reparsed.value().edns.version == 0);
        FUZZ_CHECK(answer[query.question_end + 5] == static_cast<std::uint8_t>(sent) >> 4);
      }
    }
  }

  // An output buffer one octet short is refused, never overrun.
  std::array<std::uint8_t, kMaxSynthesizedOctets> out{};
  const std::size_t full = synthesize_response(echo, Rcode::refused, ExtendedError::blocked, out);
  FUZZ_CHECK(synthesize_response(echo, Rcode::refused, ExtendedError::blocked,
                                 std::span<std::uint8_t>{out.data(), full - 1}) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A heap copy of exactly `size` octets, so ASan sees any read past the end.
  const std::vector<std::uint8_t> bytes(data, data + size);
  const std::span<const std::uint8_t> packet{bytes.data(), bytes.size()};

  const auto query = parse_query(packet);
  if (query.ok()) {
    check_accepted_query(packet, query.value());
  } else {
    FUZZ_CHECK(!to_string(query.error()).empty());
    FUZZ_CHECK(query.error() != ParseError::not_a_response);
  }

  const auto response = parse_response_question(packet);
  if (response.ok()) {
    FUZZ_CHECK(response.value().header.qr());
    FUZZ_CHECK(response.value().header.qdcount <= 1);
  } else {
    FUZZ_CHECK(response.error() != ParseError::response_bit_set);
  }

  // The same octets with QR flipped: a query the parser accepts has a
  // question the response parser accepts too, and the same one.
  if (size >= kHeaderOctets) {
    std::vector<std::uint8_t> flipped(bytes);
    flipped[2] = static_cast<std::uint8_t>(flipped[2] ^ 0x80);
    const auto other = parse_response_question(flipped);
    if (query.ok() && query.value().has_question) {
      FUZZ_CHECK(other.ok());
      FUZZ_CHECK(other.value().header.qdcount == 1);
      FUZZ_CHECK(other.value().question.name.wire().size() ==
                 query.value().question.name.wire().size());
      FUZZ_CHECK(other.value().question.qtype == query.value().question.qtype);
      FUZZ_CHECK(other.value().question.qclass == query.value().question.qclass);
    }
  }

  // Presentation names of whatever codes the header holds never fail.
  if (size >= 4) {
    FUZZ_CHECK(!qtype_to_string(u16_at(packet, 0)).empty());
    FUZZ_CHECK(!qclass_to_string(u16_at(packet, 2)).empty());
    FUZZ_CHECK(!rcode_to_string(packet[3]).empty());
    FUZZ_CHECK(!opcode_to_string(static_cast<std::uint8_t>(packet[2] >> 3 & 0x0F)).empty());
  }
  return 0;
}
