// What a running proxy shows its operator (DESIGN.md §12): the figures the
// loop publishes for /metrics, /healthz and /readyz. One writer (the loop
// thread), any number of readers (the metrics server's thread): every field
// is an atomic read and written with relaxed order, so the DNS path takes no
// lock and allocates nothing for it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "dnsgate/proxy.hpp"

namespace dnsgate {

// A latency histogram with fixed bucket bounds in microseconds (Prometheus
// `le` in seconds when exposed). record() is for the one writer.
class LatencyHistogram {
 public:
  static constexpr std::array<std::uint32_t, 16> kBoundsUs = {
      50,    100,   250,    500,    1000,   2500,    5000,    10000,
      25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000};

  struct Snapshot {
    std::array<std::uint64_t, kBoundsUs.size() + 1>
        buckets{};  // per bucket, not cumulative; last is +Inf
    std::uint64_t count = 0;
    std::uint64_t sum_us = 0;
  };

  void record(std::uint32_t micros) noexcept;
  Snapshot snapshot() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kBoundsUs.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_us_{0};
};

// One resolver, by the URI events name it with. Counters are cumulative over
// the process: a resolver that leaves the config on reload and comes back
// continues where it was.
struct ResolverMetrics {
  explicit ResolverMetrics(std::string_view name) : uri(name) {}
  const std::string uri;
  std::atomic<bool> in_config{false};  // named by the config in force
  std::atomic<bool> up{true};          // ResolverSet's view: not in a backoff
  std::atomic<std::uint64_t> queries{0};
  std::atomic<std::uint64_t> answers{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> times_down{0};
  LatencyHistogram latency;  // query sent to answer received, per answer
};

class MetricsBoard {
 public:
  static constexpr std::size_t kCounterCount = sizeof(ProxyCounters) / sizeof(std::uint64_t);

  // --- the loop ---------------------------------------------------------
  // Copies the loop's counters (cheap: a store per counter; the loop calls
  // it once per turn).
  void publish(const ProxyCounters& counters) noexcept;
  // The loop turned now: /healthz is green while this is under a second old.
  void turned(std::chrono::steady_clock::time_point now) noexcept;
  // The listeners are bound and watched (/readyz needs it).
  void set_listening(bool listening) noexcept;
  // The entry for `uri`, made on first use. Allocates: at start and at a
  // reload only, never per query. The reference stays valid for the
  // board's life.
  ResolverMetrics& resolver(std::string_view uri);
  // The resolvers of the config now in force, in its order: the others
  // keep their counters but are not `in_config`.
  void set_resolvers_in_force(const std::vector<ResolverMetrics*>& in_force);
  // DNSSEC validation time of one answer (DESIGN §9: with mode validate).
  LatencyHistogram& validation_time() noexcept { return validation_time_; }

  // --- the reloader (DESIGN §12 hot reload) -------------------------------
  void reload_applied(std::string_view policy_version);
  // The version in force at start (the loop sets it).
  void set_policy_version(std::string_view policy_version);
  void reload_refused() noexcept { reloads_refused_.fetch_add(1, std::memory_order_relaxed); }

  // --- the event sink (DESIGN §11) ------------------------------------------
  std::atomic<std::uint64_t> events_delivered{0};  // acknowledged by the sink
  std::atomic<std::uint64_t> events_spooled{0};    // written to the spool
  std::atomic<std::uint64_t> spool_bytes{0};       // gauge
  std::atomic<std::uint64_t> events_retried{0};    // sent again after a transient failure
  std::atomic<std::uint64_t> events_rejected{0};   // refused for good, dead-lettered

  // --- the metrics server -------------------------------------------------
  ProxyCounters counters() const noexcept;
  bool healthy(std::chrono::steady_clock::time_point now) const noexcept;
  bool ready() const noexcept;  // listening and a resolver in force is up
  // Every resolver ever named, in first-seen order. Entries are never
  // removed, so the pointers stay valid.
  std::vector<const ResolverMetrics*> resolvers() const;
  std::string policy_version() const;
  std::uint64_t reloads_applied() const noexcept {
    return reloads_applied_.load(std::memory_order_acquire);
  }
  std::uint64_t reloads_refused() const noexcept {
    return reloads_refused_.load(std::memory_order_relaxed);
  }
  const LatencyHistogram& validation_time() const noexcept { return validation_time_; }
  bool validating() const noexcept { return validating_.load(std::memory_order_relaxed); }
  void set_validating(bool on) noexcept { validating_.store(on, std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, kCounterCount> counters_{};
  std::atomic<std::int64_t> last_turn_ns_{0};  // steady clock, 0: never turned
  std::atomic<bool> listening_{false};
  std::atomic<bool> validating_{false};
  LatencyHistogram validation_time_;
  std::atomic<std::uint64_t> reloads_applied_{0};
  std::atomic<std::uint64_t> reloads_refused_{0};

  mutable std::mutex names_;  // guards the two below; taken at start, reload and scrape only
  std::deque<ResolverMetrics> resolvers_;
  std::string policy_version_;
};

}  // namespace dnsgate
