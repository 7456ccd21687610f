// The loop's side of DNSSEC validation (DESIGN §9): every forwarded query
// asks for DNSSEC records (DO=1, CD=1), each answer is judged by the
// validator before it is relayed, and the DS/DNSKEY RRsets the validator
// lacks are fetched through the same resolvers, one fetch per RRset
// however many answers wait on it. Nothing here blocks: an answer that
// waits is held in its slot, under the query's own deadline.
#include <algorithm>
#include <chrono>
#include <variant>

#include "dns/opt_record.hpp"
#include "dns/wire.hpp"
#include "dnssec/answer_rewrite.hpp"
#include "proxy/proxy_loop.hpp"

namespace dnsgate {

namespace {

constexpr std::uint16_t kDoBit = 0x8000;
constexpr std::uint16_t kClassIn = 1;
constexpr std::uint16_t kFetchPayload = 1232;
// Chain material asked for on behalf of one answer, at most: a chain of
// DS and DNSKEY fetches down from the anchor, plus the DS walk of an
// unsigned answer, fits well inside.
constexpr std::uint8_t kMaxChainRounds = 48;

std::string fetch_key(const dnssec::ChainNeed& need) {
  std::string key;
  key.push_back(static_cast<char>(need.type >> 8));
  key.push_back(static_cast<char>(need.type & 0xFF));
  key += need.name;
  return key;
}

void append_u16(std::vector<std::uint8_t>& out, std::uint16_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value & 0xFF));
}

// An OPT record: root owner, our payload size, DO as given, no options.
void append_opt(std::vector<std::uint8_t>& out, bool dnssec_ok) {
  out.push_back(0);
  append_u16(out, kTypeOpt);
  append_u16(out, kFetchPayload);
  append_u16(out, 0);  // extended rcode, version
  append_u16(out, dnssec_ok ? kDoBit : 0);
  append_u16(out, 0);
}

}  // namespace

void ProxyLoop::open_validator() {
  if (config_->dnssec.mode != DnssecMode::validate) return;
  std::vector<dnssec::AnchorRecord> records;
  if (config_->dnssec.trust_anchors.empty()) {
    // The loader checked the file already; a file gone since leaves no
    // anchor, and every answer insecure, rather than no proxy.
    auto root = dnssec::read_anchor_file(std::string(dnssec::kRootAnchorFile));
    if (auto* read = std::get_if<std::vector<dnssec::AnchorRecord>>(&root)) {
      records = std::move(*read);
    }
  } else {
    for (const std::string& text : config_->dnssec.trust_anchors) {
      auto parsed = dnssec::parse_anchor_record(text);
      if (auto* record = std::get_if<dnssec::AnchorRecord>(&parsed)) {
        records.push_back(std::move(*record));
      }
    }
  }
  validator_ = std::make_unique<dnssec::Validator>(dnssec::group_anchors(records),
                                                   config_->dnssec.key_cache_entries);
}

std::uint32_t ProxyLoop::validator_now(const Clock& now) const {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(now.wall.time_since_epoch()).count());
}

// The query as the resolvers get it when validating: CD=1, and an OPT with
// DO=1 (the workload's own, its DO bit set, or one added).
void ProxyLoop::ask_for_dnssec(InflightQuery& query, bool checking_disabled) {
  query.validate = !checking_disabled;
  std::vector<std::uint8_t>& wire = query.upstream_query;
  write_u16(wire, 2, static_cast<std::uint16_t>(read_u16(wire, 2) | flag::kCd));
  if (const auto opt = find_opt(wire)) {
    const std::size_t flags_at = opt->rdlength_at - 2;
    write_u16(wire, flags_at, static_cast<std::uint16_t>(read_u16(wire, flags_at) | kDoBit));
  } else {
    append_opt(wire, true);
    write_u16(wire, 10, static_cast<std::uint16_t>(read_u16(wire, 10) + 1));
  }
}

void ProxyLoop::on_checked_answer(InflightQuery& query, std::span<std::uint8_t> packet,
                                  const Clock& now) {
  unsend(query);
  const bool truncated = (read_u16(packet, 2) & flag::kTc) != 0;
  if (query.role == InflightQuery::Role::chain_fetch && truncated &&
      query.client_transport == Transport::udp) {
    // Chain material too big for a datagram: the same resolver over TCP.
    query.client_transport = Transport::tcp;
    if (!try_resolver(query, query.resolver, now)) {
      validator_->fetch_failed(query.chain, validator_now(now));
      end_fetch(query, true, now);
    }
    return;
  }
  if (query.role == InflightQuery::Role::workload && (!query.validate || truncated)) {
    // CD=1: the upstream's answer unvalidated. Truncated: not all of it is
    // here to validate; the workload retries over TCP. Either way AD=0.
    relay_shaped(query, packet, dnssec::Verdict{}, now);
    return;
  }
  query.held_answer.assign(packet.begin(), packet.end());
  // The real time, not the turn's: the metrics' validation time is this
  // answer's, not the batch's before it.
  if (hooks_.metrics != nullptr) query.answer_arrived = std::chrono::steady_clock::now();
  evaluate_held(query, now);
}

