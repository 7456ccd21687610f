// What the doq upstream parses of a server's stream bytes before an answer
// reaches the loop: doq_answer_append on arbitrary octets cut into
// arbitrary pieces (as QUIC STREAM frames deliver them), with or without
// the FIN after the last. Checked against a reference computed on the
// whole stream: a 2-octet length L, then exactly L octets, is whole;
// octets past them, or a FIN before them, is a violation; anything else is
// partial. After each piece that is not a violation, the frame holds
// exactly the octets given so far, never more than the length announces.
//
// Input: octet 0 seeds the cut sizes, its top bit says whether the FIN
// comes; the rest is the stream.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_check.hpp"
#include "upstream/doq_frame.hpp"

namespace {

using namespace dnsgate;

DoqAnswer reference(std::span<const std::uint8_t> stream, bool fin) {
  if (stream.size() < 2) return fin ? DoqAnswer::violation : DoqAnswer::partial;
  const std::size_t whole = 2 + (std::size_t{stream[0]} << 8 | stream[1]);
  if (stream.size() == whole) return DoqAnswer::whole;
  if (stream.size() > whole || fin) return DoqAnswer::violation;
  return DoqAnswer::partial;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool fin = (data[0] & 0x80) != 0;
  std::uint32_t seed = data[0] | 0x100U;
  const std::span<const std::uint8_t> stream(data + 1, size - 1);
  const DoqAnswer expected = reference(stream, fin);

  std::vector<std::uint8_t> frame;
  std::size_t at = 0;
  DoqAnswer state = DoqAnswer::partial;
  while (true) {
    seed = seed * 1103515245U + 12345U;
    // Mostly small pieces, empty ones included; now and then a large one.
    std::size_t cut = (seed >> 16) % 8 == 0 ? (seed >> 8) % 4096 : (seed >> 16) % 19;
    cut = std::min(cut, stream.size() - at);
    const bool last = at + cut == stream.size();
    state = doq_answer_append(frame, stream.subspan(at, cut), last && fin);
    at += cut;
    if (state == DoqAnswer::violation) break;
    // Not a violation: the frame is the stream so far, within its length.
    const auto given = stream.first(at);
    FUZZ_CHECK(frame.size() == at && std::equal(frame.begin(), frame.end(), given.begin()));
    FUZZ_CHECK(frame.size() <= kDoqMaxFrame);
    FUZZ_CHECK(state == reference(given, last && fin));
    if (last) break;
  }
  if (state == DoqAnswer::violation) {
    // Seen early only when the whole stream is one.
    FUZZ_CHECK(expected == DoqAnswer::violation);
    FUZZ_CHECK(frame.size() <= kDoqMaxFrame);
  } else {
    FUZZ_CHECK(state == expected);
  }
  return 0;
}
