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
// In `resolvers_tried`: tried in a resolver list a reload has replaced
// (one of the query's tries, at no position of the list in force).
constexpr std::uint32_t kTriedEarlierList = 1U << 31;

// The loop is the only writer of the board's figures: a load and a store.
void bump(std::atomic<std::uint64_t>& counter) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

std::uint32_t micros_since(SteadyTime from, SteadyTime to) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, UINT32_MAX));
}

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
  // The caller's UDP socket, if any, is for the first resolver.
  put_resolvers_in_force(config_owner_, sockets.udp_upstream);
}

namespace {

bool same_resolver(const ResolverConfig& a, const ResolverConfig& b) {
  return a.protocol == b.protocol && a.address == b.address &&
         a.tls_server_name == b.tls_server_name && a.ca_file == b.ca_file &&
         a.spki_pins == b.spki_pins && a.url == b.url && a.uri == b.uri;
}

}  // namespace

// Puts `config`'s resolvers in force. One already open with the same
// settings is kept, with its connections and TLS sessions; the others are
// opened. Those left out retire: they still serve the queries in flight
// that name them, and are closed once none does (reap_retired). False,
// changing nothing, when the slots for the new ones are not free yet.
bool ProxyLoop::put_resolvers_in_force(const std::shared_ptr<const DnsProxyConfig>& config,
                                       int udp_fd) {
  const std::vector<ResolverConfig>& wanted = config->resolvers;
  std::vector<std::size_t> slots(wanted.size(), kNoResolver);
  std::vector<bool> kept(in_force_.size(), false);
  std::size_t to_open = 0;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    for (std::size_t p = 0; p < in_force_.size(); ++p) {
      if (!kept[p] && same_resolver(*resolvers_[in_force_[p]].config, wanted[i])) {
        kept[p] = true;
        slots[i] = in_force_[p];
        break;
      }
    }
    if (slots[i] == kNoResolver) ++to_open;
  }
  std::vector<std::size_t> free_slots;
  for (std::size_t s = 0; s < resolvers_.size() && free_slots.size() < to_open; ++s) {
    if (!resolvers_[s].upstream) free_slots.push_back(s);
  }
  if (free_slots.size() + (kMaxResolverSlots - resolvers_.size()) < to_open) return false;
  while (free_slots.size() < to_open) {
    free_slots.push_back(resolvers_.size());
    resolvers_.emplace_back();
  }

  const bool same_list = slots == in_force_ && config_->resolver_policy == config->resolver_policy;
  for (std::size_t p = 0; p < in_force_.size(); ++p) {
    if (kept[p]) continue;
    resolvers_[in_force_[p]].retired = true;
    ++retired_;
  }
  std::vector<ResolverMetrics*> named;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (slots[i] == kNoResolver) {
      slots[i] = free_slots.back();
      free_slots.pop_back();
      Resolver& resolver = resolvers_[slots[i]];
      resolver.port = std::make_unique<ResolverPort>(*this, static_cast<std::uint8_t>(slots[i]));
      // Half the query's time for a connection and its handshake: a resolver
      // that stalls there leaves the other half for the next resolver.
      resolver.upstream = make_upstream(wanted[i], i == 0 ? udp_fd : -1,
                                        config->upstream_timeout / 2, *resolver.port, ring_.get());
      resolver.registered.assign(resolver.upstream ? resolver.upstream->io_slots() : 0, {});
      resolver.counted = {};
      if (hooks_.metrics != nullptr) {
        resolver.metrics = &hooks_.metrics->resolver(wanted[i].uri);
      } else {
        resolver.metrics = &unboarded_.emplace_back(wanted[i].uri);
      }
    }
    Resolver& resolver = resolvers_[slots[i]];
    resolver.owner = config;
    resolver.config = &wanted[i];
    resolver.position = i;
    named.push_back(resolver.metrics);
  }
  in_force_ = std::move(slots);
  // Health (down, backoff) stays with an unchanged list; a changed one
  // starts with every resolver up.
  if (!same_list) {
    resolver_set_ = ResolverSet(wanted.size(), config->resolver_policy);
    for (const std::size_t slot : in_force_) resolvers_[slot].downs_published = 0;
    ++resolver_generation_;
  }
  if (hooks_.metrics != nullptr) hooks_.metrics->set_resolvers_in_force(named);
  return true;
}

