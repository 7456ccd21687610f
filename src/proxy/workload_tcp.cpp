// The workload's TCP connections (RFC 7766): accept, read frames, write
// framed answers, backpressure, idle and frame deadlines.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "proxy/proxy_loop.hpp"

namespace dnsgate {

namespace {

constexpr std::size_t kReadsPerWake = 8;            // reads per connection before looking elsewhere
constexpr std::size_t kMaxClientBacklog = 1 << 20;  // unsent answer octets before we stop reading

}  // namespace

void ProxyLoop::accept_connections(const Clock& now) {
  while (true) {
    PeerAddress peer;
    peer.length = sizeof peer.storage;
    const int fd = accept4(tcp_listener_, reinterpret_cast<sockaddr*>(&peer.storage), &peer.length,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of descriptors: try again on the next wake
    }
    if (free_clients_.empty()) {
      ++stats_.tcp_rejected;
      ::close(fd);
      continue;
    }
    const std::uint32_t index = free_clients_.back();
    free_clients_.pop_back();
    if (!clients_[index]) clients_[index] = std::make_unique<TcpClient>();
    TcpClient& client = *clients_[index];
    const std::uint32_t generation = client.generation + 1;
    client = TcpClient{};
    client.generation = generation;
    client.socket = UniqueFd(fd);
    client.peer = peer;
    client.last_activity = now.steady;
    client.open = true;
    client.watched = EPOLLIN;
    const int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = tag(Source::tcp_client, index);
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event);
    ++open_clients_;
    ++stats_.tcp_accepted;
  }
}

// Reads a connection while it may take more queries; resumes one whose
// answers have gone out; closes one the workload has finished with.
void ProxyLoop::update_client_interest(TcpClient& client, std::uint32_t index) {
  if (!client.open) return;
  const std::size_t backlog = client.out.size() - client.out_written;
  const bool may_read = !draining_ && backlog <= kMaxClientBacklog &&
                        client.inflight < config_->tcp.max_inflight_per_connection;
  if (may_read && !client.reading) {
    // Frames already buffered come first; they are handled by the loop
    // between events, never from inside another connection's work.
    resumed_clients_.push_back(index);
  }
  client.reading = may_read;
  const std::uint32_t events = (client.reading ? EPOLLIN : 0U) | (backlog > 0 ? EPOLLOUT : 0U);
  if (events != client.watched) {
    epoll_event event{};
    event.events = events;
    event.data.u64 = tag(Source::tcp_client, index);
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, client.socket.get(), &event);
    client.watched = events;
  }
}

void ProxyLoop::resume_clients(const Clock& now) {
  while (!resumed_clients_.empty()) {
    const std::uint32_t index = resumed_clients_.back();
    resumed_clients_.pop_back();
    if (!clients_[index] || !clients_[index]->open || !clients_[index]->reading) continue;
    if (handle_frames(*clients_[index], index, now))
      update_client_interest(*clients_[index], index);
  }
}

// Handles every complete frame buffered, while the connection may take
// more queries. False when the connection was closed.
bool ProxyLoop::handle_frames(TcpClient& client, std::uint32_t index, const Clock& now) {
  while (client.open && client.inflight < config_->tcp.max_inflight_per_connection &&
         client.out.size() - client.out_written <= kMaxClientBacklog) {
    const auto frame = client.reader.next_frame();
    if (!frame) break;
    client.last_activity = now.steady;
    const ClientRef ref{Transport::tcp, &client.peer, index, client.generation};
    if (!handle_query(*frame, ref, now)) {
      // A malformed frame ends the connection: what follows it cannot be
      // trusted to be framed right.
      close_client(client, index);
      return false;
    }
  }
  if (!client.open) return false;
  if (client.reader.frame_begun() && !client.frame_in_progress) {
    client.frame_in_progress = true;
    client.frame_started = now.steady;
  } else if (!client.reader.frame_begun()) {
    client.frame_in_progress = false;
  }
  return true;
}

