// The loop's side of the resolvers: which one a query goes to, what comes
// back, what failed, and the descriptors and timers the transports need.
#include <sys/epoll.h>

#include <algorithm>
#include <bit>
#include <cerrno>

#include "dns/opt_record.hpp"
#include "dns/wire.hpp"
#include "proxy/proxy_loop.hpp"
#include "upstream/do53_udp.hpp"
#include "upstream/make_upstream.hpp"

namespace dnsgate {

namespace {

constexpr int kMaxResolversPerQuery = 2;  // the first, then one more after a failure
constexpr std::uint32_t kSlotBits = 8;    // epoll tag: resolver index << kSlotBits | slot

ReasonCode reason_for(UpstreamError error) {
  if (error.kind == UpstreamErrorKind::send_failed &&
      (error.detail == EAGAIN || error.detail == ENOBUFS)) {
    return ReasonCode::overloaded;
  }
  return ReasonCode::upstream_error;
}

}  // namespace

// The transport's `now` is the loop's turn time, given back: reading the
// clocks again per answer would cost more than the rest of the callback.
void ProxyLoop::ResolverPort::on_answer(std::span<std::uint8_t> answer, SteadyTime now) {
  (void)now;
  loop_.on_upstream_answer(index_, answer, loop_.turn_clock_);
}

void ProxyLoop::ResolverPort::on_failure(std::uint16_t upstream_id, UpstreamError error,
                                         SteadyTime now) {
  (void)now;
  loop_.on_upstream_failure(index_, upstream_id, error, loop_.turn_clock_);
}

std::span<const std::uint8_t> ProxyLoop::ResolverPort::pending_query(
    std::uint16_t upstream_id) noexcept {
  const InflightQuery* query = loop_.table_.find(upstream_id);
  if (query == nullptr || !query->sent || query->resolver != index_) return {};
  return query->upstream_query;
}

void ProxyLoop::open_resolvers(const ProxySockets& sockets) {
  resolvers_.resize(config_.resolvers.size());
  for (std::size_t i = 0; i < resolvers_.size(); ++i) {
    Resolver& resolver = resolvers_[i];
    resolver.port = std::make_unique<ResolverPort>(*this, static_cast<std::uint8_t>(i));
    // The caller's UDP socket, if any, is for the first resolver.
    const int udp_fd = i == 0 ? sockets.udp_upstream : -1;
    // Half the query's time for a connection and its handshake: a resolver
    // that stalls there leaves the other half for the next resolver.
    resolver.upstream =
        make_upstream(config_.resolvers[i], udp_fd, config_.upstream_timeout / 2, *resolver.port);
    resolver.registered.resize(resolver.upstream ? resolver.upstream->io_slots() : 0);
  }
}

// Keeps epoll in step with the descriptors a transport wants watched. A
// descriptor the transport closed has left epoll by itself; one it opened
// (a new generation, perhaps under a recycled number) is added.
void ProxyLoop::sync_interest(std::size_t index) {
  Resolver& resolver = resolvers_[index];
  if (!resolver.upstream->interest_changed()) return;
  resolver.upstream->interest_synced();
  for (std::size_t slot = 0; slot < resolver.registered.size(); ++slot) {
    const IoInterest want = resolver.upstream->io_interest(slot);
    IoInterest& have = resolver.registered[slot];
    if (want.fd < 0) {
      have = {};
      continue;
    }
    const bool fresh = want.fd != have.fd || want.generation != have.generation;
    if (!fresh && want.events == have.events) continue;
    epoll_event event{};
    event.events = want.events;
    event.data.u64 = tag(Source::upstream, static_cast<std::uint32_t>(index << kSlotBits | slot));
    if (fresh) {
      if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, want.fd, &event) != 0 && errno == EEXIST) {
        epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, want.fd, &event);
      }
    } else {
      epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, want.fd, &event);
    }
    have = want;
  }
}

