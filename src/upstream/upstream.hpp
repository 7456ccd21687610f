// The one interface between the proxy loop and a resolver, whatever the
// protocol: the loop hands a query over and is told of its answer or its
// failure; the transport says which descriptors and deadlines it needs and
// the loop watches them. One object per configured resolver.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dnsgate/events.hpp"
#include "dnsgate/upstream_error.hpp"
#include "net/clock.hpp"

namespace dnsgate {

// What a transport tells the loop. Calls come only from on_io, on_timer
// and flush, never from send or cancel, so the loop is never re-entered
// while it hands a query over.
class UpstreamListener {
 public:
  UpstreamListener() = default;
  UpstreamListener(const UpstreamListener&) = delete;
  UpstreamListener& operator=(const UpstreamListener&) = delete;
  virtual ~UpstreamListener() = default;

  // An answer from the resolver, its first two octets set to the upstream
  // id the query was sent with. The loop checks it before relaying it.
  virtual void on_answer(std::span<std::uint8_t> answer, SteadyTime now) = 0;

  // The query sent with `upstream_id` will not be answered by this resolver.
  virtual void on_failure(std::uint16_t upstream_id, UpstreamError error, SteadyTime now) = 0;

  // The query still waiting under `upstream_id`, exactly as first given to
  // send(): a transport whose connection broke sends it again on a new one.
  // Empty when the loop no longer waits for it.
  virtual std::span<const std::uint8_t> pending_query(std::uint16_t upstream_id) noexcept = 0;
};

// A descriptor a transport wants watched. `generation` changes whenever
// the descriptor is a new one (a reconnect may reuse the number).
struct IoInterest {
  int fd = -1;
  std::uint32_t events = 0;  // EPOLLIN / EPOLLOUT
  std::uint32_t generation = 0;
};

// Per-resolver counters, in the stats JSON under "resolvers".
struct UpstreamCounters {
  std::uint64_t queries = 0;      // queries handed to this resolver (resends not counted)
  std::uint64_t answers = 0;      // answers relayed from it
  std::uint64_t failures = 0;     // queries it failed (errors and timeouts)
  std::uint64_t connects = 0;     // connections opened (TCP, TLS, QUIC)
  std::uint64_t handshakes = 0;   // TLS handshakes completed
  std::uint64_t resumed = 0;      // of which resumed a previous session
  std::uint64_t unsolicited = 0;  // answers discarded before matching (wrong source, bad framing)
};

class Upstream {
 public:
  Upstream() = default;
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;
  virtual ~Upstream() = default;

  // Sends (or queues) `query`, whose first two octets are its upstream id;
  // `client` is how the workload asked (a do53-udp resolver sends the
  // queries of TCP workloads over TCP). Returns an error only when this
  // query fails at once; other failures come through the listener.
  virtual UpstreamError send(std::span<const std::uint8_t> query, Transport client,
                             SteadyTime now) = 0;

  // The loop no longer waits for `upstream_id` (answered, timed out, sent
  // elsewhere): forget it, and never report it.
  virtual void cancel(std::uint16_t upstream_id) noexcept = 0;

  // Hands what send() queued to the kernel; called once per batch.
  virtual void flush(SteadyTime now) { (void)now; }

  // The descriptors to watch, by slot; on_io() is told which one is ready.
  virtual std::size_t io_slots() const noexcept = 0;
  virtual IoInterest io_interest(std::size_t slot) const noexcept = 0;
  virtual void on_io(std::size_t slot, std::uint32_t events, SteadyTime now) = 0;

  // Whether io_interest() may differ from what the loop registered last
  // time it asked; the loop re-syncs epoll only then and says so with
  // interest_synced(). A transport that cannot tell cheaply says true.
  virtual bool interest_changed() const noexcept { return true; }
  virtual void interest_synced() noexcept {}

  // The next moment on_timer() must run (kNever when none).
  virtual SteadyTime next_timer() const noexcept { return kNever; }
  virtual void on_timer(SteadyTime now) { (void)now; }

  virtual UpstreamCounters counters() const noexcept = 0;
};

}  // namespace dnsgate
