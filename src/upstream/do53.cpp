#include "upstream/do53.hpp"

#include <sys/epoll.h>

#include <array>
#include <cerrno>

#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

namespace {

constexpr std::uint8_t kMaxAttempts = 2;  // writes of one query on connections that answer nothing

UpstreamError error_of_errno(int error) {
  if (error == ECONNREFUSED) return {UpstreamErrorKind::connect_refused, 0};
  return {UpstreamErrorKind::send_failed, static_cast<std::uint16_t>(error)};
}

}  // namespace

Do53Upstream::Do53Upstream(const ResolverConfig& resolver, int udp_fd, UpstreamListener& listener,
                           DatagramRing* ring)
    : address_(resolver.address),
      udp_allowed_(resolver.protocol == UpstreamProtocol::do53_udp),
      listener_(listener),
      ring_(ring),
      tcp_(resolver.address) {
  if (udp_allowed_ && udp_fd >= 0) {
    udp_ = std::make_unique<Do53UdpUpstream>(udp_fd, address_);
    watch_udp();
  }
}

// Before the socket closes: the ring must stop receiving on it first.
Do53Upstream::~Do53Upstream() {
  if (ring_ != nullptr) ring_->unwatch(ring_handle_);
}

void Do53Upstream::watch_udp() {
  if (ring_ != nullptr) ring_handle_ = ring_->watch(udp_->fd(), *this);
}

bool Do53Upstream::open_udp() {
  if (udp_) return true;
  std::string ignored;
  owned_udp_ = open_upstream_udp(address_, ignored);
  if (!owned_udp_.valid()) return false;
  udp_ = std::make_unique<Do53UdpUpstream>(owned_udp_.get(), address_);
  watch_udp();
  interest_changed_ = true;
  return true;
}

UpstreamError Do53Upstream::send(std::span<const std::uint8_t> query, Transport client,
                                 SteadyTime now) {
  (void)now;
  const std::uint16_t id = read_u16(query, 0);
  if (udp_allowed_ && client == Transport::udp && open_udp()) {
    if (over_udp_.empty()) over_udp_.assign(65536, 0);
    // A full batch is not flushed here: a failed send in it would be
    // reported from inside send(). The loop flushes after every batch of
    // input, so this query just goes out alone.
    const bool queued = ring_ != nullptr
                            ? ring_->send(ring_handle_, udp_->fd(), udp_->address(),
                                          udp_->address_length(), query, id)
                            : to_resolver_.add(udp_->address(), udp_->address_length(), query, id);
    if (!queued) {
      if (const int error = udp_->send(query); error != 0) return error_of_errno(error);
    }
    over_udp_[id] = 1;
    return {};
  }
  interest_changed_ = true;
  const std::uint32_t previous = tcp_.generation();
  const std::uint64_t connects = tcp_.connects();
  const int error = tcp_.send(query);
  counters_.connects += tcp_.connects() - connects;
  if (error != 0) {
    // A write that broke the connection strands the queries sent before.
    if (!tcp_.open() && tcp_.generation() == previous && tcp_queries_.size() > 0) lost_ = previous;
    return error_of_errno(error);
  }
  tcp_queries_.sent(id, tcp_.generation());
  return {};
}

void Do53Upstream::cancel(std::uint16_t upstream_id) noexcept {
  if (!over_udp_.empty()) over_udp_[upstream_id] = 0;
  tcp_queries_.forget(upstream_id);
}

// A query the kernel would not send ends now, as it would have with sendto.
void Do53Upstream::flush(SteadyTime now) {
  if (to_resolver_.empty()) return;
  to_resolver_.flush(udp_->fd(),
                     [&](std::uint16_t id, int error) { on_send_error(id, error, now); });
}

void Do53Upstream::on_send_error(std::uint16_t id, int error, SteadyTime now) {
  if (over_udp_.empty() || over_udp_[id] == 0) return;
  over_udp_[id] = 0;
  listener_.on_failure(id, error_of_errno(error), now);
}

// An ICMP error waits in the socket's error queue.
void Do53Upstream::on_receive_error(int /*error*/, SteadyTime now) {
  if (udp_) read_udp_errors(now);
}

IoInterest Do53Upstream::io_interest(std::size_t slot) const noexcept {
  if (slot == kUdpSlot) {
    if (!udp_) return {};
    // On the ring, epoll still watches the socket for its errors alone
    // (events 0: EPOLLERR is always reported, level-triggered while ICMP
    // errors wait in the queue). A receive armed in the ring is not
    // certain to be woken by an error with no datagram behind it: under
    // load, queries to an unreachable resolver waited for their timeout.
    return {udp_->fd(), ring_ == nullptr ? static_cast<std::uint32_t>(EPOLLIN) : 0U, 1};
  }
  if (!tcp_.open()) return {};
  return {tcp_.fd(), EPOLLIN | (tcp_.wants_write() ? EPOLLOUT : 0U), tcp_.generation()};
}