void ProxyLoop::evaluate_held(InflightQuery& query, const Clock& now) {
  const bool fetch = query.role == InflightQuery::Role::chain_fetch;
  const std::uint32_t seconds = validator_now(now);
  const auto parsed = dnssec::read_message(query.held_answer);
  dnssec::Evaluation evaluation;
  if (const auto* message = std::get_if<dnssec::Message>(&parsed)) {
    evaluation = fetch ? validator_->absorb(query.chain, *message, seconds)
                       : validator_->check_answer(*message, seconds);
  } else {
    evaluation = dnssec::Evaluation::finished(
        dnssec::Verdict::bogus(dnssec::ede::kNone, "the answer cannot be read"));
    if (fetch) validator_->fetch_failed(query.chain, seconds);
  }
  if (!evaluation.done) {
    if (++query.chain_rounds <= kMaxChainRounds) {
      wait_for_chain(query, evaluation.need, now);
      return;
    }
    evaluation = dnssec::Evaluation::finished(
        dnssec::Verdict::indeterminate("too much chain material for one answer"));
    if (fetch) validator_->fetch_failed(query.chain, seconds);
  }
  if (fetch) {
    end_fetch(query, true, now);
  } else {
    conclude(query, evaluation.verdict, now);
  }
}

void ProxyLoop::conclude(InflightQuery& query, const dnssec::Verdict& verdict, const Clock& now) {
  if (hooks_.metrics != nullptr && query.answer_arrived != SteadyTime{}) {
    const auto spent = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - query.answer_arrived);
    hooks_.metrics->validation_time().record(static_cast<std::uint32_t>(
        std::clamp<std::int64_t>(spent.count(), 0, std::int64_t{UINT32_MAX})));
    query.answer_arrived = {};
  }
  switch (verdict.state) {
    case DnssecState::bogus:
      query.dnssec_detail = verdict.detail;
      finish(query, ReasonCode::dnssec_bogus, now);
      return;
    case DnssecState::indeterminate:
      finish(query, ReasonCode::dnssec_indeterminate, now);
      return;
    case DnssecState::secure:
      ++stats_.dnssec_secure;
      break;
    case DnssecState::insecure:
      ++stats_.dnssec_insecure;
      break;
    case DnssecState::unchecked:
      break;
  }
  relay_shaped(query, query.held_answer, verdict, now);
}

// What the workload gets of a checked answer: AD by the verdict (and only
// when it set DO or AD), its own CD, DNSSEC records only if it set DO.
void ProxyLoop::relay_shaped(InflightQuery& query, std::span<const std::uint8_t> packet,
                             const dnssec::Verdict& verdict, const Clock& now) {
  dnssec::RelayShape shape;
  shape.client_id = query.client_id;
  shape.checking_disabled = (query.query_flags & flag::kCd) != 0;
  shape.client_opt = query.edns.present;
  shape.client_do = query.edns.present && query.edns.dnssec_ok;
  shape.authentic = verdict.state == DnssecState::secure &&
                    (shape.client_do || (query.query_flags & flag::kAd) != 0);
  if (verdict.state == DnssecState::insecure && query.edns.present) shape.ede = verdict.ede;
  const bool truncated = (read_u16(packet, 2) & flag::kTc) != 0;
  if (truncated && query.validate) {
    // Nothing of a truncated answer is relayed but the header, the
    // question and the OPT.
    shaped_.assign(packet.begin(), packet.begin() + kHeaderOctets);
    shaped_.insert(shaped_.end(), query.question_wire().begin(), query.question_wire().end());
    write_u16(shaped_, 0, query.client_id);
    write_u16(shaped_, 2,
              static_cast<std::uint16_t>((read_u16(packet, 2) & ~(flag::kAd | flag::kCd)) |
                                         (query.query_flags & flag::kCd)));
    write_u16(shaped_, 4, 1);
    write_u16(shaped_, 6, 0);
    write_u16(shaped_, 8, 0);
    write_u16(shaped_, 10, query.edns.present ? 1 : 0);
    if (query.edns.present) append_opt(shaped_, shape.client_do);
  } else if (!dnssec::shape_answer(packet, shape, shaped_)) {
    query.dnssec_detail = dnssec::ede::kNone;
    finish(query, ReasonCode::dnssec_bogus, now);
    return;
  }
  relay_answer(query, shaped_, verdict.state, now);
}