std::size_t ProxyLoop::position_of(std::size_t slot) const noexcept {
  const Resolver& resolver = resolvers_[slot];
  return resolver.upstream && !resolver.retired ? resolver.position : kNoResolver;
}

// The slot of the resolver the policy picks for `query`; kNoResolver when
// it has tried them all.
std::size_t ProxyLoop::choose_resolver(const InflightQuery& query, const Clock& now) {
  const std::size_t position = resolver_set_.choose(now.steady, query.resolvers_tried);
  return position == ResolverSet::kNone ? kNoResolver : in_force_[position];
}

// Closes the retired resolvers no query in flight names any more. At the
// end of a turn, never inside a transport's own callback.
void ProxyLoop::reap_retired() {
  if (retired_ == 0) return;
  std::vector<bool> named(resolvers_.size(), false);
  table_.for_each([&](InflightQuery& query) { named[query.resolver] = true; });
  for (std::size_t s = 0; s < resolvers_.size(); ++s) {
    Resolver& resolver = resolvers_[s];
    if (!resolver.retired || named[s]) continue;
    const UpstreamCounters transport = resolver.upstream->counters();
    reaped_.unsolicited += transport.unsolicited;
    reaped_.connects += transport.connects;
    // A descriptor the transport does not own (the caller's UDP socket of
    // the first resolver) stays open after it: out of epoll by hand, or its
    // late answers would wake the loop for a slot no one reads.
    for (const IoInterest& watched : resolver.registered) {
      if (watched.fd >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watched.fd, nullptr);
    }
    resolver.upstream.reset();  // closes its own descriptors
    resolver.port.reset();
    resolver.registered.clear();
    resolver.owner.reset();
    resolver.config = nullptr;
    resolver.retired = false;
    --retired_;
  }
}

// The query no longer waits on its resolver.
void ProxyLoop::unsend(InflightQuery& query) {
  if (!query.sent) return;
  query.sent = false;
  resolvers_[query.resolver].upstream->cancel(query.upstream_id);
}

// Keeps epoll in step with the descriptors a transport wants watched. A
// descriptor the transport closed has left epoll by itself; one it opened
// (a new generation, perhaps under a recycled number) is added.
void ProxyLoop::sync_interest(std::size_t index) {
  Resolver& resolver = resolvers_[index];
  if (!resolver.upstream || !resolver.upstream->interest_changed()) return;
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
  if (resolver >= resolvers_.size() || !resolvers_[resolver].upstream) return;
  resolvers_[resolver].upstream->on_io(index & ((1U << kSlotBits) - 1), events, now.steady);
  sync_interest(resolver);
}

SteadyTime ProxyLoop::next_upstream_timer() const noexcept {
  SteadyTime next = kNever;
  for (const Resolver& resolver : resolvers_) {
    if (resolver.upstream) next = std::min(next, resolver.upstream->next_timer());
  }
  return next;
}

void ProxyLoop::run_upstream_timers(const Clock& now) {
  for (std::size_t i = 0; i < resolvers_.size(); ++i) {
    if (!resolvers_[i].upstream || resolvers_[i].upstream->next_timer() > now.steady) continue;
    resolvers_[i].upstream->on_timer(now.steady);
    sync_interest(i);
  }
}

void ProxyLoop::flush_upstreams(const Clock& now) {
  for (std::size_t i = 0; i < resolvers_.size(); ++i) {
    if (!resolvers_[i].upstream) continue;
    resolvers_[i].upstream->flush(now.steady);
    sync_interest(i);
  }
}

// Sends the query to the resolver the policy picks; false (and the query
// ended) when no resolver would take it.
void ProxyLoop::send_upstream(InflightQuery& query, const Clock& now) {
  query.resolvers_tried = 0;
  query.resolver_generation = resolver_generation_;
  const std::size_t first = choose_resolver(query, now);
  if (!try_resolver(query, first, now)) finish(query, reason_for(query.last_error), now);
}

