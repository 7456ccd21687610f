// The proxy's event loop: socket -> parser -> policy -> upstream -> relay ->
// event, for UDP datagrams and TCP frames alike, on the calling thread.
#include "proxy/proxy_loop.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <utility>

#include "dns/wire.hpp"
#include "dnsgate/response.hpp"

namespace dnsgate {

namespace {

using std::chrono::milliseconds;

constexpr std::size_t kReadsPerWake = 8;   // batches per socket before looking elsewhere
constexpr milliseconds kShutdownPoll{50};  // how soon `shutdown` is noticed without a wake fd
// With a wake fd, the flag needs no polling; the loop still turns this
// often so that /healthz (a turn within the last second) holds while idle.
constexpr milliseconds kIdleTurn{400};
constexpr milliseconds kShutdownGrace{200};    // answers still relayed after shutdown
constexpr milliseconds kTcpSweep{100};         // how often TCP idle/frame deadlines are checked
constexpr milliseconds kEventBacklogWait{5};   // the longest one turn waits for the event writer
constexpr std::uint16_t kMinUdpAnswer = 512;   // RFC 1035 4.2.1
constexpr std::size_t kKeptQueryOctets = 512;  // room kept per slot for the query as sent

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

}  // namespace

ProxyLoop::ProxyLoop(const DnsProxyConfig& config, const ProxySockets& sockets,
                     DnsQueryEmitter& emitter, const ProxyHooks& hooks)
    : config_owner_(std::shared_ptr<const DnsProxyConfig>(), &config),
      config_(&config),
      policy_version_(config.policy_version != 0 ? config.policy_version
                                                 : policy_version_of(config.hostname_allowlist)),
      hooks_(hooks),
      udp_listener_(sockets.udp_listener),
      tcp_listener_(sockets.tcp_listener),
      emitter_(emitter),
      table_(config.max_inflight),
      resolver_set_(config.resolvers.size(), config.resolver_policy),
      epoll_(epoll_create1(EPOLL_CLOEXEC)) {
  if (udp_listener_ >= 0) set_nonblocking(udp_listener_);
  if (tcp_listener_ >= 0) set_nonblocking(tcp_listener_);
  choose_io_backend();
  open_resolvers(sockets);
  open_validator();
  if (hooks_.metrics != nullptr) {
    hooks_.metrics->set_policy_version(format_policy_version(policy_version_));
    hooks_.metrics->set_validating(validator_ != nullptr);
  }
  clients_.resize(config.tcp.max_connections);
  for (std::size_t i = clients_.size(); i > 0; --i) {
    free_clients_.push_back(static_cast<std::uint32_t>(i - 1));
  }
}

// Transports go before the sockets and clients their queries refer to.
ProxyLoop::~ProxyLoop() {
  resolvers_.clear();
}

void ProxyLoop::emit(const QueryRecord& record) {
  if (!emitter_.emit(record)) ++stats_.events_dropped;
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

void ProxyLoop::flush_sends(const Clock& now) {
  // Queries first: a failed one adds its SERVFAIL to the answers.
  flush_upstreams(now);
  if (!to_clients_.empty()) flush_to_clients();
}

bool ProxyLoop::deliver(const ClientRef& client, std::span<const std::uint8_t> answer) {
  if (client.transport == Transport::udp && ring_) {
    if (!ring_->send(listener_handle_, udp_listener_, client.peer->get(), client.peer->length,
                     answer, 0)) {
      send_to_client_now(*client.peer, answer);
    }
    return true;
  }
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
  return decide(packet, parse_query(packet), client, now, nullptr);
}

// Parses a whole receive batch, then matches its names against the policy
// in one call, whose cache misses overlap on a large allowlist, then
// decides each query in the order it came.
void ProxyLoop::handle_datagrams(std::span<const WorkloadDatagram> batch, const Clock& now) {
  std::size_t named = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    parsed_[i].emplace(parse_query(batch[i].packet));
    batch_verdict_[i] = UINT8_MAX;
    const auto& parsed = *parsed_[i];
    if (parsed.ok() && parsed.value().header.opcode() == kOpcodeQuery) {
      batch_verdict_[i] = static_cast<std::uint8_t>(named);
      batch_names_[named++] = &parsed.value().question.name;
    }
  }
  if (named > 0) {
    config_->allowlist.allows_batch({batch_names_.data(), named}, {batch_allowed_.data(), named});
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const bool* allowed =
        batch_verdict_[i] == UINT8_MAX ? nullptr : &batch_allowed_[batch_verdict_[i]];
    decide(batch[i].packet, *parsed_[i], ClientRef{Transport::udp, batch[i].peer}, now, allowed);
  }
}

// `allowed`: the policy's verdict on the query's name when the caller had
// the whole batch matched already; null to match it here.
bool ProxyLoop::decide(std::span<std::uint8_t> packet, const ParseResult<ParsedQuery>& parsed,
                       const ClientRef& client, const Clock& now, const bool* allowed) {
  ++stats_.received;
  QueryRecord record;
  record.received_at = now.wall;
  record.policy_version = policy_version_;
  record.transport = client.transport;
  record.client = endpoint_of(*client.peer);
  record.size = static_cast<std::uint32_t>(packet.size());
  if (packet.size() >= 2) {
    record.has_transaction_id = true;
    record.transaction_id = read_u16(packet, 0);
  }

  if (!parsed.ok()) {
    ++stats_.malformed;
    record.action = QueryAction::drop;
    record.reason = ReasonCode::malformed_query;
    record.parse_error = parsed.error();
    emit(record);
    return false;
  }
  const ParsedQuery& query = parsed.value();
  record.has_question = query.has_question;
  record.qname = query.question.name;
  record.qtype = query.question.qtype;
  record.qclass = query.question.qclass;
  const QueryEcho echo = echo_of(query, packet);

  // An EDNS version above 0 turns any of these answers into BADVERS.
  const auto answer_here = [&](QueryAction action, ReasonCode reason, Rcode rcode,
                               ExtendedError ede) {
    answer_locally(echo, client, rcode, ede);
    record.action = action;
    record.reason = reason;
    record.has_rcode = true;
    record.rcode = static_cast<std::uint8_t>(response_rcode(echo, rcode));
    emit(record);
  };

  if (query.header.opcode() != kOpcodeQuery) {
    ++stats_.notimp;
    record.opcode = query.header.opcode();
    answer_here(QueryAction::refuse, ReasonCode::unsupported_opcode, Rcode::notimp,
                ExtendedError::none);
    return true;
  }
  if (!(allowed != nullptr ? *allowed : config_->allowlist.allows(query.question.name))) {
    ++stats_.refused;
    answer_here(QueryAction::refuse, ReasonCode::not_allowlisted, config_->deny_rcode,
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

  // The resolvers see the workload's bytes but for the id.
  write_u16(packet, 0, slot->upstream_id);
  if (slot->upstream_query.capacity() < kKeptQueryOctets) {
    slot->upstream_query.reserve(kKeptQueryOctets);
  }
  slot->upstream_query.assign(packet.begin(), packet.end());
  slot->role = InflightQuery::Role::workload;
  slot->validate = false;
  slot->awaiting_chain = false;
  slot->chain_rounds = 0;
  slot->serial = ++next_serial_;
  slot->policy_version = policy_version_;
  if (validator_) ask_for_dnssec(*slot, (query.header.flags & flag::kCd) != 0);
  slot->sent = false;
  slot->forwarded = false;
  slot->resolvers_tried = 0;
  slot->last_error = {};
  send_upstream(*slot, now);
  return true;
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
  record.policy_version = query.policy_version;
  // The resolver it was sent to, even one a reload has retired since.
  const ResolverConfig& resolver = *resolvers_[query.resolver].config;
  record.upstream = resolver.address;
  record.upstream_uri = resolver.uri;
  return record;
}

// Ends a query in flight without an upstream answer: SERVFAIL for a
// timeout, an unreachable upstream or a send that could not happen;
// nothing at all at shutdown or when the workload has gone. One event.
void ProxyLoop::finish(InflightQuery& query, ReasonCode reason, const Clock& now) {
  if (query.role == InflightQuery::Role::chain_fetch) {
    // The validator's own fetch: no workload, no event. Its waiters learn
    // that the material could not be had, unless the loop is stopping.
    if (reason != ReasonCode::shutdown) {
      validator_->fetch_failed(query.chain, validator_now(now));
    }
    end_fetch(query, reason != ReasonCode::shutdown, now);
    return;
  }
  // Past its deadline while the chain of trust was being fetched.
  if (query.awaiting_chain && reason == ReasonCode::upstream_timeout) {
    reason = ReasonCode::dnssec_indeterminate;
  }
  QueryRecord record = record_of(query, now);
  const ClientRef client = client_ref(query);
  record.reason = reason;
  record.action = QueryAction::drop;
  if (reason == ReasonCode::shutdown) {
    ++stats_.dropped_at_shutdown;
  } else {
    ExtendedError ede = ExtendedError::none;
    ExtendedError second_ede = ExtendedError::none;
    if (reason == ReasonCode::upstream_timeout) {
      ++stats_.servfail_timeout;
      ede = ExtendedError::no_reachable_authority;
      if (query.sent) {
        Resolver& resolver = resolvers_[query.resolver];
        ++resolver.counted.failures;
        resolver.metrics->failures.store(
            resolver.metrics->failures.load(std::memory_order_relaxed) + 1,
            std::memory_order_relaxed);
        if (const std::size_t position = position_of(query.resolver); position != kNoResolver) {
          resolver_set_.on_timeout(position, now.steady);
        }
      }
    } else if (reason == ReasonCode::upstream_error) {
      ++stats_.servfail_error;
      ede = ExtendedError::network_error;
      record.upstream_error = query.last_error;
    } else if (reason == ReasonCode::dnssec_bogus) {
      ++stats_.dnssec_bogus;
      ede = ExtendedError::dnssec_bogus;
      second_ede = static_cast<ExtendedError>(query.dnssec_detail);
      record.dnssec = DnssecState::bogus;
    } else if (reason == ReasonCode::dnssec_indeterminate) {
      ++stats_.dnssec_indeterminate;
      ede = ExtendedError::dnssec_indeterminate;
      record.dnssec = DnssecState::indeterminate;
    } else {
      ++stats_.overloaded;
      record.has_upstream = false;  // it never left
    }
    const std::size_t size =
        synthesize_response(query.echo(), Rcode::servfail, ede, synthesized_, second_ede);
    if (deliver(client, {synthesized_.data(), size})) {
      record.action = QueryAction::servfail;
      record.has_rcode = true;
      record.rcode = static_cast<std::uint8_t>(response_rcode(query.echo(), Rcode::servfail));
    } else {
      ++stats_.client_gone;
      record.reason = ReasonCode::client_gone;
    }
  }
  release(query);
  emit(record);
}

// Frees the query's slot: its resolver stops waiting for it, and its TCP
// workload may be read again.
void ProxyLoop::release(InflightQuery& query) {
  unsend(query);
  if (query.client_transport == Transport::tcp && query.role == InflightQuery::Role::workload) {
    if (TcpClient* connection = client_of(query.connection, query.connection_generation)) {
      --connection->inflight;
      update_client_interest(*connection, query.connection);
    }
  }
  table_.erase(query);
}

void ProxyLoop::read_datagrams(const Clock& now) {
  std::array<WorkloadDatagram, DatagramBatch::kBatch> batch{};
  for (std::size_t round = 0; round < kReadsPerWake; ++round) {
    const std::size_t count = batch_.receive(udp_listener_);
    for (std::size_t i = 0; i < count; ++i) batch[i] = {batch_.datagram(i), &batch_.peer(i)};
    handle_datagrams({batch.data(), count}, now);
    flush_sends(now);
    if (count < DatagramBatch::kBatch) return;
  }
}

void ProxyLoop::expire(const Clock& now) {
  while (InflightQuery* oldest = table_.oldest()) {
    if (oldest->received + config_->upstream_timeout > now.steady) return;
    finish(*oldest, ReasonCode::upstream_timeout, now);
  }
}

SteadyTime ProxyLoop::next_wake(SteadyTime now, SteadyTime drain_until,
                                SteadyTime next_sweep) const {
  SteadyTime wake = now + (hooks_.wake_fd >= 0 ? kIdleTurn : kShutdownPoll);
  if (const InflightQuery* oldest = table_.oldest()) {
    wake = std::min(wake, oldest->received + config_->upstream_timeout);
  }
  if (draining_) wake = std::min(wake, drain_until);
  if (open_clients_ > 0 || retired_ > 0) wake = std::min(wake, next_sweep);
  return std::min(wake, next_upstream_timer());
}

void ProxyLoop::dispatch(const epoll_event& ready, const Clock& now) {
  const auto source = static_cast<Source>(ready.data.u64 >> 32);
  const auto index = static_cast<std::uint32_t>(ready.data.u64);
  switch (source) {
    case Source::udp_listener:
      if (!draining_) read_datagrams(now);
      break;
    case Source::tcp_listener:
      if (!draining_) accept_connections(now);
      break;
    case Source::upstream:
      on_upstream_io(index, ready.events, now);
      break;
    case Source::tcp_client:
      on_client_event(index, ready.events, now);
      break;
    case Source::reload: {
      // Taken already, right after the wait; only the count is left.
      std::uint64_t posted = 0;
      (void)!read(hooks_.reloads->wake_fd(), &posted, sizeof posted);
      break;
    }
    case Source::wake:
      // Seen: the flag is read at the top of the turn. Left registered, the
      // descriptor (never read) would wake every turn until the end.
      epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, hooks_.wake_fd, nullptr);
      break;
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
  if (ring_) {
    if (udp_listener_ >= 0) listener_handle_ = ring_->watch(udp_listener_, listener_port_);
    ring_->poll_readable(epoll_.get());
  } else {
    watch(udp_listener_, Source::udp_listener);
  }
  watch(tcp_listener_, Source::tcp_listener);
  watch(hooks_.wake_fd, Source::wake);
  if (hooks_.reloads != nullptr) watch(hooks_.reloads->wake_fd(), Source::reload);
  for (std::size_t i = 0; i < resolvers_.size(); ++i) sync_interest(i);
  if (hooks_.metrics != nullptr) {
    // Healthy from the loop's start: the first turn may answer a query
    // before it publishes (at its end), and a probe must not see a proxy
    // that answers as one that never turned.
    hooks_.metrics->turned(now().steady);
    hooks_.metrics->set_listening(true);
  }

  SteadyTime drain_until{};
  SteadyTime next_sweep = now().steady + kTcpSweep;
  std::array<epoll_event, 64> ready{};
  while (true) {
    Clock clock = now();
    if (!draining_ && shutdown.load(std::memory_order_relaxed)) {
      draining_ = true;
      drain_until = clock.steady + kShutdownGrace;
      stop_listening();
    }
    if (draining_ && (table_.size() == 0 || clock.steady >= drain_until)) break;
    // Between two turns: what came before ran on the old config, what
    // comes after runs on the new one.
    if (!draining_ &&
        (deferred_reload_ || (hooks_.reloads != nullptr && hooks_.reloads->pending()))) {
      take_reload();
    }

    const SteadyTime wake = next_wake(clock.steady, drain_until, next_sweep);
    // The event writer may share our CPU; when it falls behind, give it the
    // CPU before taking more queries rather than drop their events.
    if (emitter_.wait_while_backlogged(kEventBacklogWait)) {
      ++stats_.event_backlog_waits;
      clock = now();
    }
    // Round up: waking a little late is fine, early would spin.
    const auto wait = std::chrono::ceil<milliseconds>(wake - clock.steady);
    const int count = wait_for_io(std::max(wait, milliseconds{0}), ready);
    for (int i = 0; i < count; ++i) dispatch(ready[i], turn_clock_);
    clock = turn_clock_;
    // Deadlines of queries before those of transports: a query whose time
    // is up is a timeout, whatever its connection was doing.
    expire(clock);
    run_upstream_timers(clock);
    resume_clients(clock);
    flush_sends(clock);
    if (clock.steady >= next_sweep) {
      sweep_connections(clock);
      reap_retired();
      next_sweep = clock.steady + kTcpSweep;
    }
    publish_metrics(clock);
  }
  const Clock end = now();
  while (InflightQuery* left = table_.oldest()) finish(*left, ReasonCode::shutdown, end);
  // The last turn's answers are still queued in the ring: hand them over.
  if (ring_) ring_->wait(milliseconds{0});
  close_all_clients();
  collect_upstream_stats();
  if (validator_) stats_.dnssec_key_cache = validator_->cached();
  if (hooks_.metrics != nullptr) {
    hooks_.metrics->publish(stats_);
    hooks_.metrics->set_listening(false);
  }
  return stats_;
}

// A config posted while the loop waited (its wake ended the wait) is in
// force before anything that woke the loop with it is decided.
void ProxyLoop::take_reload_if_posted() {
  if (!draining_ && hooks_.reloads != nullptr && hooks_.reloads->pending()) take_reload();
}

// Puts the newest posted config in force. Its checks (restart_only_change,
// the loader's) were the poster's; what is left to fail here is room for
// new resolvers while retired ones still serve queries: the config waits.
void ProxyLoop::take_reload() {
  std::shared_ptr<const DnsProxyConfig> next;
  if (hooks_.reloads != nullptr && hooks_.reloads->pending()) next = hooks_.reloads->take();
  if (!next) next = std::move(deferred_reload_);
  deferred_reload_.reset();
  if (!next) return;
  if (!put_resolvers_in_force(next, -1)) {
    deferred_reload_ = std::move(next);
    return;
  }
  config_owner_ = std::move(next);
  config_ = config_owner_.get();
  policy_version_ = config_->policy_version != 0 ? config_->policy_version
                                                 : policy_version_of(config_->hostname_allowlist);
  if (hooks_.metrics != nullptr) {
    hooks_.metrics->reload_applied(format_policy_version(policy_version_));
  }
  if (hooks_.reloads != nullptr) hooks_.reloads->mark_applied();
}

void ProxyLoop::publish_metrics(const Clock& now) {
  MetricsBoard* board = hooks_.metrics;
  if (board == nullptr) return;
  ProxyCounters counters = stats_;
  for (std::size_t slot = 0; slot < resolvers_.size(); ++slot) {
    Resolver& resolver = resolvers_[slot];
    if (!resolver.upstream) continue;
    const UpstreamCounters transport = resolver.upstream->counters();
    counters.unsolicited_upstream += transport.unsolicited;
    counters.upstream_tcp_connects += transport.connects;
    if (const std::size_t position = position_of(slot); position != kNoResolver) {
      // Cumulative over reloads, which start a fresh ResolverSet. Before
      // `up`: a scrape that sees a resolver down sees it counted.
      const std::uint64_t downs = resolver_set_.times_down(position);
      if (downs > resolver.downs_published) {
        resolver.metrics->times_down.fetch_add(downs - resolver.downs_published,
                                               std::memory_order_relaxed);
        resolver.downs_published = downs;
      }
      resolver.metrics->up.store(resolver_set_.is_up(position), std::memory_order_release);
    }
  }
  counters.unsolicited_upstream += reaped_.unsolicited;
  counters.upstream_tcp_connects += reaped_.connects;
  if (validator_) counters.dnssec_key_cache = validator_->cached();
  counters.events_dropped += emitter_.dropped_after_accept();
  board->publish(counters);
  board->turned(now.steady);
}

DnsProxyStats run_proxy(const DnsProxyConfig& config, const ProxySockets& sockets,
                        DnsQueryEmitter& emitter, const std::atomic<bool>& shutdown,
                        const ProxyHooks& hooks) {
  // The loop's buffers and tables are large; they live on the heap, once.
  auto loop = std::make_unique<ProxyLoop>(config, sockets, emitter, hooks);
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
