// Micro-benchmark of the per-query policy work: parse_query on the packet,
// then Allowlist::allows on its name, for allowlists of 10, 10,000 and
// 1,000,000 entries, for names on the list (hit) and not (miss); plus the
// time to build a 1,000,000-entry allowlist.
//
// The names are random-ish (a fixed-seed generator, so every run sees the
// same ones) and shaped like real hostnames: a literal entry looks like
// "h123-9f3ac1.d41.example.com", one entry in ten is a wildcard like
// "*.w123.example.net". A hit query names a literal entry (with its case
// changed, which the matcher must fold) or a host under a wildcard entry; a
// miss query has the same shape and is on no entry, so it pays every probe
// (the whole name, then each suffix in the wildcard set). Queries are drawn
// from the whole list, so a large list pays its cache misses, as it would
// in production; the *Hot variants cycle through 64 of those queries only,
// which stay in cache, to separate the algorithm's cost from memory's. The
// *Batched variants handle the same queries 32 at a time, as the proxy
// receives them, with Allowlist::allows_batch, which overlaps a large list's
// cache misses instead of paying them in turn.
#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "dnsgate/allowlist.hpp"
#include "dnsgate/parser.hpp"

namespace {

// splitmix64: small, fast and reproducible.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

std::string hex6(std::uint64_t value) {
  char text[8];
  std::snprintf(text, sizeof text, "%06llx", static_cast<unsigned long long>(value & 0xFFFFFF));
  return text;
}

// Entry i of an allowlist: every tenth is a wildcard.
bool is_wildcard(std::size_t i) {
  return i % 10 == 9;
}

std::string literal_name(std::size_t i, std::uint64_t salt) {
  return "h" + std::to_string(i) + "-" + hex6(salt) + ".d" + std::to_string(i % 97) +
         ".example.com";
}

std::string wildcard_suffix(std::size_t i) {
  return "w" + std::to_string(i) + ".example.net";
}

// A query packet as a stub resolver sends it: header (RD set), one question
// for `name` (dotted, no trailing dot), type A, class IN; no EDNS.
std::vector<std::uint8_t> query_packet(const std::string& name, std::uint16_t id) {
  std::vector<std::uint8_t> packet = {static_cast<std::uint8_t>(id >> 8),
                                      static_cast<std::uint8_t>(id),
                                      0x01,
                                      0x00,
                                      0,
                                      1,
                                      0,
                                      0,
                                      0,
                                      0,
                                      0,
                                      0};
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    packet.push_back(static_cast<std::uint8_t>(dot - start));
    packet.insert(packet.end(), name.begin() + static_cast<std::ptrdiff_t>(start),
                  name.begin() + static_cast<std::ptrdiff_t>(dot));
    start = dot + 1;
  }
  packet.push_back(0);
  packet.insert(packet.end(), {0, 1, 0, 1});
  return packet;
}

// Flips the case of every other letter: the matcher must fold it.
std::string mixed_case(std::string name) {
  for (std::size_t i = 0; i < name.size(); i += 2) {
    if (name[i] >= 'a' && name[i] <= 'z') name[i] = static_cast<char>(name[i] - 'a' + 'A');
  }
  return name;
}

constexpr std::size_t kQueryPool = 8192;  // a power of two: index with a mask

struct Workload {
  std::vector<std::string> entries;
  dnsgate::Allowlist allowlist;
  std::vector<std::vector<std::uint8_t>> hits;
  std::vector<std::vector<std::uint8_t>> misses;
};

std::vector<std::string> make_entries(std::size_t count, std::vector<std::uint64_t>* salts) {
  Random random(0xD15'6A7E + count);
  std::vector<std::string> entries;
  entries.reserve(count);
  if (salts != nullptr) salts->resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t salt = random.next();
    if (salts != nullptr) (*salts)[i] = salt;
    entries.push_back(is_wildcard(i) ? "*." + wildcard_suffix(i) : literal_name(i, salt));
  }
  return entries;
}

// Built once per size and kept for every benchmark that uses it.
const Workload& workload(std::size_t count) {
  static std::map<std::size_t, std::unique_ptr<Workload>> cache;
  auto& slot = cache[count];
  if (slot) return *slot;
  slot = std::make_unique<Workload>();
  std::vector<std::uint64_t> salts;
  slot->entries = make_entries(count, &salts);
  auto built = dnsgate::Allowlist::build(slot->entries);
  if (!std::holds_alternative<dnsgate::Allowlist>(built)) {
    std::fprintf(stderr, "allowlist build failed: %s\n",
                 std::get<dnsgate::AllowlistError>(built).message.c_str());
    std::abort();
  }
  slot->allowlist = std::move(std::get<dnsgate::Allowlist>(built));

  Random random(42 + count);
  for (std::size_t q = 0; q < kQueryPool; ++q) {
    const std::size_t i = random.next() % count;
    const std::string hit = is_wildcard(i) ? "api" + hex6(random.next()) + "." + wildcard_suffix(i)
                                           : mixed_case(literal_name(i, salts[i]));
    const std::string miss = "m" + std::to_string(i) + "-" + hex6(random.next()) + ".d" +
                             std::to_string(i % 97) + ".example.com";
    const auto id = static_cast<std::uint16_t>(q);
    slot->hits.push_back(query_packet(hit, id));
    slot->misses.push_back(query_packet(miss, id));
  }
  // Check the workload means what its name says, one name at a time and in
  // a batch.
  for (std::size_t q = 0; q < kQueryPool; ++q) {
    const auto hit = dnsgate::parse_query(slot->hits[q]);
    const auto miss = dnsgate::parse_query(slot->misses[q]);
    std::array<const dnsgate::QueryName*, 2> names{};
    std::array<bool, 2> allowed{false, true};
    if (hit.ok() && miss.ok()) {
      names = {&hit.value().question.name, &miss.value().question.name};
      slot->allowlist.allows_batch(names, allowed);
    }
    if (!hit.ok() || !miss.ok() || !slot->allowlist.allows(hit.value().question.name) ||
        slot->allowlist.allows(miss.value().question.name) || !allowed[0] || allowed[1]) {
      std::fprintf(stderr, "benchmark workload is wrong at query %zu\n", q);
      std::abort();
    }
  }
  return *slot;
}

