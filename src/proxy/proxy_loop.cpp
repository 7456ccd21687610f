// The proxy's event loop: socket -> parser -> policy -> upstream -> relay ->
// event, for UDP datagrams and TCP frames alike, on the calling thread.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "dns/wire.hpp"
#include "dnsgate/proxy.hpp"
#include "dnsgate/response.hpp"
#include "dnsgate/socket.hpp"
#include "proxy/frame_reader.hpp"
#include "proxy/inflight_table.hpp"
#include "proxy/udp_send_batch.hpp"
#include "upstream/do53_tcp.hpp"
#include "upstream/do53_udp.hpp"

namespace dnsgate {

namespace {

using std::chrono::milliseconds;

constexpr std::size_t kBatch = 32;            // datagrams per recvmmsg
constexpr std::size_t kMaxDatagram = 65536;   // the largest UDP payload, rounded up
constexpr std::size_t kReadsPerWake = 8;      // batches per socket before looking elsewhere
constexpr milliseconds kShutdownPoll{50};     // how soon `shutdown` is noticed
constexpr milliseconds kShutdownGrace{200};   // answers still relayed after shutdown
constexpr milliseconds kTcpSweep{100};        // how often TCP idle/frame deadlines are checked
constexpr milliseconds kEventBacklogWait{5};  // the longest one turn waits for the event writer
constexpr std::size_t kMaxClientBacklog = 1 << 20;  // unsent answer octets before we stop reading
constexpr std::uint8_t kMaxUpstreamAttempts = 2;    // sends of one query over upstream TCP
constexpr std::uint16_t kMinUdpAnswer = 512;        // RFC 1035 4.2.1

// What an epoll event is about: the kind in the high half, a TCP client's
// connection slot in the low half.
enum class Source : std::uint32_t {
  udp_listener = 1,
  tcp_listener,
  udp_upstream,
  tcp_upstream,
  tcp_client
};

std::uint64_t tag(Source source, std::uint32_t index = 0) {
  return std::uint64_t{static_cast<std::uint32_t>(source)} << 32 | index;
}

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

// A workload's TCP connection: frames in, framed answers out.
struct TcpClient {
  UniqueFd socket;
  PeerAddress peer;
  std::uint32_t generation = 0;
  FrameReader reader;
  std::vector<std::uint8_t> out;
  std::size_t out_written = 0;
  std::size_t inflight = 0;
  SteadyTime last_activity{};
  SteadyTime frame_started{};
  bool frame_in_progress = false;
  bool reading = true;        // the loop reads this connection
  std::uint32_t watched = 0;  // the epoll events asked for
  bool open = false;
};

// Who asked: where the answer goes.
struct ClientRef {
  Transport transport = Transport::udp;
  const PeerAddress* peer = nullptr;
  std::uint32_t connection = 0;
  std::uint32_t generation = 0;
};

Endpoint endpoint_of(const PeerAddress& peer) {
  return Endpoint::from_sockaddr(peer.get(), peer.length).value_or(Endpoint{});
}

std::uint32_t micros_between(SteadyTime from, SteadyTime to) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, UINT32_MAX));
}

void set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

ReasonCode reason_for_send_error(int error) {
  return error == EAGAIN || error == ENOBUFS ? ReasonCode::overloaded : ReasonCode::upstream_error;
}

class ProxyLoop {
 public:
  ProxyLoop(const DnsProxyConfig& config, const ProxySockets& sockets, DnsQueryEmitter& emitter);
  DnsProxyStats run(const std::atomic<bool>& shutdown);

