// The DNSSEC validator (src/dnssec/) on what an upstream resolver sends:
// a workload's answer, then the chain material the validator asks for, in
// the order it asks, as the proxy drives it (src/proxy/dnssec_side.cpp):
// an answer that needs material waits for it; a fetched answer that needs
// more waits in turn, and is absorbed again once that is in.
//
// Input: chunks, each a 2-octet big-endian length and that many octets (the
// last one may be cut short). Chunk 0 is the workload's answer: read_message,
// then Validator::check_answer at a fixed clock. While the evaluation at the
// top of the wait stack is not done, the next chunk answers the ChainNeed it
// asks for (absorb), or, when the chunk is empty or unreadable, when no chunk
// is left or when the need is already being fetched (the proxy would wait
// for its timeout), the fetch fails (fetch_failed). Chunk 0 also goes
// through shape_answer with a few client shapes.
//
// The validator is built fresh for each input from a fixed anchor: the DS of
// the KSK of fuzz.test. that fuzz/make_dnssec_corpus.py signed the seeds
// with, so the seeds' real signatures verify.
//
// Invariants: no crash, UB or leak; a secure verdict (on the answer or on
// any fetched material) means a signature verified during this input; a
// bogus verdict carries EDE 6 and an indeterminate one EDE 5; what
// shape_answer writes for a readable answer reads back with the same
// question, the client's id, AD and CD as asked, and, for a client without
// DO, no RRSIG/NSEC/NSEC3 but of the type asked and an OPT only if the
// client sent one (with DO clear).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "dnssec/answer_rewrite.hpp"
#include "dnssec/message.hpp"
#include "dnssec/trust_anchor.hpp"
#include "dnssec/validator.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace dnsgate;
using namespace dnsgate::dnssec;

// Written by fuzz/make_dnssec_corpus.py: the DS of the seeds' fuzz.test. KSK.
constexpr std::string_view kAnchor =
    "fuzz.test. 3600 IN DS 58306 13 2 "
    "528c761da6f4f3c75d0e74652d7dfe99e0720a265d5ea61d53f8d2e6b97b1705";
// The seeds are signed from 2025-01-01 to 2090-01-01; the clock is 2026-01-01.
constexpr std::uint32_t kNow = 1767225600;
// Chain material one answer may wait on before it is given up (the proxy
// allows 48 fetches; more rounds than that here only loop).
constexpr int kMaxRounds = 64;
constexpr std::size_t kCacheEntries = 64;

const std::vector<TrustAnchor>& anchors() {
  static const std::vector<TrustAnchor> parsed = [] {
    const auto record = parse_anchor_record(kAnchor);
    if (!std::holds_alternative<AnchorRecord>(record)) {
      std::fprintf(stderr, "bad fuzz anchor: %s\n", std::get<std::string>(record).c_str());
      std::abort();
    }
    return group_anchors({std::get<AnchorRecord>(record)});
  }();
  return parsed;
}

bool verbose() {
  static const bool on = std::getenv("DNSSEC_FUZZ_VERBOSE") != nullptr;
  return on;
}

const char* state_name(DnssecState state) {
  switch (state) {
    case DnssecState::secure:
      return "secure";
    case DnssecState::insecure:
      return "insecure";
    case DnssecState::bogus:
      return "bogus";
    case DnssecState::indeterminate:
      return "indeterminate";
    case DnssecState::unchecked:
      break;
  }
  return "unchecked";
}

std::vector<std::span<const std::uint8_t>> split_chunks(const std::uint8_t* data,
                                                        std::size_t size) {
  std::vector<std::span<const std::uint8_t>> chunks;
  std::size_t at = 0;
  while (at + 2 <= size) {
    const std::size_t length = static_cast<std::size_t>(data[at]) << 8 | data[at + 1];
    at += 2;
    const std::size_t take = length < size - at ? length : size - at;
    chunks.emplace_back(data + at, take);
    at += take;
  }
  return chunks;
}

void check_verdict(const Evaluation& evaluation, std::uint64_t valid_before,
                   const Validator& validator) {
  if (!evaluation.done) return;
  const Verdict& verdict = evaluation.verdict;
  if (verdict.state == DnssecState::secure) {
    FUZZ_CHECK(validator.counters().valid_signatures > valid_before);
  }
  if (verdict.state == DnssecState::bogus) FUZZ_CHECK(verdict.ede == ede::kBogus);
  if (verdict.state == DnssecState::indeterminate) FUZZ_CHECK(verdict.ede == ede::kIndeterminate);
}

// One chain fetch in progress: what was asked and the answer it got.
struct Fetch {
  ChainNeed need;
  Message answer;
};

