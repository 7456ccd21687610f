// The figures the loop publishes for the metrics endpoint (DESIGN.md §12).
#include <algorithm>
#include <bit>

#include "dnsgate/metrics.hpp"

namespace dnsgate {

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

// Single writer: a load and a store, no locked read-modify-write on the
// DNS path.
void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
  counter.store(counter.load(kRelaxed) + by, kRelaxed);
}

}  // namespace

void LatencyHistogram::record(std::uint32_t micros) noexcept {
  const auto bound = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), micros);
  bump(buckets_[static_cast<std::size_t>(bound - kBoundsUs.begin())]);
  bump(sum_us_, micros);
}

LatencyHistogram::Snapshot LatencyHistogram::snapshot() const noexcept {
  Snapshot out;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    out.buckets[i] = buckets_[i].load(kRelaxed);
    out.count += out.buckets[i];
  }
  out.sum_us = sum_us_.load(kRelaxed);
  return out;
}

static_assert(sizeof(ProxyCounters) % sizeof(std::uint64_t) == 0);

void MetricsBoard::publish(const ProxyCounters& counters) noexcept {
  const auto values = std::bit_cast<std::array<std::uint64_t, kCounterCount>>(counters);
  for (std::size_t i = 0; i < kCounterCount; ++i) counters_[i].store(values[i], kRelaxed);
}

ProxyCounters MetricsBoard::counters() const noexcept {
  std::array<std::uint64_t, kCounterCount> values{};
  for (std::size_t i = 0; i < kCounterCount; ++i) values[i] = counters_[i].load(kRelaxed);
  return std::bit_cast<ProxyCounters>(values);
}

void MetricsBoard::turned(std::chrono::steady_clock::time_point now) noexcept {
  last_turn_ns_.store(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count(),
      kRelaxed);
}

void MetricsBoard::set_listening(bool listening) noexcept {
  listening_.store(listening, kRelaxed);
}

bool MetricsBoard::healthy(std::chrono::steady_clock::time_point now) const noexcept {
  const std::int64_t last = last_turn_ns_.load(kRelaxed);
  if (last == 0) return false;
  const std::int64_t at =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  return at - last < std::chrono::nanoseconds(std::chrono::seconds(1)).count();
}

bool MetricsBoard::ready() const noexcept {
  if (!listening_.load(kRelaxed)) return false;
  const std::lock_guard lock(names_);
  return std::any_of(resolvers_.begin(), resolvers_.end(), [](const ResolverMetrics& resolver) {
    return resolver.in_config.load(kRelaxed) && resolver.up.load(kRelaxed);
  });
}

ResolverMetrics& MetricsBoard::resolver(std::string_view uri) {
  const std::lock_guard lock(names_);
  for (ResolverMetrics& resolver : resolvers_) {
    if (resolver.uri == uri) return resolver;
  }
  return resolvers_.emplace_back(uri);
}

void MetricsBoard::set_resolvers_in_force(const std::vector<ResolverMetrics*>& in_force) {
  const std::lock_guard lock(names_);
  for (ResolverMetrics& resolver : resolvers_) {
    const bool named = std::find(in_force.begin(), in_force.end(), &resolver) != in_force.end();
    resolver.in_config.store(named, kRelaxed);
  }
}

std::vector<const ResolverMetrics*> MetricsBoard::resolvers() const {
  const std::lock_guard lock(names_);
  std::vector<const ResolverMetrics*> out;
  out.reserve(resolvers_.size());
  for (const ResolverMetrics& resolver : resolvers_) out.push_back(&resolver);
  return out;
}

// The version first: a scrape that sees the count see the version with it.
void MetricsBoard::reload_applied(std::string_view policy_version) {
  {
    const std::lock_guard lock(names_);
    policy_version_ = policy_version;
  }
  reloads_applied_.fetch_add(1, std::memory_order_release);
}

void MetricsBoard::set_policy_version(std::string_view policy_version) {
  const std::lock_guard lock(names_);
  policy_version_ = policy_version;
}

std::string MetricsBoard::policy_version() const {
  const std::lock_guard lock(names_);
  return policy_version_;
}

}  // namespace dnsgate