 private:
  struct Clock {
    SteadyTime steady;
    WallTime wall;
  };
  static Clock now() {
    return {std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
  }

  // Workload side.
  void read_datagrams(const Clock& now);
  void accept_connections(const Clock& now);
  void on_client_event(std::uint32_t index, std::uint32_t events, const Clock& now);
  void read_frames(TcpClient& client, std::uint32_t index, const Clock& now);
  bool handle_frames(TcpClient& client, std::uint32_t index, const Clock& now);
  void flush_client(TcpClient& client, std::uint32_t index);
  void close_client(TcpClient& client, std::uint32_t index);
  void update_client_interest(TcpClient& client, std::uint32_t index);
  void sweep_connections(const Clock& now);
  void resume_clients(const Clock& now);
  TcpClient* client_of(std::uint32_t connection, std::uint32_t generation) noexcept;

  // Returns false when the query was malformed (a TCP connection then closes).
  bool handle_query(std::span<std::uint8_t> packet, const ClientRef& client, const Clock& now);
  bool deliver(const ClientRef& client, std::span<const std::uint8_t> answer);
  void send_to_client_now(const PeerAddress& peer, std::span<const std::uint8_t> answer);
  void flush_to_clients();
  void flush_to_upstream(const Clock& now);
  void flush_sends(const Clock& now);
  void answer_locally(const QueryEcho& echo, const ClientRef& client, Rcode rcode,
                      ExtendedError ede);

  // Upstream side.
  void send_upstream(InflightQuery& query, std::span<const std::uint8_t> packet, const Clock& now);
  void read_udp_answers(const Clock& now);
  void read_udp_errors(const Clock& now);
  void on_tcp_upstream_event(std::uint32_t events, const Clock& now);
  void tcp_upstream_lost(std::uint32_t generation, const Clock& now);
  void update_tcp_upstream_interest();
  void handle_answer(std::span<std::uint8_t> packet, bool via_tcp, const Clock& now);
  void expire(const Clock& now);
  void finish(InflightQuery& query, ReasonCode reason, const Clock& now);

  QueryRecord record_of(const InflightQuery& query, const Clock& now) const;
  void emit(const QueryRecord& record);
  ClientRef client_ref(const InflightQuery& query) const noexcept;

  const DnsProxyConfig& config_;
  int udp_listener_;
  int tcp_listener_;
  UniqueFd owned_udp_upstream_;  // when the caller gave none but one is needed
  std::unique_ptr<Do53UdpUpstream> udp_upstream_;
  Do53TcpUpstream tcp_upstream_;
  bool all_over_tcp_;
  DnsQueryEmitter& emitter_;
  InflightTable table_;
  DnsProxyStats stats_;
  DatagramBatch batch_;
  UdpSendBatch to_clients_;
  UdpSendBatch to_upstream_;
  std::array<std::uint8_t, kMaxSynthesizedOctets> synthesized_{};
  std::vector<std::uint8_t> scratch_;
  std::vector<std::span<std::uint8_t>> tcp_answers_;

  UniqueFd epoll_;
  std::vector<std::unique_ptr<TcpClient>> clients_;
  std::vector<std::uint32_t> free_clients_;
  std::vector<std::uint32_t> resumed_clients_;
  std::size_t open_clients_ = 0;
  std::uint32_t tcp_upstream_registered_generation_ = 0;  // 0: none registered
  std::uint32_t tcp_upstream_registered_events_ = 0;
  bool draining_ = false;
};

ProxyLoop::ProxyLoop(const DnsProxyConfig& config, const ProxySockets& sockets,
                     DnsQueryEmitter& emitter)
    : config_(config),
      udp_listener_(sockets.udp_listener),
      tcp_listener_(sockets.tcp_listener),
      tcp_upstream_(config.resolvers.at(0).address),
      all_over_tcp_(config.resolvers.at(0).protocol == UpstreamProtocol::do53_tcp),
      emitter_(emitter),
      table_(config.max_inflight),
      epoll_(epoll_create1(EPOLL_CLOEXEC)) {
  if (udp_listener_ >= 0) set_nonblocking(udp_listener_);
  if (tcp_listener_ >= 0) set_nonblocking(tcp_listener_);
  int udp_upstream = sockets.udp_upstream;
  if (udp_upstream < 0 && udp_listener_ >= 0 && !all_over_tcp_) {
    std::string ignored;
    owned_udp_upstream_ = open_upstream_udp(config.resolvers.at(0).address, ignored);
    udp_upstream = owned_udp_upstream_.get();
  }
  if (udp_upstream >= 0) {
    udp_upstream_ = std::make_unique<Do53UdpUpstream>(udp_upstream, config.resolvers.at(0).address);
  }
  clients_.resize(config.tcp.max_connections);
  for (std::size_t i = clients_.size(); i > 0; --i) {
    free_clients_.push_back(static_cast<std::uint32_t>(i - 1));
  }
}

void ProxyLoop::emit(const QueryRecord& record) {
  if (!emitter_.emit(record)) ++stats_.events_dropped;
}

TcpClient* ProxyLoop::client_of(std::uint32_t connection, std::uint32_t generation) noexcept {
  if (connection >= clients_.size() || !clients_[connection]) return nullptr;
  TcpClient& client = *clients_[connection];
  return client.open && client.generation == generation ? &client : nullptr;
}

ClientRef ProxyLoop::client_ref(const InflightQuery& query) const noexcept {
  return {query.client_transport, &query.client, query.connection, query.connection_generation};
}

// Sends an answer to the workload; false when it has gone (its TCP
// connection closed) and the answer cannot be delivered.
void ProxyLoop::send_to_client_now(const PeerAddress& peer, std::span<const std::uint8_t> answer) {
  while (true) {
    const ssize_t sent =
        sendto(udp_listener_, answer.data(), answer.size(), 0, peer.get(), peer.length);
    if (sent >= 0) return;
    if (errno == EINTR) continue;
    ++stats_.send_failed;
    return;
  }
}

void ProxyLoop::flush_to_clients() {
  to_clients_.flush(udp_listener_, [&](std::uint16_t, int) { ++stats_.send_failed; });
}

// A query the kernel would not send ends now, as it would have with sendto.
void ProxyLoop::flush_to_upstream(const Clock& now) {
  if (to_upstream_.empty()) return;
  to_upstream_.flush(udp_upstream_->fd(), [&](std::uint16_t upstream_id, int error) {
    InflightQuery* query = table_.find(upstream_id);
    if (query == nullptr || query->via_tcp_upstream) return;
    --stats_.forwarded;
    finish(*query, reason_for_send_error(error), now);
  });
}

void ProxyLoop::flush_sends(const Clock& now) {
  // Queries first: a failed one adds its SERVFAIL to the answers.
  flush_to_upstream(now);
  if (!to_clients_.empty()) flush_to_clients();
}

bool ProxyLoop::deliver(const ClientRef& client, std::span<const std::uint8_t> answer) {
  if (client.transport == Transport::udp) {
    if (to_clients_.full()) flush_to_clients();
    if (!to_clients_.add(client.peer->get(), client.peer->length, answer, 0)) {
      send_to_client_now(*client.peer, answer);
    }
    return true;  // a workload over UDP is always there to send to
  }
  TcpClient* connection = client_of(client.connection, client.generation);
  if (connection == nullptr) return false;
  append_frame(connection->out, answer);
  // An answer is activity: the idle timeout counts from the last one.
  connection->last_activity = std::chrono::steady_clock::now();
  flush_client(*connection, client.connection);
  return true;
}

void ProxyLoop::answer_locally(const QueryEcho& echo, const ClientRef& client, Rcode rcode,
                               ExtendedError ede) {
  const std::size_t size = synthesize_response(echo, rcode, ede, synthesized_);
  deliver(client, {synthesized_.data(), size});
}

bool ProxyLoop::handle_query(std::span<std::uint8_t> packet, const ClientRef& client,
                             const Clock& now) {
  ++stats_.received;
  QueryRecord record;
  record.received_at = now.wall;
  record.transport = client.transport;
  record.client = endpoint_of(*client.peer);
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
    return false;
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
    return true;
  }
  if (!config_.allowlist.allows(query.question.name)) {
    ++stats_.refused;
    answer_here(QueryAction::refuse, ReasonCode::not_allowlisted, config_.deny_rcode,
                ExtendedError::blocked);
    return true;
  }
  InflightQuery* slot = table_.insert(now.steady);
  if (slot == nullptr) {
    ++stats_.overloaded;
    answer_here(QueryAction::servfail, ReasonCode::overloaded, Rcode::servfail,
                ExtendedError::none);
    return true;
  }
  slot->client_transport = client.transport;
  slot->client = *client.peer;
  slot->connection = client.connection;
  slot->connection_generation = client.generation;
  slot->client_id = query.header.id;
  slot->query_flags = query.header.flags;
  slot->edns = query.edns;
  slot->udp_answer_limit =
      std::max(kMinUdpAnswer, query.edns.present ? query.edns.udp_payload_size : kMinUdpAnswer);
  slot->size = record.size;
  slot->received_wall = now.wall;
  slot->question_octets = static_cast<std::uint16_t>(echo.question.size());
  std::copy(echo.question.begin(), echo.question.end(), slot->question.begin());
  if (client.transport == Transport::tcp) ++clients_[client.connection]->inflight;

