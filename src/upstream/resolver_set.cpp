#include "upstream/resolver_set.hpp"

#include <algorithm>

namespace dnsgate {

ResolverSet::ResolverSet(std::size_t count, ResolverPolicy policy)
    : policy_(policy), health_(count) {}

bool ResolverSet::is_connection_failure(UpstreamError error) noexcept {
  switch (error.kind) {
    case UpstreamErrorKind::connect_refused:
    case UpstreamErrorKind::connect_failed:
    case UpstreamErrorKind::connect_timeout:
    case UpstreamErrorKind::connection_closed:
    case UpstreamErrorKind::tls_handshake:
    case UpstreamErrorKind::tls_certificate:
    case UpstreamErrorKind::tls_pin_mismatch:
    case UpstreamErrorKind::http_goaway:
    case UpstreamErrorKind::http_protocol_error:
    case UpstreamErrorKind::doq_protocol_error:
      return true;
    default:
      return false;
  }
}

bool ResolverSet::usable(std::size_t resolver, SteadyTime now) const noexcept {
  const Health& health = health_[resolver];
  return !health.down || (!health.probing && now >= health.down_until);
}

std::size_t ResolverSet::choose(SteadyTime now, std::uint32_t tried) noexcept {
  const std::size_t count = health_.size();
  const std::size_t start = policy_ == ResolverPolicy::round_robin ? next_ : 0;
  std::size_t fallback = kNone;
  for (std::size_t step = 0; step < count; ++step) {
    const std::size_t resolver = (start + step) % count;
    if (resolver < 32 && (tried & (1U << resolver)) != 0) continue;
    if (usable(resolver, now)) {
      Health& health = health_[resolver];
      if (health.down) health.probing = true;  // this query is the probe
      if (policy_ == ResolverPolicy::round_robin) next_ = (resolver + 1) % count;
      return resolver;
    }
    if (fallback == kNone || health_[resolver].down_until < health_[fallback].down_until) {
      fallback = resolver;
    }
  }
  return fallback;
}

void ResolverSet::mark_down(Health& health, SteadyTime now) noexcept {
  if (health.down) {
    // A probe failed: wait longer before the next one.
    health.backoff = std::min(health.backoff * 2, kMaxBackoff);
  } else {
    health.down = true;
    health.backoff = kFirstBackoff;
    ++health.downs;
  }
  health.probing = false;
  health.failures_in_row = 0;
  health.down_until = now + health.backoff;
}

void ResolverSet::on_answer(std::size_t resolver) noexcept {
  Health& health = health_[resolver];
  health.down = false;
  health.probing = false;
  health.failures_in_row = 0;
  health.backoff = kFirstBackoff;
}

void ResolverSet::on_timeout(std::size_t resolver, SteadyTime now) noexcept {
  Health& health = health_[resolver];
  if (health.down) {
    if (health.probing) mark_down(health, now);  // the probe failed
    return;
  }
  if (++health.failures_in_row >= kFailuresForDown) mark_down(health, now);
}

void ResolverSet::on_failure(std::size_t resolver, UpstreamError error, SteadyTime now) noexcept {
  Health& health = health_[resolver];
  if (health.down) {
    if (health.probing) mark_down(health, now);  // the probe failed
    return;
  }
  if (is_connection_failure(error) || ++health.failures_in_row >= kFailuresForDown) {
    mark_down(health, now);
  }
}

}  // namespace dnsgate
