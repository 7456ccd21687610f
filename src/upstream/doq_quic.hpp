// What both halves of the DoQ transport (doq.cpp: queries and streams;
// doq_connection.cpp: the QUIC connection) need: RFC 9250's error codes and
// ngtcp2's clock.
#pragma once

#include <ngtcp2/ngtcp2.h>

#include <chrono>
#include <cstdint>
#include <limits>

#include "net/clock.hpp"

namespace dnsgate::doq {

// RFC 9250 4.3: DoQ error codes.
inline constexpr std::uint64_t kNoError = 0x0;
inline constexpr std::uint64_t kProtocolError = 0x2;
inline constexpr std::uint64_t kRequestCancelled = 0x3;

// ngtcp2 counts nanoseconds from any fixed origin: ours is steady_clock's.
inline ngtcp2_tstamp to_tstamp(SteadyTime time) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch());
  return ns.count() < 0 ? 0 : static_cast<ngtcp2_tstamp>(ns.count());
}

inline SteadyTime from_tstamp(ngtcp2_tstamp stamp) noexcept {
  if (stamp >= static_cast<ngtcp2_tstamp>(std::numeric_limits<std::int64_t>::max())) return kNever;
  return SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(
      std::chrono::nanoseconds(static_cast<std::int64_t>(stamp))));
}

}  // namespace dnsgate::doq
