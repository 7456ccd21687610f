// The UDP event loop: socket -> parser -> policy -> upstream -> relay -> event.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "dns/wire.hpp"
#include "dnsgate/proxy.hpp"
#include "dnsgate/response.hpp"
#include "proxy/inflight_table.hpp"
#include "upstream/do53_udp.hpp"

namespace dnsgate {

namespace {

using std::chrono::milliseconds;

constexpr std::size_t kBatch = 32;           // datagrams per recvmmsg
constexpr std::size_t kMaxDatagram = 65536;  // the largest UDP payload, rounded up
constexpr std::size_t kReadsPerWake = 8;     // batches per socket before looking elsewhere
constexpr milliseconds kShutdownPoll{50};    // how soon `shutdown` is noticed
constexpr milliseconds kShutdownGrace{200};  // answers still relayed after shutdown

// A batch of receive buffers for recvmmsg, allocated once per loop. The
// buffers are left uninitialised so untouched pages cost no memory.
class DatagramBatch {
 public:
  DatagramBatch() : storage_(new std::uint8_t[kBatch * kMaxDatagram]) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      iov_[i] = {storage_.get() + i * kMaxDatagram, kMaxDatagram};
    }
  }

  // Receives up to kBatch datagrams; returns how many (0 when none waits).
  std::size_t receive(int fd) noexcept {
    for (std::size_t i = 0; i < kBatch; ++i) {
      headers_[i] = {};
      headers_[i].msg_hdr.msg_name = &peers_[i].storage;
      headers_[i].msg_hdr.msg_namelen = sizeof peers_[i].storage;
      headers_[i].msg_hdr.msg_iov = &iov_[i];
      headers_[i].msg_hdr.msg_iovlen = 1;
    }
    while (true) {
      const int got = recvmmsg(fd, headers_.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (got >= 0) {
        for (int i = 0; i < got; ++i) peers_[i].length = headers_[i].msg_hdr.msg_namelen;
        return static_cast<std::size_t>(got);
      }
      if (errno == EINTR) continue;
      return 0;  // EAGAIN, or an error the caller learns of through EPOLLERR
    }
  }

  std::span<std::uint8_t> datagram(std::size_t i) noexcept {
    return {storage_.get() + i * kMaxDatagram, headers_[i].msg_len};
  }
  const PeerAddress& peer(std::size_t i) const noexcept { return peers_[i]; }

 private:
  std::unique_ptr<std::uint8_t[]> storage_;
  std::array<iovec, kBatch> iov_{};
  std::array<mmsghdr, kBatch> headers_{};
  std::array<PeerAddress, kBatch> peers_{};
};

class UdpProxy {
 public:
  UdpProxy(const DnsProxyConfig& config, int listener_fd, int upstream_fd, DnsQueryEmitter& emitter)
      : config_(config),
        listener_fd_(listener_fd),
        upstream_(upstream_fd, config.resolvers.at(0).address),
        emitter_(emitter),
        table_(config.max_inflight) {
    const int flags = fcntl(listener_fd_, F_GETFL);
    if (flags >= 0) fcntl(listener_fd_, F_SETFL, flags | O_NONBLOCK);
  }

  DnsProxyStats run(const std::atomic<bool>& shutdown);

 private:
  struct Clock {
    SteadyTime steady;
    WallTime wall;
  };

  void read_queries(const Clock& now);
  void handle_query(std::span<std::uint8_t> packet, const PeerAddress& client, const Clock& now);
  void read_responses(const Clock& now);
  void handle_response(std::span<std::uint8_t> packet, const PeerAddress& source, const Clock& now);
  void read_upstream_errors(const Clock& now);
  void expire(const Clock& now);
  void fail_inflight(InflightQuery& query, ReasonCode reason, const Clock& now);
  void answer_locally(const QueryEcho& echo, const PeerAddress& client, Rcode rcode,
                      ExtendedError ede);
  void send_to_client(std::span<const std::uint8_t> packet, const PeerAddress& client);
  void emit(const QueryRecord& record);
  QueryRecord inflight_record(const InflightQuery& query, const Clock& now) const;

  const DnsProxyConfig& config_;
  int listener_fd_;
  Do53UdpUpstream upstream_;
  DnsQueryEmitter& emitter_;
  InflightTable table_;
  DnsProxyStats stats_;
  DatagramBatch batch_;
  std::array<std::uint8_t, kMaxSynthesizedOctets> synthesized_{};
};

Endpoint endpoint_of(const PeerAddress& peer) {
  return Endpoint::from_sockaddr(peer.get(), peer.length).value_or(Endpoint{});
}

std::uint32_t micros_between(SteadyTime from, SteadyTime to) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, UINT32_MAX));
}

void UdpProxy::emit(const QueryRecord& record) {
  if (!emitter_.emit(record)) ++stats_.events_dropped;
}

void UdpProxy::send_to_client(std::span<const std::uint8_t> packet, const PeerAddress& client) {
  while (true) {
    const ssize_t sent =
        sendto(listener_fd_, packet.data(), packet.size(), 0, client.get(), client.length);
    if (sent >= 0) return;
    if (errno == EINTR) continue;
    ++stats_.send_failed;
    return;
  }
}

