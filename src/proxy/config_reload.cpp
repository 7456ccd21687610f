// Hot reload (DESIGN.md §12): the mailbox a new config waits in, and which
// fields a running loop cannot take over.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "dnsgate/proxy.hpp"

namespace dnsgate {

ConfigMailbox::ConfigMailbox() : wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

ConfigMailbox::~ConfigMailbox() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

void ConfigMailbox::post(std::shared_ptr<const DnsProxyConfig> config) {
  {
    const std::lock_guard lock(mutex_);
    next_ = std::move(config);
    pending_.store(next_ != nullptr, std::memory_order_release);
  }
  if (wake_fd_ >= 0) {
    const std::uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
}

std::shared_ptr<const DnsProxyConfig> ConfigMailbox::take() {
  const std::lock_guard lock(mutex_);
  pending_.store(false, std::memory_order_release);
  return std::exchange(next_, nullptr);
}

std::string restart_only_change(const DnsProxyConfig& running, const DnsProxyConfig& next) {
  // The sockets, the tables sized at start, the event sink, the validator
  // and the process's identity are set up once: changing them needs a new
  // process (the supervisor's new-first replacement does that).
  if (running.cell != next.cell) return "cell";
  if (running.listen_udp != next.listen_udp) return "listen.udp";
  if (running.listen_tcp != next.listen_tcp) return "listen.tcp";
  if (running.max_inflight != next.max_inflight) return "maxInflight";
  if (running.events.sink != next.events.sink || running.events.path != next.events.path) {
    return "events";
  }
  const TcpLimits& a = running.tcp;
  const TcpLimits& b = next.tcp;
  if (a.max_connections != b.max_connections ||
      a.max_inflight_per_connection != b.max_inflight_per_connection ||
      a.idle_timeout != b.idle_timeout || a.frame_timeout != b.frame_timeout) {
    return "tcp";
  }
  if (running.dnssec.mode != next.dnssec.mode ||
      running.dnssec.trust_anchors != next.dnssec.trust_anchors ||
      running.dnssec.key_cache_entries != next.dnssec.key_cache_entries) {
    return "dnssec";
  }
  if (running.metrics.listen != next.metrics.listen) return "metrics";
  if (running.io != next.io) return "io";
  if (running.netns != next.netns) return "netns";
  if (running.user != next.user) return "user";
  return {};
}

}  // namespace dnsgate