  // The upstream sees the workload's bytes but for the id.
  write_u16(packet, 0, slot->upstream_id);
  send_upstream(*slot, packet, now);
  return true;
}

void ProxyLoop::send_upstream(InflightQuery& query, std::span<const std::uint8_t> packet,
                              const Clock& now) {
  query.via_tcp_upstream =
      all_over_tcp_ || query.client_transport == Transport::tcp || udp_upstream_ == nullptr;
  query.upstream_attempts = 1;
  if (query.via_tcp_upstream) {
    query.tcp_query.assign(packet.begin(), packet.end());
    const std::uint32_t previous = tcp_upstream_.generation();
    const int error = tcp_upstream_.send(packet);
    const std::uint32_t generation = tcp_upstream_.generation();
    query.upstream_generation = generation;
    if (error != 0) {
      finish(query, ReasonCode::upstream_error, now);
      // A write that broke the connection strands the queries sent before.
      if (!tcp_upstream_.open() && generation == previous) tcp_upstream_lost(generation, now);
      return;
    }
    update_tcp_upstream_interest();
  } else {
    if (to_upstream_.full()) flush_to_upstream(now);
    if (!to_upstream_.add(udp_upstream_->address(), udp_upstream_->address_length(), packet,
                          query.upstream_id)) {
      if (const int error = udp_upstream_->send(packet); error != 0) {
        finish(query, reason_for_send_error(error), now);
        return;
      }
    }
  }
  ++stats_.forwarded;
}

