// What the connection-based transports (DoT, DoH, DoQ) share about
// connections that fail: how long to wait before the next one, which
// failures another attempt may not repeat, and how often a query may be
// stranded on connections that answered nothing.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "dnsgate/upstream_error.hpp"
#include "net/clock.hpp"

namespace dnsgate {

// A query written on this many connections that closed without answering
// anything fails (connection_closed) instead of going again.
inline constexpr std::uint8_t kMaxStrandedAttempts = 2;

// The resolver restarting, a network blip: another attempt may work.
// Certificate and handshake failures would only repeat.
inline bool is_transient(UpstreamError error) noexcept {
  return error.kind == UpstreamErrorKind::connect_refused ||
         error.kind == UpstreamErrorKind::connect_failed ||
         error.kind == UpstreamErrorKind::connect_timeout ||
         error.kind == UpstreamErrorKind::connection_closed ||
         error.kind == UpstreamErrorKind::http_goaway;
}

// After a connection fails, no new one for a while: 100 ms, doubling up to
// 10 s, back to 100 ms once a handshake completes. Meanwhile queries fail
// at once with the failure that started it.
class ReconnectBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirst{100};
  static constexpr std::chrono::milliseconds kMax{10000};

  void failed(UpstreamError error, SteadyTime now) noexcept {
    last_failure_ = error;
    retry_after_ = now + delay_;
    delay_ = std::min(delay_ * 2, kMax);
  }
  void succeeded() noexcept { delay_ = kFirst; }

  bool waiting(SteadyTime now) const noexcept { return now < retry_after_; }
  SteadyTime retry_after() const noexcept { return retry_after_; }
  UpstreamError last_failure() const noexcept { return last_failure_; }

 private:
  std::chrono::milliseconds delay_ = kFirst;
  SteadyTime retry_after_{};
  UpstreamError last_failure_;
};

}  // namespace dnsgate