// One iteration = one query: parse the packet, match its name. `pool` is
// how many different queries are cycled through: kQueryPool spreads them over
// the whole list (the cache misses of a large list are paid), kHotPool keeps
// them to a few names that stay in cache (the cost of the algorithm alone).
constexpr std::size_t kHotPool = 64;

void run_parse_match(benchmark::State& state, bool hit, std::size_t pool) {
  const Workload& w = workload(static_cast<std::size_t>(state.range(0)));
  const auto& packets = hit ? w.hits : w.misses;
  std::size_t q = 0;
  std::size_t allowed = 0;
  for (auto _ : state) {
    const auto& packet = packets[q++ & (pool - 1)];
    const auto parsed = dnsgate::parse_query(packet);
    const bool allows = parsed.ok() && w.allowlist.allows(parsed.value().question.name);
    allowed += allows ? 1 : 0;
    benchmark::DoNotOptimize(allows);
  }
  benchmark::DoNotOptimize(allowed);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["entries"] = static_cast<double>(state.range(0));
}

// The same queries handled as the proxy receives them, in batches of 32
// datagrams from one recvmmsg: parse them all, then match the batch's names
// with one Allowlist::allows_batch. The time is still per query.
constexpr std::size_t kBatch = 32;

void run_parse_match_batched(benchmark::State& state, bool hit, std::size_t pool) {
  const Workload& w = workload(static_cast<std::size_t>(state.range(0)));
  const auto& packets = hit ? w.hits : w.misses;
  std::array<std::optional<dnsgate::ParseResult<dnsgate::ParsedQuery>>, kBatch> parsed;
  std::array<const dnsgate::QueryName*, kBatch> names{};
  std::array<bool, kBatch> allowed{};
  std::size_t q = 0;
  std::size_t allowed_count = 0;
  while (state.KeepRunningBatch(kBatch)) {
    std::size_t count = 0;
    for (auto& query : parsed) {
      query.emplace(dnsgate::parse_query(packets[q++ & (pool - 1)]));
      if (query->ok()) names[count++] = &query->value().question.name;
    }
    w.allowlist.allows_batch(std::span(names.data(), count), std::span(allowed.data(), count));
    for (std::size_t i = 0; i < count; ++i) allowed_count += allowed[i] ? 1 : 0;
    benchmark::DoNotOptimize(allowed);
  }
  benchmark::DoNotOptimize(allowed_count);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["entries"] = static_cast<double>(state.range(0));
}

void BM_ParseMatchHit(benchmark::State& state) {
  run_parse_match(state, true, kQueryPool);
}
void BM_ParseMatchMiss(benchmark::State& state) {
  run_parse_match(state, false, kQueryPool);
}
void BM_ParseMatchHitHot(benchmark::State& state) {
  run_parse_match(state, true, kHotPool);
}
void BM_ParseMatchMissHot(benchmark::State& state) {
  run_parse_match(state, false, kHotPool);
}

void BM_ParseMatchHitBatched(benchmark::State& state) {
  run_parse_match_batched(state, true, kQueryPool);
}
void BM_ParseMatchMissBatched(benchmark::State& state) {
  run_parse_match_batched(state, false, kQueryPool);
}
void BM_ParseMatchHitHotBatched(benchmark::State& state) {
  run_parse_match_batched(state, true, kHotPool);
}
void BM_ParseMatchMissHotBatched(benchmark::State& state) {
  run_parse_match_batched(state, false, kHotPool);
}

// The parser alone, for reference: what the match adds is the difference.
void BM_ParseOnly(benchmark::State& state) {
  const Workload& w = workload(10);
  std::size_t q = 0;
  for (auto _ : state) {
    const auto parsed = dnsgate::parse_query(w.hits[q++ & (kQueryPool - 1)]);
    benchmark::DoNotOptimize(parsed.ok());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// Allowlist::build for entries as the config loader hands them over.
void BM_AllowlistBuild(benchmark::State& state) {
  const auto entries = make_entries(static_cast<std::size_t>(state.range(0)), nullptr);
  for (auto _ : state) {
    auto built = dnsgate::Allowlist::build(entries);
    benchmark::DoNotOptimize(built);
  }
  state.counters["entries"] = static_cast<double>(state.range(0));
}

BENCHMARK(BM_ParseOnly);
BENCHMARK(BM_ParseMatchHit)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_ParseMatchMiss)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_ParseMatchHitHot)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_ParseMatchMissHot)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_ParseMatchHitBatched)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_ParseMatchMissBatched)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_ParseMatchHitHotBatched)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_ParseMatchMissHotBatched)->Arg(10)->Arg(10'000)->Arg(1'000'000);
BENCHMARK(BM_AllowlistBuild)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