QueryRecord ProxyLoop::record_of(const InflightQuery& query, const Clock& now) const {
  QueryRecord record;
  record.received_at = query.received_wall;
  record.latency_us = micros_between(query.received, now.steady);
  record.transport = query.client_transport;
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
  record.upstream = config_.resolvers.front().address;
  return record;
}

// Ends a query in flight without an upstream answer: SERVFAIL for a
// timeout, an unreachable upstream or a send that could not happen;
// nothing at all at shutdown or when the workload has gone. One event.
void ProxyLoop::finish(InflightQuery& query, ReasonCode reason, const Clock& now) {
  QueryRecord record = record_of(query, now);
  const ClientRef client = client_ref(query);
  record.reason = reason;
  record.action = QueryAction::drop;
  if (reason == ReasonCode::shutdown) {
    ++stats_.dropped_at_shutdown;
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
    const std::size_t size = synthesize_response(query.echo(), Rcode::servfail, ede, synthesized_);
    if (deliver(client, {synthesized_.data(), size})) {
      record.action = QueryAction::servfail;
      record.has_rcode = true;
      record.rcode = static_cast<std::uint8_t>(Rcode::servfail);
    } else {
      ++stats_.client_gone;
      record.reason = ReasonCode::client_gone;
    }
  }
  if (TcpClient* connection = client.transport == Transport::tcp
                                  ? client_of(client.connection, client.generation)
                                  : nullptr) {
    --connection->inflight;
    update_client_interest(*connection, client.connection);
  }
  table_.erase(query);
  emit(record);
}

