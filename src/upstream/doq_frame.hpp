// The answer on a DoQ stream (RFC 9250 4.2): a 2-octet length, the DNS
// message, then the server's FIN. What the doq upstream parses of the
// server's stream bytes before the answer reaches the loop; pure, so that
// it can be tested and fuzzed on its own.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dnsgate {

inline constexpr std::size_t kDoqMaxFrame = 2 + 65535;  // the length and the largest message

enum class DoqAnswer : std::uint8_t {
  partial,    // more to come
  whole,      // `frame` holds exactly the length and the message it announces
  violation,  // octets after the message, or the FIN before it was whole
};

// Appends what the stream brought next (`data`, then its FIN when `fin`) to
// `frame`, the octets received so far. `frame` never holds more than the
// length announces (so never more than kDoqMaxFrame); after a violation
// its content does not matter. A whole frame may still see its FIN with
// no data (whole again), and nothing else.
inline DoqAnswer doq_answer_append(std::vector<std::uint8_t>& frame,
                                   std::span<const std::uint8_t> data, bool fin) {
  std::size_t at = 0;
  if (frame.size() < 2) {
    at = std::min(2 - frame.size(), data.size());
    frame.insert(frame.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(at));
    if (frame.size() < 2) return fin ? DoqAnswer::violation : DoqAnswer::partial;
  }
  const std::size_t whole = 2 + (std::size_t{frame[0]} << 8 | frame[1]);
  if (frame.size() > whole || data.size() - at > whole - frame.size()) return DoqAnswer::violation;
  frame.insert(frame.end(), data.begin() + static_cast<std::ptrdiff_t>(at), data.end());
  if (frame.size() == whole) return DoqAnswer::whole;
  return fin ? DoqAnswer::violation : DoqAnswer::partial;
}

}  // namespace dnsgate