void Do53Upstream::on_io(std::size_t slot, std::uint32_t events, SteadyTime now) {
  if (slot == kTcpSlot) {
    interest_changed_ = true;
    on_tcp_event(events, now);
    return;
  }
  if (!udp_) return;
  if ((events & EPOLLERR) != 0) read_udp_errors(now);
  if ((events & EPOLLIN) != 0) read_udp_answers(now);
}

void Do53Upstream::read_udp_answers(SteadyTime now) {
  if (!datagrams_) datagrams_ = std::make_unique<DatagramBatch>();
  constexpr std::size_t kReadsPerWake = 8;  // batches before the loop looks elsewhere
  for (std::size_t round = 0; round < kReadsPerWake; ++round) {
    const std::size_t count = datagrams_->receive(udp_->fd());
    for (std::size_t i = 0; i < count; ++i) {
      const PeerAddress& source = datagrams_->peer(i);
      on_datagram(datagrams_->datagram(i), source.get(), source.length, now);
    }
    // Answers relayed so far go out before more are read.
    flush(now);
    if (count < DatagramBatch::kBatch) return;
  }
}

// An answer from the UDP side, read by recvmmsg (epoll) or by the ring.
void Do53Upstream::on_datagram(std::span<std::uint8_t> answer, const sockaddr* source,
                               socklen_t source_length, SteadyTime now) {
  if (!udp_->is_resolver(source, source_length) || answer.size() < 2 || over_udp_.empty() ||
      over_udp_[read_u16(answer, 0)] == 0) {
    ++counters_.unsolicited;
    return;
  }
  // The id stays expected until the loop accepts the answer or gives up: a
  // forged answer with a wrong question must not end the wait.
  listener_.on_answer(answer, now);
}

void Do53Upstream::read_udp_errors(SteadyTime now) {
  std::array<std::uint16_t, DatagramBatch::kBatch> ids{};
  while (const std::size_t count = udp_->read_errors(ids)) {
    for (std::size_t i = 0; i < count; ++i) {
      if (over_udp_.empty() || over_udp_[ids[i]] == 0) continue;
      over_udp_[ids[i]] = 0;
      listener_.on_failure(ids[i], {UpstreamErrorKind::connect_refused, 0}, now);
    }
  }
}

void Do53Upstream::fail_tcp_generation(std::uint32_t generation, UpstreamError error,
                                       SteadyTime now) {
  tcp_queries_.for_each_on(generation, [&](std::uint16_t id) {
    tcp_queries_.forget(id);
    listener_.on_failure(id, error, now);
  });
}

// The connection is gone: its queries go again on a new one. A connection
// that answered nothing counts against each of its queries, and a query
// lost that way twice fails; a resolver that answers some queries and then
// closes (RFC 7766 6.2.1 allows it) is progressing, so its queries are
// sent again until their deadline.
void Do53Upstream::tcp_lost(std::uint32_t generation, SteadyTime now) {
  const bool progressed = tcp_.answers_on_connection() > 0;
  tcp_queries_.for_each_on(generation, [&](std::uint16_t id) {
    const auto query = listener_.pending_query(id);
    if (query.empty()) {
      tcp_queries_.forget(id);
      return;
    }
    if (!progressed && tcp_queries_.attempts(id) >= kMaxAttempts) {
      tcp_queries_.forget(id);
      listener_.on_failure(id, {UpstreamErrorKind::connection_closed, 0}, now);
      return;
    }
    const std::uint64_t connects = tcp_.connects();
    const int error = tcp_.send(query);
    counters_.connects += tcp_.connects() - connects;
    if (error != 0) {
      tcp_queries_.forget(id);
      listener_.on_failure(id, error_of_errno(error), now);
      return;
    }
    tcp_queries_.sent(id, tcp_.generation(), !progressed);
  });
}

void Do53Upstream::on_timer(SteadyTime now) {
  if (lost_ == 0) return;
  interest_changed_ = true;
  const std::uint32_t generation = lost_;
  lost_ = 0;
  tcp_lost(generation, now);
}

void Do53Upstream::on_tcp_event(std::uint32_t events, SteadyTime now) {
  const std::uint32_t generation = tcp_.generation();
  auto status = Do53TcpUpstream::Status::ok;
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) status = tcp_.on_writable();
  if (status == Do53TcpUpstream::Status::ok && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
    status = tcp_.on_readable(tcp_answers_);
    for (const auto answer : tcp_answers_) {
      if (answer.size() < kHeaderOctets ||
          tcp_queries_.generation(read_u16(answer, 0)) != generation) {
        ++counters_.unsolicited;
        continue;
      }
      // Still expected until the loop accepts it (and cancels): an answer
      // to another question must not end the wait.
      listener_.on_answer(answer, now);
    }
    tcp_answers_.clear();
  }
  if (status == Do53TcpUpstream::Status::unreachable) {
    // Nobody listens there: trying again at once would fail the same way.
    fail_tcp_generation(generation, {UpstreamErrorKind::connect_refused, 0}, now);
  } else if (status == Do53TcpUpstream::Status::failed) {
    tcp_lost(generation, now);
  }
}

UpstreamCounters Do53Upstream::counters() const noexcept {
  return counters_;
}

}  // namespace dnsgate