void ProxyLoop::handle_answer(std::span<std::uint8_t> packet, bool via_tcp, const Clock& now) {
  const auto response = parse_response_question(packet);
  if (!response.ok()) {
    ++stats_.unsolicited_upstream;
    return;
  }
  InflightQuery* query = table_.find(response.value().header.id);
  if (query == nullptr || query->via_tcp_upstream != via_tcp ||
      !answers_question(response.value(), query->question_wire())) {
    ++stats_.unsolicited_upstream;
    return;
  }
  write_u16(packet, 0, query->client_id);
  std::span<const std::uint8_t> answer = packet;
  if (query->client_transport == Transport::udp && packet.size() > query->udp_answer_limit) {
    // An answer fetched over TCP that the UDP client cannot take: header
    // with TC=1 and the question only, so the client retries over TCP.
    scratch_.assign(packet.begin(), packet.begin() + kHeaderOctets);
    scratch_.insert(scratch_.end(), query->question_wire().begin(), query->question_wire().end());
    write_u16(scratch_, 2, static_cast<std::uint16_t>(read_u16(packet, 2) | flag::kTc));
    write_u16(scratch_, 4, 1);
    write_u16(scratch_, 6, 0);
    write_u16(scratch_, 8, 0);
    write_u16(scratch_, 10, 0);
    answer = scratch_;
  }
  const ClientRef client = client_ref(*query);
  QueryRecord record = record_of(*query, now);
  if (deliver(client, answer)) {
    ++stats_.relayed;
    record.action = QueryAction::forward;
    record.reason = ReasonCode::allowed;
    record.has_rcode = true;
    record.rcode = static_cast<std::uint8_t>(read_u16(answer, 2) & flag::kRcodeMask);
    record.answer_count = read_u16(answer, 6);
  } else {
    ++stats_.client_gone;
    record.action = QueryAction::drop;
    record.reason = ReasonCode::client_gone;
  }
  if (TcpClient* connection = client.transport == Transport::tcp
                                  ? client_of(client.connection, client.generation)
                                  : nullptr) {
    --connection->inflight;
    update_client_interest(*connection, client.connection);
  }
  table_.erase(*query);
  emit(record);
}

void ProxyLoop::read_datagrams(const Clock& now) {
  for (std::size_t round = 0; round < kReadsPerWake; ++round) {
    const std::size_t count = batch_.receive(udp_listener_);
    for (std::size_t i = 0; i < count; ++i) {
      handle_query(batch_.datagram(i), ClientRef{Transport::udp, &batch_.peer(i)}, now);
    }
    flush_sends(now);
    if (count < kBatch) return;
  }
}

void ProxyLoop::read_udp_answers(const Clock& now) {
  for (std::size_t round = 0; round < kReadsPerWake; ++round) {
    const std::size_t count = batch_.receive(udp_upstream_->fd());
    for (std::size_t i = 0; i < count; ++i) {
      const PeerAddress& source = batch_.peer(i);
      if (!udp_upstream_->is_resolver(source.get(), source.length)) {
        ++stats_.unsolicited_upstream;
        continue;
      }
      handle_answer(batch_.datagram(i), false, now);
    }
    flush_sends(now);
    if (count < kBatch) return;
  }
}

void ProxyLoop::read_udp_errors(const Clock& now) {
  std::array<std::uint16_t, kBatch> ids{};
  while (const std::size_t count = udp_upstream_->read_errors(ids)) {
    for (std::size_t i = 0; i < count; ++i) {
      InflightQuery* query = table_.find(ids[i]);
      if (query != nullptr && !query->via_tcp_upstream) {
        finish(*query, ReasonCode::upstream_error, now);
      }
    }
  }
}