void validate(const Message& answer, const std::vector<std::span<const std::uint8_t>>& chunks) {
  Validator validator(anchors(), kCacheEntries);
  const std::uint64_t valid_before = validator.counters().valid_signatures;
  std::vector<Fetch> waiting;  // fetched answers waiting on further material, innermost last
  std::size_t next_chunk = 1;
  Evaluation evaluation = validator.check_answer(answer, kNow);
  check_verdict(evaluation, valid_before, validator);
  for (int round = 0; round < kMaxRounds; ++round) {
    if (evaluation.done) {
      if (waiting.empty()) break;
      // The innermost fetch is over: whoever waited on it is judged again.
      waiting.pop_back();
    } else {
      const ChainNeed need = evaluation.need;
      FUZZ_CHECK(need.type == rrtype::kDs || need.type == rrtype::kDnskey);
      bool in_progress = false;
      for (const Fetch& fetch : waiting) in_progress = in_progress || fetch.need == need;
      std::variant<Message, MessageError> fetched = MessageError::truncated;
      if (!in_progress && next_chunk < chunks.size()) fetched = read_message(chunks[next_chunk++]);
      if (auto* message = std::get_if<Message>(&fetched)) {
        waiting.push_back(Fetch{need, std::move(*message)});
        evaluation = validator.absorb(need, waiting.back().answer, kNow);
        check_verdict(evaluation, valid_before, validator);
        continue;
      }
      // No answer (or a need that waits on itself: the proxy's timeout).
      validator.fetch_failed(need, kNow);
    }
    evaluation = waiting.empty()
                     ? validator.check_answer(answer, kNow)
                     : validator.absorb(waiting.back().need, waiting.back().answer, kNow);
    check_verdict(evaluation, valid_before, validator);
  }
  if (verbose()) {
    std::fprintf(
        stderr, "verdict: %s ede %u detail %u (%s) after %zu chunks, %llu valid signatures\n",
        evaluation.done && waiting.empty() ? state_name(evaluation.verdict.state) : "unfinished",
        evaluation.verdict.ede, evaluation.verdict.detail, evaluation.verdict.why, next_chunk,
        static_cast<unsigned long long>(validator.counters().valid_signatures));
  }
}

bool is_dnssec_type(std::uint16_t type) {
  return type == rrtype::kRrsig || type == rrtype::kNsec || type == rrtype::kNsec3;
}

void shape(std::span<const std::uint8_t> packet, const Message& answer, const RelayShape& relay) {
  std::vector<std::uint8_t> out;
  if (!shape_answer(packet, relay, out)) return;
  const auto reread = read_message(out);
  FUZZ_CHECK(std::holds_alternative<Message>(reread));
  const Message& shaped = std::get<Message>(reread);
  FUZZ_CHECK(shaped.qname == answer.qname);
  FUZZ_CHECK(shaped.qtype == answer.qtype);
  FUZZ_CHECK(shaped.qclass == answer.qclass);
  FUZZ_CHECK(shaped.id == relay.client_id);
  FUZZ_CHECK(((shaped.flags & 0x0020) != 0) == relay.authentic);
  FUZZ_CHECK(((shaped.flags & 0x0010) != 0) == relay.checking_disabled);
  FUZZ_CHECK((shaped.flags & ~0x0030) == (answer.flags & ~0x0030));
  if (relay.client_do) return;
  std::size_t opts = 0;
  for (const Record& record : shaped.records) {
    FUZZ_CHECK(!is_dnssec_type(record.type) || record.type == answer.qtype);
    if (record.type == rrtype::kOpt) {
      ++opts;
      FUZZ_CHECK((record.ttl & 0x8000) == 0);
    }
  }
  if (!relay.client_opt) FUZZ_CHECK(opts == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto chunks = split_chunks(data, size);
  if (chunks.empty()) return 0;
  const auto first = read_message(chunks[0]);
  const auto* answer = std::get_if<Message>(&first);

  // The relayed answer, for a few kinds of client (bytes as they came
  // for DO, re-encoded without DNSSEC records otherwise).
  static constexpr RelayShape kShapes[] = {
      {0x1234, true, false, true, true, 0xFFFF},     // DO=1, secure
      {0xBEEF, false, true, true, true, 1},          // DO=1, insecure with EDE 1
      {0x0000, false, false, false, false, 0xFFFF},  // no OPT
      {0xFFFF, true, false, true, false, 27},        // OPT with DO=0, EDE 27
  };
  for (const RelayShape& relay : kShapes) {
    if (answer != nullptr) {
      shape(chunks[0], *answer, relay);
    } else {
      std::vector<std::uint8_t> out;
      (void)shape_answer(chunks[0], relay, out);  // must not crash, whatever it says
    }
  }
  if (answer != nullptr) validate(*answer, chunks);
  return 0;
}
