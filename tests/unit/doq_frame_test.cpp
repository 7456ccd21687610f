// The answer on a DoQ stream (RFC 9250 4.2): a 2-octet length, the
// message, the FIN; anything after the message, or a FIN before it is
// whole, is a protocol violation, however the octets are cut.
#include "upstream/doq_frame.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace dnsgate {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes frame_of(std::size_t length, std::uint8_t fill = 0xAB) {
  Bytes out{static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
  out.insert(out.end(), length, fill);
  return out;
}

// Feeds `stream` cut every `step` octets, the FIN with the last piece;
// returns the state after each piece.
std::vector<DoqAnswer> feed(Bytes& frame, const Bytes& stream, std::size_t step) {
  std::vector<DoqAnswer> states;
  for (std::size_t at = 0; at < stream.size() || states.empty(); at += step) {
    const std::size_t size = std::min(step, stream.size() - std::min(at, stream.size()));
    const bool last = at + step >= stream.size();
    states.push_back(doq_answer_append(
        frame, std::span<const std::uint8_t>(stream).subspan(std::min(at, stream.size()), size),
        last));
    if (last) break;
  }
  return states;
}

TEST(DoqFrame, AWholeAnswerIsWholeHoweverItIsCut) {
  const Bytes stream = frame_of(300);
  for (const std::size_t step : {1U, 2U, 3U, 7U, 150U, 302U, 1000U}) {
    Bytes frame;
    const auto states = feed(frame, stream, step);
    EXPECT_EQ(states.back(), DoqAnswer::whole) << step;
    for (std::size_t i = 0; i + 1 < states.size(); ++i) {
      EXPECT_EQ(states[i], DoqAnswer::partial) << step;
    }
    EXPECT_EQ(frame, stream) << step;
  }
}

TEST(DoqFrame, TheFinMayComeAloneAfterAWholeAnswer) {
  const Bytes stream = frame_of(40);
  Bytes frame;
  EXPECT_EQ(doq_answer_append(frame, stream, false), DoqAnswer::whole);
  EXPECT_EQ(doq_answer_append(frame, {}, true), DoqAnswer::whole);
  EXPECT_EQ(frame, stream);
}

TEST(DoqFrame, OctetsAfterTheMessageAreAViolation) {
  Bytes stream = frame_of(40);
  stream.push_back(0);
  Bytes frame;
  EXPECT_EQ(doq_answer_append(frame, stream, true), DoqAnswer::violation);
  // Also when they come in a later piece, or when a second frame follows.
  Bytes later;
  EXPECT_EQ(doq_answer_append(later, frame_of(40), false), DoqAnswer::whole);
  EXPECT_EQ(doq_answer_append(later, Bytes{0, 12}, false), DoqAnswer::violation);
  EXPECT_LE(later.size(), 42U);
}

TEST(DoqFrame, AFinBeforeTheMessageIsWholeIsAViolation) {
  for (const Bytes& stream : {Bytes{}, Bytes{0}, Bytes{0, 12}, Bytes{0, 12, 1, 2, 3}}) {
    Bytes frame;
    EXPECT_EQ(doq_answer_append(frame, stream, true), DoqAnswer::violation) << stream.size();
  }
  // Cut as it may be.
  Bytes frame;
  EXPECT_EQ(doq_answer_append(frame, Bytes{0}, false), DoqAnswer::partial);
  EXPECT_EQ(doq_answer_append(frame, Bytes{12, 1}, false), DoqAnswer::partial);
  EXPECT_EQ(doq_answer_append(frame, {}, true), DoqAnswer::violation);
}

TEST(DoqFrame, ALengthOfZeroIsAWholeEmptyMessage) {
  // Whole as framing goes; the upstream then fails it as too short to be
  // a DNS message.
  Bytes frame;
  EXPECT_EQ(doq_answer_append(frame, Bytes{0, 0}, true), DoqAnswer::whole);
  EXPECT_EQ(frame.size(), 2U);
}

TEST(DoqFrame, TheLargestMessageFitsAndNothingMore) {
  const Bytes stream = frame_of(65535);
  Bytes frame;
  EXPECT_EQ(doq_answer_append(frame, stream, true), DoqAnswer::whole);
  EXPECT_EQ(frame.size(), kDoqMaxFrame);
  Bytes more = stream;
  more.push_back(1);
  Bytes other;
  EXPECT_EQ(doq_answer_append(other, more, false), DoqAnswer::violation);
  EXPECT_LE(other.size(), kDoqMaxFrame);
}

}  // namespace
}  // namespace dnsgate