void ProxyLoop::wait_for_chain(InflightQuery& waiter, const dnssec::ChainNeed& need,
                               const Clock& now) {
  if (waiter.role == InflightQuery::Role::chain_fetch && need == waiter.chain) {
    // Material that needs itself to be validated: it never will be.
    validator_->fetch_failed(waiter.chain, validator_now(now));
    end_fetch(waiter, true, now);
    return;
  }
  waiter.awaiting_chain = true;
  auto [entry, fresh] = fetches_.try_emplace(fetch_key(need));
  entry->second.waiters.emplace_back(waiter.upstream_id, waiter.serial);
  if (!fresh) return;

  InflightQuery* fetch = table_.insert(now.steady);
  if (fetch == nullptr) {
    // No room: the waiters see indeterminate, as for a failed fetch.
    std::vector<std::pair<std::uint16_t, std::uint32_t>> waiters = std::move(entry->second.waiters);
    fetches_.erase(entry);
    validator_->fetch_failed(need, validator_now(now));
    resume(waiters, now);
    return;
  }
  fetch->role = InflightQuery::Role::chain_fetch;
  fetch->chain = need;
  fetch->validate = false;
  fetch->awaiting_chain = false;
  fetch->chain_rounds = 0;
  fetch->serial = ++next_serial_;
  fetch->client_transport = Transport::udp;
  fetch->connection = 0;
  fetch->connection_generation = 0;
  fetch->client = PeerAddress{};
  fetch->client_id = 0;
  fetch->query_flags = static_cast<std::uint16_t>(flag::kRd | flag::kCd);
  fetch->edns = EdnsInfo{true, kFetchPayload, 0, true};
  fetch->udp_answer_limit = 0xFFFF;
  fetch->size = 0;
  fetch->received_wall = now.wall;
  const std::size_t name_octets = need.name.size();
  std::copy(need.name.begin(), need.name.end(), fetch->question.begin());
  fetch->question[name_octets] = static_cast<std::uint8_t>(need.type >> 8);
  fetch->question[name_octets + 1] = static_cast<std::uint8_t>(need.type & 0xFF);
  fetch->question[name_octets + 2] = 0;
  fetch->question[name_octets + 3] = kClassIn;
  fetch->question_octets = static_cast<std::uint16_t>(name_octets + 4);

  std::vector<std::uint8_t>& wire = fetch->upstream_query;
  wire.clear();
  append_u16(wire, fetch->upstream_id);
  append_u16(wire, fetch->query_flags);
  append_u16(wire, 1);
  append_u16(wire, 0);
  append_u16(wire, 0);
  append_u16(wire, 1);
  wire.insert(wire.end(), fetch->question.begin(), fetch->question.begin() + name_octets + 4);
  append_opt(wire, true);

  entry->second.upstream_id = fetch->upstream_id;
  entry->second.serial = fetch->serial;
  ++stats_.dnssec_fetches;
  fetch->sent = false;
  fetch->forwarded = false;
  fetch->resolvers_tried = 0;
  fetch->last_error = {};
  send_upstream(*fetch, now);  // may end the fetch (and resume the waiters) at once
}

// The fetch is over (its material absorbed, or failed): its waiters are
// judged again, now that the validator knows more.
void ProxyLoop::end_fetch(InflightQuery& fetch, bool resume_waiters, const Clock& now) {
  std::vector<std::pair<std::uint16_t, std::uint32_t>> waiters;
  const auto entry = fetches_.find(fetch_key(fetch.chain));
  if (entry != fetches_.end() && entry->second.upstream_id == fetch.upstream_id &&
      entry->second.serial == fetch.serial) {
    waiters = std::move(entry->second.waiters);
    fetches_.erase(entry);
  }
  release(fetch);
  if (resume_waiters) resume(waiters, now);
}

// Judges again the answers that waited on a fetch now over; a slot freed
// (its deadline passed) and reused since is told apart by its serial.
void ProxyLoop::resume(const std::vector<std::pair<std::uint16_t, std::uint32_t>>& waiters,
                       const Clock& now) {
  for (const auto& [id, serial] : waiters) {
    InflightQuery* slot = table_.find(id);
    if (slot == nullptr || slot->serial != serial || !slot->awaiting_chain) continue;
    slot->awaiting_chain = false;
    evaluate_held(*slot, now);
  }
}

}  // namespace dnsgate