void ProxyLoop::update_tcp_upstream_interest() {
  if (!tcp_upstream_.open()) return;  // a closed descriptor has left epoll by itself
  const std::uint32_t events = EPOLLIN | (tcp_upstream_.wants_write() ? EPOLLOUT : 0U);
  const bool fresh = tcp_upstream_.generation() != tcp_upstream_registered_generation_;
  if (!fresh && events == tcp_upstream_registered_events_) return;
  epoll_event event{};
  event.events = events;
  event.data.u64 = tag(Source::tcp_upstream);
  epoll_ctl(epoll_.get(), fresh ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, tcp_upstream_.fd(), &event);
  tcp_upstream_registered_generation_ = tcp_upstream_.generation();
  tcp_upstream_registered_events_ = events;
}

// The upstream connection is gone: its queries go again on a new one. A
// connection that answered nothing counts against each of its queries, and
// a query lost that way twice fails; a resolver that answers some queries
// and then closes (RFC 7766 6.2.1 allows it) is progressing, so its
// queries are sent again until their deadline.
void ProxyLoop::tcp_upstream_lost(std::uint32_t generation, const Clock& now) {
  const bool progressed = tcp_upstream_.answers_on_connection() > 0;
  table_.for_each([&](InflightQuery& query) {
    if (!query.via_tcp_upstream || query.upstream_generation != generation) return;
    if (!progressed && query.upstream_attempts >= kMaxUpstreamAttempts) {
      finish(query, ReasonCode::upstream_error, now);
      return;
    }
    if (!progressed) ++query.upstream_attempts;
    if (tcp_upstream_.send(query.tcp_query) != 0) {
      finish(query, ReasonCode::upstream_error, now);
      return;
    }
    query.upstream_generation = tcp_upstream_.generation();
  });
  update_tcp_upstream_interest();
}

void ProxyLoop::on_tcp_upstream_event(std::uint32_t events, const Clock& now) {
  const std::uint32_t generation = tcp_upstream_.generation();
  auto status = Do53TcpUpstream::Status::ok;
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) status = tcp_upstream_.on_writable();
  if (status == Do53TcpUpstream::Status::ok && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
    status = tcp_upstream_.on_readable(tcp_answers_);
    for (const auto answer : tcp_answers_) handle_answer(answer, true, now);
    tcp_answers_.clear();
  }
  if (status == Do53TcpUpstream::Status::unreachable) {
    // Nobody listens there: trying again at once would fail the same way.
    table_.for_each([&](InflightQuery& query) {
      if (query.via_tcp_upstream && query.upstream_generation == generation) {
        finish(query, ReasonCode::upstream_error, now);
      }
    });
  } else if (status == Do53TcpUpstream::Status::failed) {
    tcp_upstream_lost(generation, now);
  }
  update_tcp_upstream_interest();
}

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
                        client.inflight < config_.tcp.max_inflight_per_connection;
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
  while (client.open && client.inflight < config_.tcp.max_inflight_per_connection &&
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
    if (client.inflight >= config_.tcp.max_inflight_per_connection ||
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
        now.steady - client.frame_started >= config_.tcp.frame_timeout) {
      close_client(client, index);
    } else if (!client.frame_in_progress && client.inflight == 0 &&
               client.out.size() == client.out_written &&
               now.steady - client.last_activity >= config_.tcp.idle_timeout) {
      ++stats_.tcp_idle_closed;
      close_client(client, index);
    }
  }
}

void ProxyLoop::expire(const Clock& now) {
  while (InflightQuery* oldest = table_.oldest()) {
    if (oldest->received + config_.upstream_timeout > now.steady) return;
    finish(*oldest, ReasonCode::upstream_timeout, now);
  }
}