void UdpProxy::answer_locally(const QueryEcho& echo, const PeerAddress& client, Rcode rcode,
                              ExtendedError ede) {
  const std::size_t size = synthesize_response(echo, rcode, ede, synthesized_);
  send_to_client({synthesized_.data(), size}, client);
}

void UdpProxy::handle_query(std::span<std::uint8_t> packet, const PeerAddress& client,
                            const Clock& now) {
  ++stats_.received;
  QueryRecord record;
  record.received_at = now.wall;
  record.client = endpoint_of(client);
  record.size = static_cast<std::uint32_t>(packet.size());
  if (packet.size() >= 2) {
    record.has_transaction_id = true;
    record.transaction_id = read_u16(packet, 0);
  }

  const auto parsed = parse_query(packet);
  if (!parsed.ok()) {
    ++stats_.malformed;
    record.action = QueryAction::drop;
    record.reason = ReasonCode::malformed_query;
    record.parse_error = parsed.error();
    emit(record);
    return;
  }
  const ParsedQuery& query = parsed.value();
  record.has_question = true;
  record.qname = query.question.name;
  record.qtype = query.question.qtype;
  record.qclass = query.question.qclass;
  const QueryEcho echo = echo_of(query, packet);

  const auto answer_here = [&](QueryAction action, ReasonCode reason, Rcode rcode,
                               ExtendedError ede) {
    answer_locally(echo, client, rcode, ede);
    record.action = action;
    record.reason = reason;
    record.has_rcode = true;
    record.rcode = static_cast<std::uint8_t>(rcode);
    emit(record);
  };

  if (query.header.opcode() != kOpcodeQuery) {
    ++stats_.notimp;
    answer_here(QueryAction::refuse, ReasonCode::unsupported_opcode, Rcode::notimp,
                ExtendedError::none);
    return;
  }
  if (!config_.allowlist.allows(query.question.name)) {
    ++stats_.refused;
    answer_here(QueryAction::refuse, ReasonCode::not_allowlisted, config_.deny_rcode,
                ExtendedError::blocked);
    return;
  }
  InflightQuery* slot = table_.insert(now.steady);
  if (slot == nullptr) {
    ++stats_.overloaded;
    answer_here(QueryAction::servfail, ReasonCode::overloaded, Rcode::servfail,
                ExtendedError::none);
    return;
  }
  slot->client_id = query.header.id;
  slot->query_flags = query.header.flags;
  slot->edns = query.edns;
  slot->size = record.size;
  slot->received_wall = now.wall;
  slot->client = client;
  slot->question_octets = static_cast<std::uint16_t>(echo.question.size());
  std::copy(echo.question.begin(), echo.question.end(), slot->question.begin());

  // The upstream sees the workload's bytes but for the id.
  write_u16(packet, 0, slot->upstream_id);
  if (const int error = upstream_.send(packet); error != 0) {
    fail_inflight(
        *slot,
        error == EAGAIN || error == ENOBUFS ? ReasonCode::overloaded : ReasonCode::upstream_error,
        now);
    return;
  }
  ++stats_.forwarded;
}

QueryRecord UdpProxy::inflight_record(const InflightQuery& query, const Clock& now) const {
  QueryRecord record;
  record.received_at = query.received_wall;
  record.latency_us = micros_between(query.received, now.steady);
  record.client = endpoint_of(query.client);
  record.size = query.size;
  record.has_transaction_id = true;
  record.transaction_id = query.client_id;
  record.has_question = true;
  const auto wire = query.question_wire();
  const std::size_t name_octets = wire.size() - 4;
  record.qname = QueryName::from_wire(wire.first(name_octets)).value_or(QueryName{});
  record.qtype = read_u16(wire, name_octets);
  record.qclass = read_u16(wire, name_octets + 2);
  record.has_upstream = true;
  record.upstream = upstream_.resolver();
  return record;
}

// Ends a query in flight without an upstream answer: SERVFAIL for a timeout,
// an unreachable upstream or a send that could not happen; nothing at all
// at shutdown. One event either way.
void UdpProxy::fail_inflight(InflightQuery& query, ReasonCode reason, const Clock& now) {
  QueryRecord record = inflight_record(query, now);
  record.reason = reason;
  if (reason == ReasonCode::shutdown) {
    ++stats_.dropped_at_shutdown;
    record.action = QueryAction::drop;
  } else {
    ExtendedError ede = ExtendedError::none;
    if (reason == ReasonCode::upstream_timeout) {
      ++stats_.servfail_timeout;
      ede = ExtendedError::no_reachable_authority;
    } else if (reason == ReasonCode::upstream_error) {
      ++stats_.servfail_error;
      ede = ExtendedError::network_error;
    } else {
      ++stats_.overloaded;
      record.has_upstream = false;  // it never left
    }
    answer_locally(query.echo(), query.client, Rcode::servfail, ede);
    record.action = QueryAction::servfail;
    record.has_rcode = true;
    record.rcode = static_cast<std::uint8_t>(Rcode::servfail);
  }
  table_.erase(query);
  emit(record);
}

