// The UDP proxy: the library's entry point.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/events.hpp"

namespace dnsgate {

// One resolver's counters (DESIGN.md §8), in the order of the config.
struct ResolverStats {
  std::string uri;                // as events name it
  std::uint64_t queries = 0;      // queries handed to it
  std::uint64_t answers = 0;      // answers from it relayed
  std::uint64_t failures = 0;     // queries it failed or let time out
  std::uint64_t connects = 0;     // connections opened to it
  std::uint64_t handshakes = 0;   // TLS handshakes completed
  std::uint64_t resumed = 0;      // of which resumed an earlier session
  std::uint64_t unsolicited = 0;  // answers discarded before matching a query
  std::uint64_t times_down = 0;   // times it was marked down
};

// Cumulative counters for one run: every field a std::uint64_t (the
// metrics board copies them as an array).
struct ProxyCounters {
  std::uint64_t received = 0;               // every datagram, malformed included
  std::uint64_t forwarded = 0;              // queries sent to the upstream
  std::uint64_t relayed = 0;                // upstream answers relayed to a workload
  std::uint64_t refused = 0;                // denied by the allowlist
  std::uint64_t notimp = 0;                 // opcode other than QUERY
  std::uint64_t malformed = 0;              // rejected by the parser, dropped
  std::uint64_t servfail_timeout = 0;       // upstream silent past the timeout
  std::uint64_t servfail_error = 0;         // upstream unreachable
  std::uint64_t overloaded = 0;             // in-flight table full
  std::uint64_t unsolicited_upstream = 0;   // upstream packets discarded
  std::uint64_t events_dropped = 0;         // events the emitter did not accept
  std::uint64_t event_backlog_waits = 0;    // turns the loop waited for the event writer
  std::uint64_t dropped_at_shutdown = 0;    // still in flight when the loop stopped
  std::uint64_t send_failed = 0;            // answers the kernel would not send to a workload
  std::uint64_t client_gone = 0;            // answers for a TCP connection already closed
  std::uint64_t tcp_accepted = 0;           // TCP connections taken on
  std::uint64_t tcp_rejected = 0;           // closed at once: maxConnections reached
  std::uint64_t tcp_frames_abandoned = 0;   // frames begun but never finished
  std::uint64_t tcp_idle_closed = 0;        // connections closed after idleTimeoutMs
  std::uint64_t upstream_tcp_connects = 0;  // connections opened to the resolvers
  // DNSSEC (DESIGN §9), all 0 with validation off: answers by verdict, the
  // DS/DNSKEY fetches made, and the chain RRsets the validator holds at exit.
  std::uint64_t dnssec_secure = 0;
  std::uint64_t dnssec_insecure = 0;
  std::uint64_t dnssec_bogus = 0;
  std::uint64_t dnssec_indeterminate = 0;
  std::uint64_t dnssec_fetches = 0;
  std::uint64_t dnssec_key_cache = 0;
};

// What the loop returns when it ends: the counters and each resolver's.
struct DnsProxyStats : ProxyCounters {
  std::vector<ResolverStats> resolvers;

  // One JSON object with camelCase keys, no newline.
  std::string to_json() const;
};

// The sockets a proxy loop serves; -1 where there is none. All are bound by
// the caller and stay the caller's to close.
struct ProxySockets {
  int udp_listener = -1;
  int tcp_listener = -1;  // listening already
  int udp_upstream = -1;  // for a first resolver of do53-udp; else opened by the loop as needed
};

class MetricsBoard;

// Newer configs for a running loop (hot reload, DESIGN.md §12): whoever
// reads and checks the file posts; the loop takes the newest between two
// turns. Configs posted while an earlier one waits replace it.
class ConfigMailbox {
 public:
  ConfigMailbox();
  ~ConfigMailbox();
  ConfigMailbox(const ConfigMailbox&) = delete;
  ConfigMailbox& operator=(const ConfigMailbox&) = delete;

  // Posting also makes wake_fd() readable, so a loop asleep in its wait
  // takes the config at once rather than at its next idle turn.
  void post(std::shared_ptr<const DnsProxyConfig> config);
  // An eventfd (-1 if none could be made); the loop watches and drains it.
  int wake_fd() const noexcept { return wake_fd_; }
  // The config waiting, or null; for the loop.
  std::shared_ptr<const DnsProxyConfig> take();
  bool pending() const noexcept { return pending_.load(std::memory_order_acquire); }
  // How many posted configs the loop has put in force.
  std::uint64_t applied() const noexcept { return applied_.load(std::memory_order_acquire); }
  void mark_applied() noexcept { applied_.fetch_add(1, std::memory_order_acq_rel); }

 private:
  std::mutex mutex_;
  std::shared_ptr<const DnsProxyConfig> next_;
  std::atomic<bool> pending_{false};
  std::atomic<std::uint64_t> applied_{0};
  int wake_fd_ = -1;
};

// What a caller may attach to a loop; each optional.
struct ProxyHooks {
  MetricsBoard* metrics = nullptr;   // figures for /metrics, /healthz, /readyz
  ConfigMailbox* reloads = nullptr;  // configs to swap in (SIGHUP)
  // Told once, as the loop starts, which I/O backend runs (config `io`) and,
  // when `auto` fell back to epoll, why.
  void (*io_chosen)(IoBackend backend, std::string_view why) = nullptr;
  // Takes the place of the config's `io` (DNSGATE_IO in the environment);
  // a reload compares the files' values, not this.
  std::optional<IoBackend> io;
  // The process runs under the seccomp allow-list, which has no
  // io_uring_setup: `io: auto` means epoll.
  bool under_seccomp = false;
  // An eventfd made readable whenever `shutdown` is set: the loop then no
  // longer looks at the flag every 50 ms, and an idle proxy sleeps. -1: none.
  int wake_fd = -1;
};

// Why this process cannot run the io_uring backend, or empty when it can.
std::string io_uring_unavailable();

// Runs UDP and TCP listeners in one loop on the calling thread until
// `shutdown` is set; the same rules, the same events. Over a do53-udp
// resolver, queries from TCP clients go upstream over TCP; with a
// do53-tcp resolver, all of them do; the encrypted protocols carry both.
// A config from `hooks.reloads` replaces the allowlist, the resolvers and
// their policy, denyRcode and upstreamTimeoutMs between two turns; every
// other field must be as at start (the caller checks, see
// restart_only_change()). Queries in flight finish with the resolver and
// the policy version they began with.
DnsProxyStats run_proxy(const DnsProxyConfig& config, const ProxySockets& sockets,
                        DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown,
                        const ProxyHooks& hooks = {});

// The first field a hot reload cannot change that differs between the two
// configs ("listen.udp", "events", "dnssec", ...), or empty when `next` can
// be swapped into a loop running `running`.
std::string restart_only_change(const DnsProxyConfig& running, const DnsProxyConfig& next);

// Runs the UDP proxy on the calling thread over sockets the caller already
// bound (possibly inside another network namespace): `listener_fd` receives
// the workload's queries, `upstream_fd` talks to config.resolvers[0] (the
// loop connects it there). Both are made non-blocking; neither is closed. Returns when `shutdown`
// becomes true (noticed within 50 ms), after giving queries in flight a short grace to be answered.
DnsProxyStats run_one_shot(const DnsProxyConfig& config, int listener_fd, int upstream_fd,
                           DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown);

// The TCP/53 variant: `listener_fd` is a listening TCP socket the caller
// bound; upstream connections are opened by the loop.
DnsProxyStats run_tcp_one_shot(const DnsProxyConfig& config, int listener_fd,
                               DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown);

}  // namespace dnsgate
