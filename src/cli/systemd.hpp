// systemd integration of `dnsgate run` (DESIGN.md §10, "Without the
// supervisor"): listeners passed by socket activation, and sd_notify
// (READY=1, STOPPING=1, watchdog pings). Linked into the dnsgate executable
// only; the library knows nothing of systemd. Without LISTEN_FDS and
// NOTIFY_SOCKET in the environment every function here changes nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "dnsgate/config.hpp"
#include "dnsgate/socket.hpp"

namespace dnsgate::cli {

// The workload-facing listeners systemd passed to this process.
struct ActivatedListeners {
  bool activated = false;  // LISTEN_PID named this process and LISTEN_FDS > 0
  UniqueFd udp;            // a datagram socket, or invalid
  UniqueFd tcp;            // a listening stream socket, or invalid
  std::string summary;     // `udp 127.0.0.1:53 (fd 3 "dnsgate@web.socket"), tcp ...`
};

// Takes the descriptors of socket activation (sd_listen_fds), when
// LISTEN_PID is this process, and matches them to the config: each passed
// socket is the config's UDP listener (a datagram socket) or its TCP
// listener (a listening stream socket), its local address (getsockname)
// must equal listen.udp / listen.tcp exactly, and every listener the config
// declares must be passed. Anything else is an error naming both sides;
// then every passed descriptor is closed and `error` says why. Without
// activation `out.activated` stays false and nothing is taken. The LISTEN_*
// variables are removed from the environment either way.
bool take_activated_listeners(const DnsProxyConfig& config, ActivatedListeners& out,
                              std::string& error);

// sd_notify for one run: READY=1 with a STATUS, STOPPING=1 once a stop is
// requested, WATCHDOG=1 every WATCHDOG_USEC / 2 when the service has a
// watchdog. Without NOTIFY_SOCKET it does nothing and starts no thread.
//
// The pings come from a thread of their own, because the proxy loop owns
// the calling thread and exposes no heartbeat: they prove that the process
// is alive and scheduled, not that the loop still turns.
class ServiceNotifier {
 public:
  // Starts the notifier thread (with SIGINT and SIGTERM blocked in it, so
  // the signals keep interrupting the proxy loop). It sends STOPPING=1
  // within 100 ms of `stop_requested` becoming true.
  explicit ServiceNotifier(const std::atomic<bool>& stop_requested);
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  bool enabled() const noexcept { return enabled_; }
  // 0 without a watchdog.
  std::chrono::microseconds watchdog_timeout() const noexcept { return watchdog_; }

  // READY=1 and STATUS=<status>.
  void ready(const std::string& status);
  // STOPPING=1, once per run (the thread or the caller, whichever is first).
  void stopping();

 private:
  void run();
  void send(const std::string& state);

  const std::atomic<bool>& stop_requested_;
  bool enabled_ = false;
  std::chrono::microseconds watchdog_{0};
  std::atomic<bool> stopping_sent_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool quit_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace dnsgate::cli