void UdpProxy::handle_response(std::span<std::uint8_t> packet, const PeerAddress& source,
                               const Clock& now) {
  if (!upstream_.is_resolver(source.get(), source.length)) {
    ++stats_.unsolicited_upstream;
    return;
  }
  const auto response = parse_response_question(packet);
  if (!response.ok()) {
    ++stats_.unsolicited_upstream;
    return;
  }
  InflightQuery* query = table_.find(response.value().header.id);
  if (query == nullptr || !answers_question(response.value(), query->question_wire())) {
    ++stats_.unsolicited_upstream;
    return;
  }
  write_u16(packet, 0, query->client_id);
  send_to_client(packet, query->client);
  ++stats_.relayed;

  QueryRecord record = inflight_record(*query, now);
  record.action = QueryAction::forward;
  record.reason = ReasonCode::allowed;
  record.has_rcode = true;
  record.rcode = response.value().header.rcode();
  record.answer_count = response.value().header.ancount;
  table_.erase(*query);
  emit(record);
}

void UdpProxy::read_queries(const Clock& now) {
  for (std::size_t round = 0; round < kReadsPerWake; ++round) {
    const std::size_t count = batch_.receive(listener_fd_);
    for (std::size_t i = 0; i < count; ++i) handle_query(batch_.datagram(i), batch_.peer(i), now);
    if (count < kBatch) return;
  }
}

void UdpProxy::read_responses(const Clock& now) {
  for (std::size_t round = 0; round < kReadsPerWake; ++round) {
    const std::size_t count = batch_.receive(upstream_.fd());
    for (std::size_t i = 0; i < count; ++i) {
      handle_response(batch_.datagram(i), batch_.peer(i), now);
    }
    if (count < kBatch) return;
  }
}

void UdpProxy::read_upstream_errors(const Clock& now) {
  std::array<std::uint16_t, kBatch> ids{};
  while (const std::size_t count = upstream_.read_errors(ids)) {
    for (std::size_t i = 0; i < count; ++i) {
      if (InflightQuery* query = table_.find(ids[i])) {
        fail_inflight(*query, ReasonCode::upstream_error, now);
      }
    }
  }
}

void UdpProxy::expire(const Clock& now) {
  while (InflightQuery* oldest = table_.oldest()) {
    if (oldest->received + config_.upstream_timeout > now.steady) return;
    fail_inflight(*oldest, ReasonCode::upstream_timeout, now);
  }
}

DnsProxyStats UdpProxy::run(const std::atomic<bool>& shutdown) {
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return stats_;
  epoll_event listener_event{};
  listener_event.events = EPOLLIN;
  listener_event.data.fd = listener_fd_;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener_fd_, &listener_event);
  epoll_event upstream_event{};
  upstream_event.events = EPOLLIN;  // EPOLLERR is always reported
  upstream_event.data.fd = upstream_.fd();
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, upstream_.fd(), &upstream_event);

  const auto now = [] {
    return Clock{std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
  };
  bool draining = false;
  SteadyTime drain_until{};
  std::array<epoll_event, 4> ready{};
  while (true) {
    Clock clock = now();
    if (!draining && shutdown.load(std::memory_order_relaxed)) {
      draining = true;
      drain_until = clock.steady + kShutdownGrace;
      epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listener_fd_, nullptr);
    }
    if (draining && (table_.size() == 0 || clock.steady >= drain_until)) break;

    SteadyTime wake = clock.steady + kShutdownPoll;
    if (const InflightQuery* oldest = table_.oldest()) {
      wake = std::min(wake, oldest->received + config_.upstream_timeout);
    }
    if (draining) wake = std::min(wake, drain_until);
    // Round up: waking a little late is fine, early would spin.
    const auto wait = std::chrono::ceil<milliseconds>(wake - clock.steady).count();
    const int count = epoll_wait(epoll_fd, ready.data(), static_cast<int>(ready.size()),
                                 static_cast<int>(std::max<std::int64_t>(wait, 0)));
    clock = now();
    for (int i = 0; i < std::max(count, 0); ++i) {
      if (ready[i].data.fd == upstream_.fd()) {
        if ((ready[i].events & EPOLLERR) != 0) read_upstream_errors(clock);
        if ((ready[i].events & EPOLLIN) != 0) read_responses(clock);
      } else if (!draining) {
        read_queries(clock);
      }
    }
    expire(clock);
  }
  const Clock end = now();
  while (InflightQuery* left = table_.oldest()) fail_inflight(*left, ReasonCode::shutdown, end);
  close(epoll_fd);
  return stats_;
}

}  // namespace

DnsProxyStats run_one_shot(const DnsProxyConfig& config, int listener_fd, int upstream_fd,
                           DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown) {
  // The loop's buffers and table are large; they live on the heap, once.
  auto proxy = std::make_unique<UdpProxy>(config, listener_fd, upstream_fd, emitter);
  return proxy->run(shutdown);
}

}  // namespace dnsgate
