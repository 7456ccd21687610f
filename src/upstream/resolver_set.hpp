// ResolverSet: which resolver a query goes to, and which are down.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/upstream_error.hpp"
#include "net/clock.hpp"

namespace dnsgate {

// DESIGN.md §8 "Several resolvers": a resolver that fails a connection, or
// lets 3 queries in a row time out or fail, is down for a backoff (1 s,
// doubling to 60 s, back to 1 s once it answers). After the backoff the
// next real query probes it; it is up again when it answers. Pure logic,
// no I/O: the loop reports what happened and asks where to send.
class ResolverSet {
 public:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  static constexpr int kFailuresForDown = 3;
  static constexpr std::chrono::milliseconds kFirstBackoff{1000};
  static constexpr std::chrono::milliseconds kMaxBackoff{60000};

  ResolverSet(std::size_t count, ResolverPolicy policy);

  // The resolver for a query that has not yet tried the resolvers in
  // `tried` (a bit per index); kNone when every one has been tried. When
  // none is up, the one whose backoff ends first still gets it: a query is
  // never failed without being sent.
  std::size_t choose(SteadyTime now, std::uint32_t tried = 0) noexcept;

  void on_answer(std::size_t resolver) noexcept;
  void on_timeout(std::size_t resolver, SteadyTime now) noexcept;
  void on_failure(std::size_t resolver, UpstreamError error, SteadyTime now) noexcept;

  bool is_up(std::size_t resolver) const noexcept { return !health_[resolver].down; }
  std::size_t size() const noexcept { return health_.size(); }
  std::uint64_t times_down(std::size_t resolver) const noexcept { return health_[resolver].downs; }

  // True for errors of the connection itself, as opposed to one query's.
  static bool is_connection_failure(UpstreamError error) noexcept;

 private:
  struct Health {
    bool down = false;
    bool probing = false;  // a query is testing it after its backoff
    int failures_in_row = 0;
    SteadyTime down_until{};
    std::chrono::milliseconds backoff = kFirstBackoff;
    std::uint64_t downs = 0;
  };

  void mark_down(Health& health, SteadyTime now) noexcept;
  bool usable(std::size_t resolver, SteadyTime now) const noexcept;

  ResolverPolicy policy_;
  std::vector<Health> health_;
  std::size_t next_ = 0;  // roundRobin: where the next turn starts
};

}  // namespace dnsgate