void ProxyLoop::read_frames(TcpClient& client, std::uint32_t index, const Clock& now) {
  for (std::size_t round = 0; round < kReadsPerWake && client.open && client.reading; ++round) {
    const auto status = client.reader.read_from(client.socket.get());
    if (status == FrameReader::ReadStatus::would_block) break;
    if (status == FrameReader::ReadStatus::error) {
      close_client(client, index);
      return;
    }
    if (status == FrameReader::ReadStatus::closed) {
      // The workload has gone: what it sent before leaving is still asked
      // (and recorded); the answers will find no one (`client_gone`).
      if (!handle_frames(client, index, now)) return;
      close_client(client, index);
      return;
    }
    client.last_activity = now.steady;
    if (!handle_frames(client, index, now)) return;
    // Frames left unhandled wait for answers to go out; reading more now
    // would only buffer more of them.
    if (client.inflight >= config_->tcp.max_inflight_per_connection ||
        client.out.size() - client.out_written > kMaxClientBacklog) {
      break;
    }
  }
  update_client_interest(client, index);
}

void ProxyLoop::flush_client(TcpClient& client, std::uint32_t index) {
  while (client.out_written < client.out.size()) {
    const ssize_t sent = ::send(client.socket.get(), client.out.data() + client.out_written,
                                client.out.size() - client.out_written, MSG_NOSIGNAL);
    if (sent > 0) {
      client.out_written += static_cast<std::size_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if ((client.watched & EPOLLOUT) == 0) update_client_interest(client, index);
      return;
    }
    ++stats_.send_failed;
    close_client(client, index);
    return;
  }
  client.out.clear();
  client.out_written = 0;
  if ((client.watched & EPOLLOUT) != 0 || !client.reading) {
    update_client_interest(client, index);
  }
}

void ProxyLoop::close_client(TcpClient& client, std::uint32_t index) {
  if (!client.open) return;
  // Whatever was received but not handled is abandoned, with no event.
  while (client.reader.next_frame()) ++stats_.tcp_frames_abandoned;
  if (client.reader.frame_begun()) ++stats_.tcp_frames_abandoned;
  client.open = false;
  client.socket = UniqueFd{};  // closing removes it from epoll
  client.reader = FrameReader{};
  client.out = {};
  client.out_written = 0;
  free_clients_.push_back(index);
  --open_clients_;
}

void ProxyLoop::on_client_event(std::uint32_t index, std::uint32_t events, const Clock& now) {
  if (index >= clients_.size() || !clients_[index] || !clients_[index]->open) return;
  TcpClient& client = *clients_[index];
  if ((events & EPOLLOUT) != 0) flush_client(client, index);
  if (!client.open) return;
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
    if (client.reading) {
      read_frames(client, index, now);
    } else if ((events & EPOLLERR) != 0) {
      close_client(client, index);
    }
  }
}

void ProxyLoop::sweep_connections(const Clock& now) {
  for (std::uint32_t index = 0; index < clients_.size(); ++index) {
    if (!clients_[index] || !clients_[index]->open) continue;
    TcpClient& client = *clients_[index];
    if (client.frame_in_progress &&
        now.steady - client.frame_started >= config_->tcp.frame_timeout) {
      close_client(client, index);
    } else if (!client.frame_in_progress && client.inflight == 0 &&
               client.out.size() == client.out_written &&
               now.steady - client.last_activity >= config_->tcp.idle_timeout) {
      ++stats_.tcp_idle_closed;
      close_client(client, index);
    }
  }
}

TcpClient* ProxyLoop::client_of(std::uint32_t connection, std::uint32_t generation) noexcept {
  if (connection >= clients_.size() || !clients_[connection]) return nullptr;
  TcpClient& client = *clients_[connection];
  return client.open && client.generation == generation ? &client : nullptr;
}

void ProxyLoop::stop_reading_clients() {
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    if (clients_[i] && clients_[i]->open) update_client_interest(*clients_[i], i);
  }
}

void ProxyLoop::close_all_clients() {
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    if (clients_[i] && clients_[i]->open) close_client(*clients_[i], i);
  }
}

}  // namespace dnsgate
