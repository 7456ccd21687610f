// The UDP proxy: the library's entry point.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "dnsgate/config.hpp"
#include "dnsgate/events.hpp"

namespace dnsgate {

// Cumulative counters for one run, returned when the loop ends.
struct DnsProxyStats {
  std::uint64_t received = 0;              // every datagram, malformed included
  std::uint64_t forwarded = 0;             // queries sent to the upstream
  std::uint64_t relayed = 0;               // upstream answers relayed to a workload
  std::uint64_t refused = 0;               // denied by the allowlist
  std::uint64_t notimp = 0;                // opcode other than QUERY
  std::uint64_t malformed = 0;             // rejected by the parser, dropped
  std::uint64_t servfail_timeout = 0;      // upstream silent past the timeout
  std::uint64_t servfail_error = 0;        // upstream unreachable
  std::uint64_t overloaded = 0;            // in-flight table full
  std::uint64_t unsolicited_upstream = 0;  // upstream packets discarded
  std::uint64_t events_dropped = 0;        // events the emitter did not accept
  std::uint64_t dropped_at_shutdown = 0;   // still in flight when the loop stopped
  std::uint64_t send_failed = 0;           // answers the kernel would not send to a workload

  // One JSON object with camelCase keys, no newline.
  std::string to_json() const;
};

// Runs the UDP proxy on the calling thread over sockets the caller already
// bound (possibly inside another network namespace): `listener_fd` receives
// the workload's queries, `upstream_fd` talks to config.resolvers[0]. Both
// are made non-blocking; neither is closed. Returns when `shutdown` becomes
// true (noticed within 50 ms), after giving queries in flight a short grace
// to be answered.
DnsProxyStats run_one_shot(const DnsProxyConfig& config, int listener_fd, int upstream_fd,
                           DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown);

}  // namespace dnsgate