void ProxyLoop::on_upstream_io(std::uint32_t index, std::uint32_t events, const Clock& now) {
  const std::size_t resolver = index >> kSlotBits;
  if (resolver >= resolvers_.size()) return;
  resolvers_[resolver].upstream->on_io(index & ((1U << kSlotBits) - 1), events, now.steady);
  sync_interest(resolver);
}

SteadyTime ProxyLoop::next_upstream_timer() const noexcept {
  SteadyTime next = kNever;
  for (const Resolver& resolver : resolvers_) {
    next = std::min(next, resolver.upstream->next_timer());
  }
  return next;
}

void ProxyLoop::run_upstream_timers(const Clock& now) {
  for (std::size_t i = 0; i < resolvers_.size(); ++i) {
    if (resolvers_[i].upstream->next_timer() > now.steady) continue;
    resolvers_[i].upstream->on_timer(now.steady);
    sync_interest(i);
  }
}

void ProxyLoop::flush_upstreams(const Clock& now) {
  for (std::size_t i = 0; i < resolvers_.size(); ++i) {
    resolvers_[i].upstream->flush(now.steady);
    sync_interest(i);
  }
}

// Sends the query to the resolver the policy picks; false (and the query
// ended) when no resolver would take it.
void ProxyLoop::send_upstream(InflightQuery& query, const Clock& now) {
  const std::size_t first = resolver_set_.choose(now.steady);
  if (!try_resolver(query, first, now)) finish(query, reason_for(query.last_error), now);
}

// Hands the query to `index`, or, when that fails at once, to one more
// resolver. False when neither took it.
bool ProxyLoop::try_resolver(InflightQuery& query, std::size_t index, const Clock& now) {
  while (index != ResolverSet::kNone) {
    Resolver& resolver = resolvers_[index];
    query.resolver = static_cast<std::uint8_t>(index);
    query.resolvers_tried |= 1U << index;
    const UpstreamError error =
        resolver.upstream->send(query.upstream_query, query.client_transport, now.steady);
    sync_interest(index);
    ++resolver.counted.queries;
    if (!error) {
      query.sent = true;
      // A query counts once, however many resolvers it went to; the
      // validator's own fetches are not the workload's queries.
      if (!query.forwarded && query.role == InflightQuery::Role::workload) ++stats_.forwarded;
      query.forwarded = true;
      return true;
    }
    ++resolver.counted.failures;
    resolver_set_.on_failure(index, error, now.steady);
    query.last_error = error;
    if (std::popcount(query.resolvers_tried) >= kMaxResolversPerQuery) break;
    index = resolver_set_.choose(now.steady, query.resolvers_tried);
  }
  return false;
}

void ProxyLoop::on_upstream_failure(std::uint8_t resolver, std::uint16_t upstream_id,
                                    UpstreamError error, const Clock& now) {
  InflightQuery* query = table_.find(upstream_id);
  if (query == nullptr || !query->sent || query->resolver != resolver) return;
  ++resolvers_[resolver].counted.failures;
  resolver_set_.on_failure(resolver, error, now.steady);
  query->sent = false;
  query->last_error = error;
  // Once more on the next resolver, if there is one and time is left.
  if (std::popcount(query->resolvers_tried) < kMaxResolversPerQuery &&
      query->received + config_.upstream_timeout > now.steady) {
    const std::size_t next = resolver_set_.choose(now.steady, query->resolvers_tried);
    if (next != ResolverSet::kNone && try_resolver(*query, next, now)) return;
  }
  finish(*query, reason_for(query->last_error), now);
}