DnsProxyStats ProxyLoop::run(const std::atomic<bool>& shutdown) {
  if (!epoll_.valid()) return stats_;
  const auto watch = [&](int fd, Source source) {
    if (fd < 0) return;
    epoll_event event{};
    event.events = EPOLLIN;  // EPOLLERR is always reported
    event.data.u64 = tag(source);
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event);
  };
  watch(udp_listener_, Source::udp_listener);
  watch(tcp_listener_, Source::tcp_listener);
  if (udp_upstream_) watch(udp_upstream_->fd(), Source::udp_upstream);

  SteadyTime drain_until{};
  SteadyTime next_sweep = now().steady + kTcpSweep;
  std::array<epoll_event, 64> ready{};
  while (true) {
    Clock clock = now();
    if (!draining_ && shutdown.load(std::memory_order_relaxed)) {
      draining_ = true;
      drain_until = clock.steady + kShutdownGrace;
      if (udp_listener_ >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, udp_listener_, nullptr);
      if (tcp_listener_ >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, tcp_listener_, nullptr);
      for (std::uint32_t i = 0; i < clients_.size(); ++i) {
        if (clients_[i] && clients_[i]->open) update_client_interest(*clients_[i], i);
      }
    }
    if (draining_ && (table_.size() == 0 || clock.steady >= drain_until)) break;

    SteadyTime wake = clock.steady + kShutdownPoll;
    if (const InflightQuery* oldest = table_.oldest()) {
      wake = std::min(wake, oldest->received + config_.upstream_timeout);
    }
    if (draining_) wake = std::min(wake, drain_until);
    if (open_clients_ > 0) wake = std::min(wake, next_sweep);
    // The event writer may share our CPU; when it falls behind, give it the
    // CPU before taking more queries rather than drop their events.
    if (emitter_.wait_while_backlogged(kEventBacklogWait)) {
      ++stats_.event_backlog_waits;
      clock = now();
    }
    // Round up: waking a little late is fine, early would spin.
    const auto wait = std::chrono::ceil<milliseconds>(wake - clock.steady).count();
    const int count = epoll_wait(epoll_.get(), ready.data(), static_cast<int>(ready.size()),
                                 static_cast<int>(std::max<std::int64_t>(wait, 0)));
    clock = now();
    for (int i = 0; i < std::max(count, 0); ++i) {
      const auto source = static_cast<Source>(ready[i].data.u64 >> 32);
      const auto index = static_cast<std::uint32_t>(ready[i].data.u64);
      const std::uint32_t events = ready[i].events;
      switch (source) {
        case Source::udp_listener:
          if (!draining_) read_datagrams(clock);
          break;
        case Source::tcp_listener:
          if (!draining_) accept_connections(clock);
          break;
        case Source::udp_upstream:
          if ((events & EPOLLERR) != 0) read_udp_errors(clock);
          if ((events & EPOLLIN) != 0) read_udp_answers(clock);
          break;
        case Source::tcp_upstream:
          on_tcp_upstream_event(events, clock);
          break;
        case Source::tcp_client:
          on_client_event(index, events, clock);
          break;
      }
    }
    expire(clock);
    resume_clients(clock);
    flush_sends(clock);
    if (clock.steady >= next_sweep) {
      sweep_connections(clock);
      next_sweep = clock.steady + kTcpSweep;
    }
  }
  const Clock end = now();
  while (InflightQuery* left = table_.oldest()) finish(*left, ReasonCode::shutdown, end);
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    if (clients_[i] && clients_[i]->open) close_client(*clients_[i], i);
  }
  stats_.upstream_tcp_connects = tcp_upstream_.connects();
  return stats_;
}

}  // namespace

DnsProxyStats run_proxy(const DnsProxyConfig& config, const ProxySockets& sockets,
                        DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown) {
  // The loop's buffers and tables are large; they live on the heap, once.
  auto loop = std::make_unique<ProxyLoop>(config, sockets, emitter);
  return loop->run(shutdown);
}

DnsProxyStats run_one_shot(const DnsProxyConfig& config, int listener_fd, int upstream_fd,
                           DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown) {
  return run_proxy(config, ProxySockets{listener_fd, -1, upstream_fd}, emitter, shutdown);
}

DnsProxyStats run_tcp_one_shot(const DnsProxyConfig& config, int listener_fd,
                               DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown) {
  return run_proxy(config, ProxySockets{-1, listener_fd, -1}, emitter, shutdown);
}

}  // namespace dnsgate
