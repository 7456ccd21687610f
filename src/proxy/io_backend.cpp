// The loop's I/O backends (config `io`, docs/configuration.md): which one
// runs, the turn's wait on each, and the UDP listener's port on the ring.
#include <sys/epoll.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "proxy/proxy_loop.hpp"

namespace dnsgate {

using std::chrono::milliseconds;

// The backend's wait for the turn: on epoll, epoll_wait; on io_uring, one
// io_uring_enter that submits the queued sends and waits, then the ring's
// datagrams, then epoll's events, without waiting, if the ring saw its
// descriptor readable. Sets turn_clock_; returns how many of `ready` to
// dispatch.
int ProxyLoop::wait_for_io(milliseconds timeout, std::span<epoll_event> ready) {
  const auto max_events = static_cast<int>(ready.size());
  if (!ring_) {
    const int count =
        epoll_wait(epoll_.get(), ready.data(), max_events,
                   static_cast<int>(std::min<std::int64_t>(timeout.count(), INT32_MAX)));
    turn_clock_ = now();
    take_reload_if_posted();
    return std::max(count, 0);
  }
  ring_->wait(timeout);
  turn_clock_ = now();
  take_reload_if_posted();
  if (!ring_->dispatch(turn_clock_.steady)) return 0;
  return std::max(epoll_wait(epoll_.get(), ready.data(), max_events, 0), 0);
}

// The workload's listeners close to new queries: at shutdown, while the
// answers of those in flight are still relayed.
void ProxyLoop::stop_listening() {
  if (ring_ && listener_handle_ != DatagramRing::kNoHandle) {
    ring_->unwatch(listener_handle_);
    listener_handle_ = DatagramRing::kNoHandle;
  } else if (udp_listener_ >= 0) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, udp_listener_, nullptr);
  }
  if (tcp_listener_ >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, tcp_listener_, nullptr);
  stop_reading_clients();
}

// `io: uring` that cannot run was refused before the loop (the caller asks
// io_uring_unavailable()); should the ring still fail here, the loop runs
// on epoll and says why rather than not at all.
void ProxyLoop::choose_io_backend() {
  std::string why;
  if (hooks_.io.value_or(config_->io) != IoBackend::epoll) {
    if (hooks_.under_seccomp) {
      why = "io_uring is not used under seccomp";
    } else {
      ring_ = DatagramRing::open(why);
    }
  }
  if (hooks_.io_chosen != nullptr) {
    hooks_.io_chosen(ring_ ? IoBackend::uring : IoBackend::epoll, why);
  }
}

std::string io_uring_unavailable() {
  std::string why;
  if (DatagramRing::open(why)) return {};
  return why;
}

void ProxyLoop::ListenerPort::on_datagram(std::span<std::uint8_t> payload, const sockaddr* source,
                                          socklen_t source_length, SteadyTime now) {
  PeerAddress& peer = peers_[count_];
  std::memcpy(&peer.storage, source, source_length);
  peer.length = source_length;
  gathered_[count_] = {payload, &peer};
  if (++count_ == gathered_.size()) on_turn_end(now);
}

void ProxyLoop::ListenerPort::on_turn_end(SteadyTime /*now*/) {
  if (count_ == 0) return;
  const std::size_t count = std::exchange(count_, 0);
  loop_.handle_datagrams({gathered_.data(), count}, loop_.turn_clock_);
}

// A listener's receive error is the workload's doing (an ICMP error for an
// answer it did not wait for); the ring arms the receive again.
void ProxyLoop::ListenerPort::on_receive_error(int /*error*/, SteadyTime /*now*/) {}

void ProxyLoop::ListenerPort::on_send_error(std::uint16_t /*tag*/, int /*error*/,
                                            SteadyTime /*now*/) {
  ++loop_.stats_.send_failed;
}

}  // namespace dnsgate
