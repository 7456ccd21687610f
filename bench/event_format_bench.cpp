// Micro-benchmark of the event writer's per-record work: one CloudEvent line
// with a fresh id appended to a batch buffer, as run_writer does it, for a
// forwarded and a refused query. Arrival times advance 20 µs per record (a
// 50,000 qps stream, so the second changes now and then, as in production) and
// client ports vary over a small pool; the buffer is cleared every 256 records,
// the writer's batch size.
//
// For instruction counts, independent of the machine's load, run a fixed
// number of iterations under callgrind and divide the inclusive Ir of the
// benchmark function by it (setup included, a few hundred instructions per
// 100,000 records):
//   valgrind --tool=callgrind --callgrind-out-file=cg.out
//       build/bench/event_format_bench --fixed_iterations=100000
//   callgrind_annotate --inclusive=yes cg.out | grep BM_
#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dnsgate/events.hpp"

namespace {

using namespace std::chrono;
using dnsgate::QueryRecord;

constexpr std::size_t kPool = 64;  // a power of two
constexpr std::size_t kBatchRecords = 256;

dnsgate::Endpoint ipv4(std::uint32_t address, std::uint16_t port) {
  sockaddr_in in4{};
  in4.sin_family = AF_INET;
  in4.sin_addr.s_addr = htonl(address);
  in4.sin_port = htons(port);
  return dnsgate::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&in4), sizeof in4)
      .value_or(dnsgate::Endpoint{});
}

dnsgate::QueryName name(std::initializer_list<std::string_view> labels) {
  std::vector<std::uint8_t> wire;
  for (auto label : labels) {
    wire.push_back(static_cast<std::uint8_t>(label.size()));
    wire.insert(wire.end(), label.begin(), label.end());
  }
  wire.push_back(0);
  return dnsgate::QueryName::from_wire(wire).value_or(dnsgate::QueryName{});
}

std::vector<QueryRecord> records(bool forwarded) {
  std::vector<QueryRecord> pool(kPool);
  for (std::size_t i = 0; i < kPool; ++i) {
    QueryRecord& r = pool[i];
    r.latency_us = static_cast<std::uint32_t>(150 + 37 * i);
    r.transport = dnsgate::Transport::udp;
    r.client = ipv4(0x7F000001, static_cast<std::uint16_t>(32768 + 977 * i % 28000));
    r.size = 33;
    r.has_transaction_id = true;
    r.transaction_id = static_cast<std::uint16_t>(4660 + 4099 * i);
    r.has_question = true;
    r.qtype = 1;
    r.qclass = 1;
    r.has_rcode = true;
    if (forwarded) {
      r.qname = name({"www", "example", "com"});
      r.action = dnsgate::QueryAction::forward;
      r.reason = dnsgate::ReasonCode::allowed;
      r.rcode = 0;
      r.answer_count = 1;
      r.has_upstream = true;
      r.upstream = ipv4(0x7F000001, 5300);
    } else {
      r.qname = name({"tracker", "ads", "example", "net"});
      r.action = dnsgate::QueryAction::refuse;
      r.reason = dnsgate::ReasonCode::not_allowlisted;
      r.rcode = 5;
    }
  }
  return pool;
}

void run_format(benchmark::State& state, bool forwarded) {
  std::vector<QueryRecord> pool = records(forwarded);
  dnsgate::CloudEventFormatter formatter("demo");
  auto time = sys_days{year{2026} / November / 26} + hours{9} + microseconds{123456};
  std::string lines;
  lines.reserve(kBatchRecords * 512);
  std::size_t i = 0;
  std::size_t octets = 0;
  for (auto _ : state) {
    if (i % kBatchRecords == 0) {
      octets += lines.size();
      lines.clear();
    }
    QueryRecord& record = pool[i++ & (kPool - 1)];
    record.received_at = time;
    time += microseconds{20};
    formatter.append(lines, record);
    lines += '\n';
    benchmark::DoNotOptimize(lines.data());
  }
  octets += lines.size();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(octets));
}

void BM_FormatForwarded(benchmark::State& state) {
  run_format(state, true);
}
void BM_FormatRefused(benchmark::State& state) {
  run_format(state, false);
}

// The id alone, to separate its cost from the formatting's.
void BM_EventId(benchmark::State& state) {
  dnsgate::EventIdGenerator ids;
  std::array<char, dnsgate::EventIdGenerator::kLength> id;
  for (auto _ : state) {
    ids.write(id.data());
    benchmark::DoNotOptimize(id.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

}  // namespace

// BENCHMARK_MAIN, plus --fixed_iterations=N: Google Benchmark 1.7 has no
// command-line way to fix the count, and callgrind needs one to divide by.
int main(int argc, char** argv) {
  std::int64_t fixed = 0;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    constexpr std::string_view kFixed = "--fixed_iterations=";
    if (arg.starts_with(kFixed)) {
      fixed = std::stoll(std::string(arg.substr(kFixed.size())));
    } else {
      args.push_back(argv[i]);
    }
  }
  for (auto [label, function] :
       {std::pair{"BM_FormatForwarded", &BM_FormatForwarded},
        std::pair{"BM_FormatRefused", &BM_FormatRefused}, std::pair{"BM_EventId", &BM_EventId}}) {
    auto* registered = benchmark::RegisterBenchmark(label, function);
    if (fixed > 0) {
      registered->Iterations(fixed);
    }
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
