// What the stream upstreams (do53-tcp, DoT) parse of a resolver's bytes
// before an answer reaches the loop, and what they write of a query:
//
// 1. FrameReader::feed + next_frame on arbitrary octets cut into arbitrary
//    pieces (as TLS records arrive): the frames come out exactly as a
//    reference split of the whole stream, whatever the cuts, and never
//    past the octets given.
// 2. plan_padding + append_padded on every QUERY frame that parse_query
//    accepts (the only queries dnsgate forwards, so pads; another opcode
//    is answered NOTIMP, maybe from its header alone): the padded query
//    still parses, asks the same question with the same EDNS, and is
//    either unchanged or a multiple of 128 octets that only grew the OPT.
//
// Input: octet 0 seeds the cut sizes; the rest is the stream.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dns/padding.hpp"
#include "dnsgate/parser.hpp"
#include "fuzz_check.hpp"
#include "net/frame_reader.hpp"

namespace {

using namespace dnsgate;
using Bytes = std::vector<std::uint8_t>;

std::vector<Bytes> reference_split(std::span<const std::uint8_t> stream) {
  std::vector<Bytes> frames;
  std::size_t at = 0;
  while (stream.size() - at >= 2) {
    const std::size_t length = std::size_t{stream[at]} << 8 | stream[at + 1];
    if (stream.size() - at - 2 < length) break;
    frames.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(at + 2),
                        stream.begin() + static_cast<std::ptrdiff_t>(at + 2 + length));
    at += 2 + length;
  }
  return frames;
}

void check_padding(std::span<const std::uint8_t> frame) {
  const auto parsed = parse_query(frame);
  if (!parsed.ok() || parsed.value().header.opcode() != kOpcodeQuery) return;
  const PaddingPlan plan = plan_padding(frame);
  Bytes padded;
  append_padded(padded, frame, plan);
  if (plan.extra == 0) {
    FUZZ_CHECK(padded == Bytes(frame.begin(), frame.end()));
    return;
  }
  FUZZ_CHECK(padded.size() % kPaddingBlock == 0);
  FUZZ_CHECK(padded.size() == frame.size() + plan.extra);
  FUZZ_CHECK(parsed.value().edns.present);
  const auto again = parse_query(padded);
  FUZZ_CHECK(again.ok());
  const ParsedQuery& before = parsed.value();
  const ParsedQuery& after = again.value();
  FUZZ_CHECK(after.question_end == before.question_end);
  FUZZ_CHECK(std::equal(frame.begin(),
                        frame.begin() + static_cast<std::ptrdiff_t>(before.question_end),
                        padded.begin()));
  FUZZ_CHECK(after.edns.present && after.edns.udp_payload_size == before.edns.udp_payload_size &&
             after.edns.version == before.edns.version &&
             after.edns.dnssec_ok == before.edns.dnssec_ok);
  // Padding twice changes nothing: the query now carries its option.
  FUZZ_CHECK(plan_padding(padded).extra == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::uint32_t seed = data[0] * 2654435761U + 1;
  const std::span<const std::uint8_t> stream(data + 1, size - 1);
  const std::vector<Bytes> expected = reference_split(stream);

  FrameReader reader;
  std::vector<Bytes> got;
  std::size_t at = 0;
  while (at < stream.size()) {
    seed = seed * 1103515245U + 12345U;
    const std::size_t cut = std::min<std::size_t>(stream.size() - at, 1 + (seed >> 16) % 700);
    reader.feed(stream.subspan(at, cut));
    at += cut;
    while (const auto frame = reader.next_frame()) got.emplace_back(frame->begin(), frame->end());
  }
  FUZZ_CHECK(got == expected);
  for (const Bytes& frame : got) check_padding(frame);
  return 0;
}