// Hands the query to `index`, or, when that fails at once, to one more
// resolver. False when neither took it.
bool ProxyLoop::try_resolver(InflightQuery& query, std::size_t index, const Clock& now) {
  // A reload since the query's first try: its tried bits name positions in
  // a list no longer in force. It keeps one try in the new list.
  if (query.resolver_generation != resolver_generation_) {
    query.resolver_generation = resolver_generation_;
    query.resolvers_tried = query.resolvers_tried != 0 ? kTriedEarlierList : 0;
  }
  while (index != kNoResolver) {
    Resolver& resolver = resolvers_[index];
    query.resolver = static_cast<std::uint8_t>(index);
    if (const std::size_t position = position_of(index); position != kNoResolver) {
      query.resolvers_tried |= 1U << position;
    }
    const UpstreamError error =
        resolver.upstream->send(query.upstream_query, query.client_transport, now.steady);
    sync_interest(index);
    ++resolver.counted.queries;
    bump(resolver.metrics->queries);
    if (!error) {
      query.sent = true;
      query.sent_at = now.steady;
      // A query counts once, however many resolvers it went to; the
      // validator's own fetches are not the workload's queries.
      if (!query.forwarded && query.role == InflightQuery::Role::workload) ++stats_.forwarded;
      query.forwarded = true;
      return true;
    }
    ++resolver.counted.failures;
    bump(resolver.metrics->failures);
    if (const std::size_t position = position_of(index); position != kNoResolver) {
      resolver_set_.on_failure(position, error, now.steady);
    }
    query.last_error = error;
    if (std::popcount(query.resolvers_tried) >= kMaxResolversPerQuery) break;
    index = choose_resolver(query, now);
  }
  return false;
}

void ProxyLoop::on_upstream_failure(std::uint8_t resolver, std::uint16_t upstream_id,
                                    UpstreamError error, const Clock& now) {
  InflightQuery* query = table_.find(upstream_id);
  if (query == nullptr || !query->sent || query->resolver != resolver) return;
  ++resolvers_[resolver].counted.failures;
  bump(resolvers_[resolver].metrics->failures);
  if (const std::size_t position = position_of(resolver); position != kNoResolver) {
    resolver_set_.on_failure(position, error, now.steady);
  }
  query->sent = false;
  query->last_error = error;
  // Once more on the next resolver, if there is one and time is left.
  if (std::popcount(query->resolvers_tried) < kMaxResolversPerQuery &&
      query->received + config_->upstream_timeout > now.steady) {
    if (query->resolver_generation != resolver_generation_) {
      query->resolver_generation = resolver_generation_;
      query->resolvers_tried = kTriedEarlierList;
    }
    const std::size_t next = choose_resolver(*query, now);
    if (next != kNoResolver && try_resolver(*query, next, now)) return;
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
  Resolver& from = resolvers_[resolver];
  ++from.counted.answers;
  bump(from.metrics->answers);
  from.metrics->latency.record(micros_since(query->sent_at, now.steady));
  if (const std::size_t position = position_of(resolver); position != kNoResolver) {
    resolver_set_.on_answer(position);
  }
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
  stats_.unsolicited_upstream += reaped_.unsolicited;
  stats_.upstream_tcp_connects = reaped_.connects;
  for (Resolver& resolver : resolvers_) {
    if (!resolver.upstream) continue;
    const UpstreamCounters transport = resolver.upstream->counters();
    stats_.unsolicited_upstream += transport.unsolicited;
    stats_.upstream_tcp_connects += transport.connects;
  }
  // Per resolver: those of the config in force, in its order.
  for (std::size_t position = 0; position < in_force_.size(); ++position) {
    const Resolver& resolver = resolvers_[in_force_[position]];
    const UpstreamCounters transport = resolver.upstream->counters();
    const UpstreamCounters& loop = resolver.counted;
    ResolverStats out;
    out.uri = std::string(resolver.config->uri);
    out.queries = loop.queries;
    out.answers = loop.answers;
    out.failures = loop.failures;
    out.connects = transport.connects;
    out.handshakes = transport.handshakes;
    out.resumed = transport.resumed;
    out.unsolicited = transport.unsolicited;
    out.times_down = resolver_set_.times_down(position);
    stats_.resolvers.push_back(std::move(out));
  }
}

}  // namespace dnsgate