void ProxyLoop::on_upstream_answer(std::uint8_t resolver, std::span<std::uint8_t> packet,
                                   const Clock& now) {
  const auto response = parse_response_question(packet);
  if (!response.ok()) {
    ++stats_.unsolicited_upstream;
    return;
  }
  InflightQuery* query = table_.find(response.value().header.id);
  if (query == nullptr || !query->sent || query->resolver != resolver ||
      !answers_question(response.value(), query->question_wire())) {
    ++stats_.unsolicited_upstream;
    return;
  }
  ++resolvers_[resolver].counted.answers;
  resolver_set_.on_answer(resolver);
  if (validator_) {
    on_checked_answer(*query, packet, now);
    return;
  }
  write_u16(packet, 0, query->client_id);
  relay_answer(*query, packet, DnssecState::unchecked, now);
}

// Relays `answer` (the workload's id in place) and writes the event. A UDP
// client gets what fits: an answer fetched over a stream may not.
void ProxyLoop::relay_answer(InflightQuery& query, std::span<const std::uint8_t> answer,
                             DnssecState dnssec, const Clock& now) {
  if (query.client_transport == Transport::udp && answer.size() > query.udp_answer_limit) {
    // Header with TC=1, the question and the answer's OPT (RFC 6891 7), so
    // the client retries over TCP.
    scratch_.assign(answer.begin(), answer.begin() + kHeaderOctets);
    scratch_.insert(scratch_.end(), query.question_wire().begin(), query.question_wire().end());
    write_u16(scratch_, 2, static_cast<std::uint16_t>(read_u16(answer, 2) | flag::kTc));
    write_u16(scratch_, 4, 1);
    write_u16(scratch_, 6, 0);
    write_u16(scratch_, 8, 0);
    write_u16(scratch_, 10, 0);
    const auto opt = find_opt(answer);
    // Only an OPT owned by the root as one octet: a compressed owner would
    // point into the records left out.
    if (opt && answer[opt->start] == 0 && opt->rdlength_at == opt->start + 9 &&
        scratch_.size() + (opt->end - opt->start) <= query.udp_answer_limit) {
      scratch_.insert(scratch_.end(), answer.begin() + static_cast<std::ptrdiff_t>(opt->start),
                      answer.begin() + static_cast<std::ptrdiff_t>(opt->end));
      write_u16(scratch_, 10, 1);
    }
    answer = scratch_;
  }
  QueryRecord record = record_of(query, now);
  record.dnssec = dnssec;
  if (deliver(client_ref(query), answer)) {
    ++stats_.relayed;
    record.action = QueryAction::forward;
    record.reason = ReasonCode::allowed;
    record.has_rcode = true;
    // With its OPT's extended bits: BADVERS, BADCOOKIE (RFC 6891 6.1.3).
    const std::uint16_t rcode =
        read_u16(answer, 10) == 0
            ? static_cast<std::uint16_t>(read_u16(answer, 2) & flag::kRcodeMask)
            : full_rcode(answer);
    record.rcode = static_cast<std::uint8_t>(std::min<std::uint16_t>(rcode, 0xFF));
    record.answer_count = read_u16(answer, 6);
  } else {
    ++stats_.client_gone;
    record.action = QueryAction::drop;
    record.reason = ReasonCode::client_gone;
  }
  release(query);
  emit(record);
}

void ProxyLoop::collect_upstream_stats() {
  stats_.resolvers.clear();
  stats_.upstream_tcp_connects = 0;
  for (std::size_t i = 0; i < resolvers_.size(); ++i) {
    const UpstreamCounters transport = resolvers_[i].upstream->counters();
    const UpstreamCounters& loop = resolvers_[i].counted;
    ResolverStats out;
    out.uri = std::string(config_.resolvers[i].uri);
    out.queries = loop.queries;
    out.answers = loop.answers;
    out.failures = loop.failures;
    out.connects = transport.connects;
    out.handshakes = transport.handshakes;
    out.resumed = transport.resumed;
    out.unsolicited = transport.unsolicited;
    out.times_down = resolver_set_.times_down(i);
    stats_.unsolicited_upstream += transport.unsolicited;
    stats_.upstream_tcp_connects += transport.connects;
    stats_.resolvers.push_back(std::move(out));
  }
}

}  // namespace dnsgate
