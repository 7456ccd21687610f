// Shows that the UDP hot path allocates nothing per query.
//
// This executable replaces the global operator new/delete with versions that
// count, but only on the thread that runs the proxy (a thread_local flag) and
// only while the measurement window is open (a global flag). The test binds
// real loopback sockets, runs run_one_shot on its own thread, plays both the
// workload and a scripted upstream from the main thread, warms up, then opens
// the window, sends forwarded and refused queries (one at a time and in
// bursts, with and without EDNS), and closes the window only once the proxy
// has emitted the event of the last query, so nothing depends on timing: the
// window holds exactly the proxy's work on those queries, from the datagram
// read to the event handed to the emitter.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/event_sink.hpp"
#include "dnsgate/events.hpp"
#include "dnsgate/metrics.hpp"
#include "dnsgate/proxy.hpp"
#include "dnsgate/socket.hpp"

// ---------------------------------------------------------------------------
// The counting allocator.

namespace {

thread_local bool t_is_proxy_thread = false;
std::atomic<bool> g_window_open{false};
std::atomic<std::uint64_t> g_allocations{0};
std::atomic<std::uint64_t> g_deallocations{0};
std::atomic<std::uint64_t> g_bytes{0};

bool counting() noexcept {
  return t_is_proxy_thread && g_window_open.load(std::memory_order_relaxed);
}

void* counted_alloc(std::size_t size, std::size_t alignment) {
  if (counting()) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    g_bytes.fetch_add(size, std::memory_order_relaxed);
  }
  if (size == 0) size = 1;
  void* p = nullptr;
  if (alignment <= alignof(std::max_align_t)) {
    p = std::malloc(size);
  } else {
    // aligned_alloc wants a size that is a multiple of the alignment.
    p = std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
  }
  return p;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  if (counting()) g_deallocations.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}

void* alloc_or_throw(std::size_t size, std::size_t alignment) {
  if (void* p = counted_alloc(size, alignment)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t size) {
  return alloc_or_throw(size, 0);
}
void* operator new[](std::size_t size) {
  return alloc_or_throw(size, 0);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return counted_alloc(size, 0);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return counted_alloc(size, 0);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return alloc_or_throw(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return alloc_or_throw(size, static_cast<std::size_t>(alignment));
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return counted_alloc(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return counted_alloc(size, static_cast<std::size_t>(alignment));
}
void operator delete(void* p) noexcept {
  counted_free(p);
}
void operator delete[](void* p) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}

// ---------------------------------------------------------------------------
// The test rig: a workload socket, a scripted upstream, the proxy's thread.

namespace {

using namespace std::chrono_literals;

constexpr auto kReceiveTimeout = 5s;  // a lost datagram fails the test, it never hangs it

// Counts what it is handed and keeps nothing; optionally passes the record
// on to the production sink so its emit() is measured too.
class CountingEmitter final : public dnsgate::DnsQueryEmitter {
 public:
  explicit CountingEmitter(dnsgate::DnsQueryEmitter* next = nullptr, bool allocate = false)
      : next_(next), allocate_(allocate) {}
  bool emit(const dnsgate::QueryRecord& record) noexcept override {
    if (allocate_) {
      // The control case: an emitter that allocates once per event, on the
      // proxy's thread, as a careless hot path would.
      auto* copy = new (std::nothrow) dnsgate::QueryRecord(record);
      delete copy;
    }
    const bool accepted = next_ == nullptr || next_->emit(record);
    if (record.action == dnsgate::QueryAction::forward) forwards_.fetch_add(1);
    if (record.action == dnsgate::QueryAction::refuse) refusals_.fetch_add(1);
    emitted_.fetch_add(1, std::memory_order_release);
    return accepted;
  }
  std::uint64_t emitted() const noexcept { return emitted_.load(std::memory_order_acquire); }
  std::uint64_t forwards() const noexcept { return forwards_.load(); }
  std::uint64_t refusals() const noexcept { return refusals_.load(); }

 private:
  dnsgate::DnsQueryEmitter* next_;
  bool allocate_;
  std::atomic<std::uint64_t> emitted_{0};
  std::atomic<std::uint64_t> forwards_{0};
  std::atomic<std::uint64_t> refusals_{0};
};

std::vector<std::uint8_t> query_packet(const std::string& name, std::uint16_t id, bool edns) {
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
                                      static_cast<std::uint8_t>(edns ? 1 : 0)};
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
  packet.insert(packet.end(), {0, 1, 0, 1});  // A, IN
  if (edns) {
    // OPT: root owner, type 41, payload 1232, no flags, no options.
    packet.insert(packet.end(), {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0});
  }
  return packet;
}

std::uint16_t port_of(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

dnsgate::UniqueFd loopback_socket() {
  dnsgate::UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return {};
  timeval timeout{std::chrono::duration_cast<std::chrono::seconds>(kReceiveTimeout).count(), 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return fd;
}

// The backend the last loop started with (ProxyHooks::io_chosen).
std::atomic<dnsgate::IoBackend> g_io_chosen{dnsgate::IoBackend::automatic};

class ProxyRig {
 public:
  explicit ProxyRig(dnsgate::DnsQueryEmitter* sink = nullptr, bool allocate_per_event = false,
                    dnsgate::MetricsBoard* board = nullptr,
                    dnsgate::IoBackend io = dnsgate::IoBackend::epoll)
      : emitter_(sink, allocate_per_event) {
    config_.io = io;
    upstream_ = loopback_socket();
    client_ = loopback_socket();
    // The proxy's listener: any bound socket will do (run_one_shot makes it
    // non-blocking); its port is the kernel's choice.
    listener_ = loopback_socket();
    const auto resolver =
        *dnsgate::Endpoint::parse("127.0.0.1:" + std::to_string(port_of(upstream_.get())));
    std::string error;
    upstream_side_ = dnsgate::open_upstream_udp(resolver, error);
    proxy_address_.sin_family = AF_INET;
    proxy_address_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    proxy_address_.sin_port = htons(port_of(listener_.get()));

    const std::vector<std::string> entries = {"*.allowed.test", "exact.example.com"};
    config_.allowlist = std::get<dnsgate::Allowlist>(dnsgate::Allowlist::build(entries));
    config_.hostname_allowlist = entries;
    dnsgate::ResolverConfig upstream;
    upstream.protocol = dnsgate::UpstreamProtocol::do53_udp;
    upstream.address = resolver;
    config_.resolvers.push_back(upstream);
    config_.upstream_timeout = 2000ms;

    thread_ = std::thread([this, board] {
      t_is_proxy_thread = true;
      dnsgate::ProxyHooks hooks;
      hooks.metrics = board;
      hooks.io_chosen = [](dnsgate::IoBackend chosen, std::string_view) { g_io_chosen = chosen; };
      stats_ = dnsgate::run_proxy(config_, {listener_.get(), -1, upstream_side_.get()}, emitter_,
                                  shutdown_, hooks);
    });
  }

  ~ProxyRig() { stop(); }

  dnsgate::DnsProxyStats stop() {
    if (thread_.joinable()) {
      shutdown_ = true;
      thread_.join();
    }
    return stats_;
  }

  bool ready() const {
    return client_.valid() && upstream_.valid() && listener_.valid() && upstream_side_.valid();
  }
  const CountingEmitter& emitter() const { return emitter_; }

  void send_query(const std::vector<std::uint8_t>& packet) {
    sendto(client_.get(), packet.data(), packet.size(), 0,
           reinterpret_cast<const sockaddr*>(&proxy_address_), sizeof proxy_address_);
  }

  // The scripted upstream: takes one forwarded query and answers it with one
  // A record (the question as sent, QR and RA set, the id it chose).
  bool answer_one_upstream_query() {
    std::uint8_t buffer[512];
    sockaddr_in from{};
    socklen_t length = sizeof from;
    const ssize_t got = recvfrom(upstream_.get(), buffer, sizeof buffer, 0,
                                 reinterpret_cast<sockaddr*>(&from), &length);
    if (got < 12) return false;
    std::vector<std::uint8_t> answer(buffer, buffer + got);
    answer[2] |= 0x80;  // QR
    answer[3] = 0x80;   // RA, NOERROR
    answer[7] = 1;      // ANCOUNT 1
    answer.insert(answer.end(), {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1});
    sendto(upstream_.get(), answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from),
           length);
    return true;
  }

  // The workload's view: the answer to its query, or nothing within the timeout.
  std::optional<std::vector<std::uint8_t>> receive_answer() {
    std::uint8_t buffer[1500];
    const ssize_t got = recv(client_.get(), buffer, sizeof buffer, 0);
    if (got < 0) return std::nullopt;
    return std::vector<std::uint8_t>(buffer, buffer + got);
  }

  // Waits (bounded) until the proxy has emitted `count` events in all.
  bool wait_for_events(std::uint64_t count) {
    const auto deadline = std::chrono::steady_clock::now() + kReceiveTimeout;
    while (emitter_.emitted() < count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(100us);
    }
    return true;
  }

 private:
  CountingEmitter emitter_;
  dnsgate::UniqueFd client_;
  dnsgate::UniqueFd upstream_;
  dnsgate::UniqueFd listener_;
  dnsgate::UniqueFd upstream_side_;
  sockaddr_in proxy_address_{};
  dnsgate::DnsProxyConfig config_;
  std::atomic<bool> shutdown_{false};
  dnsgate::DnsProxyStats stats_;
  std::thread thread_;
};

struct Phase {
  std::uint64_t queries = 0;
  std::uint64_t forwarded = 0;
  std::uint64_t refused = 0;
};

// Runs `rounds` rounds of traffic: each sends one forwarded and one refused
// query alone, then a burst of 16 mixed queries (so recvmmsg returns several
// datagrams at once); half carry EDNS (so REFUSED carries an OPT and an EDE).
// Checks every answer the workload gets.
Phase drive(ProxyRig& rig, int rounds, std::uint16_t first_id) {
  Phase phase;
  std::uint16_t id = first_id;
  const auto expect_answer = [&](std::uint8_t rcode) {
    const auto answer = rig.receive_answer();
    EXPECT_TRUE(answer.has_value()) << "no answer from the proxy";
    if (answer && answer->size() >= 12) {
      EXPECT_EQ((*answer)[3] & 0x0F, rcode);
    }
  };
  // Every receive waits up to kReceiveTimeout: stop at the first failure
  // rather than wait for each of the datagrams that will not come.
  for (int round = 0; round < rounds && !::testing::Test::HasFailure(); ++round) {
    const bool edns = round % 2 == 1;
    rig.send_query(query_packet("host" + std::to_string(round % 50) + ".allowed.test", ++id, edns));
    EXPECT_TRUE(rig.answer_one_upstream_query());
    expect_answer(0);
    rig.send_query(query_packet("denied" + std::to_string(round % 50) + ".test", ++id, edns));
    expect_answer(5);
    phase.queries += 2;
    phase.forwarded += 1;
    phase.refused += 1;

    constexpr int kBurst = 16;
    for (int i = 0; i < kBurst; ++i) {
      const std::string name = i % 2 == 0 ? "b" + std::to_string(i) + ".allowed.test"
                                          : (i % 4 == 1 ? "exact.example.com" : "no.such.name");
      rig.send_query(query_packet(name, ++id, (i % 3) == 0));
    }
    // exact.example.com is allowed too: i % 4 == 1 are forwards.
    const int forwards = kBurst / 2 + kBurst / 4;
    for (int i = 0; i < forwards; ++i) EXPECT_TRUE(rig.answer_one_upstream_query());
    for (int i = 0; i < kBurst; ++i) {
      EXPECT_TRUE(rig.receive_answer().has_value());
    }
    phase.queries += kBurst;
    phase.forwarded += forwards;
    phase.refused += kBurst - forwards;
  }
  return phase;
}

struct Counted {
  Phase measured;
  std::uint64_t allocations = 0;
  std::uint64_t deallocations = 0;
};

// Warms up, then counts the proxy thread's allocations across the measured
// queries; checks the proxy handled every query as expected.
Counted count_allocations(ProxyRig& rig, const char* label) {
  Counted counted;
  EXPECT_TRUE(rig.ready());
  if (!rig.ready()) return counted;
  constexpr int kWarmupRounds = 20;
  constexpr int kMeasuredRounds = 200;

  const Phase warmup = drive(rig, kWarmupRounds, 0);
  EXPECT_TRUE(rig.wait_for_events(warmup.queries)) << "warm-up events missing";
  if (::testing::Test::HasFailure()) return counted;

  g_allocations = 0;
  g_deallocations = 0;
  g_bytes = 0;
  g_window_open = true;
  const Phase measured = drive(rig, kMeasuredRounds, 10000);
  const bool all_emitted = rig.wait_for_events(warmup.queries + measured.queries);
  g_window_open = false;
  counted.measured = measured;
  counted.allocations = g_allocations.load();
  counted.deallocations = g_deallocations.load();
  EXPECT_TRUE(all_emitted) << "events missing: the window did not cover every query";

  const dnsgate::DnsProxyStats stats = rig.stop();
  EXPECT_EQ(stats.forwarded, warmup.forwarded + measured.forwarded);
  EXPECT_EQ(stats.relayed, warmup.forwarded + measured.forwarded);
  EXPECT_EQ(stats.refused, warmup.refused + measured.refused);
  EXPECT_EQ(rig.emitter().forwards(), warmup.forwarded + measured.forwarded);
  EXPECT_EQ(rig.emitter().refusals(), warmup.refused + measured.refused);

  std::printf(
      "[%s] %llu queries (%llu forwarded, %llu refused) on the proxy thread: "
      "%llu allocations (%llu bytes), %llu deallocations\n",
      label, static_cast<unsigned long long>(measured.queries),
      static_cast<unsigned long long>(measured.forwarded),
      static_cast<unsigned long long>(measured.refused),
      static_cast<unsigned long long>(g_allocations.load()),
      static_cast<unsigned long long>(g_bytes.load()),
      static_cast<unsigned long long>(g_deallocations.load()));
  return counted;
}

void expect_no_allocation_per_query(ProxyRig& rig, const char* label) {
  const Counted counted = count_allocations(rig, label);
  EXPECT_GT(counted.measured.queries, 0U);
  EXPECT_EQ(counted.allocations, 0U);
  EXPECT_EQ(counted.deallocations, 0U);
}

// The counter itself works: an allocation on a flagged thread in the window
// is seen, one on another thread is not.
TEST(CountingAllocator, CountsOnlyTheFlaggedThreadInTheWindow) {
  g_allocations = 0;
  g_window_open = true;
  auto* unflagged = new int(1);
  std::thread flagged([] {
    t_is_proxy_thread = true;
    auto* p = new std::vector<int>(100);
    delete p;
  });
  flagged.join();
  g_window_open = false;
  delete unflagged;
  EXPECT_EQ(g_allocations.load(), 2U);  // the vector and its buffer
}

// The window really covers the proxy thread's work on every measured query:
// an emitter that allocates once per event is caught once per query.
TEST(CountingAllocator, CatchesAnAllocationPerQueryOnTheProxyThread) {
  ProxyRig rig(nullptr, /*allocate_per_event=*/true);
  const Counted counted = count_allocations(rig, "control, allocating emitter");
  EXPECT_EQ(counted.allocations, counted.measured.queries);
  EXPECT_EQ(counted.deallocations, counted.measured.queries);
}

// Every hot-path test runs once per I/O backend (config `io`), and checks
// that the backend asked for is the one that ran.
class UdpHotPath : public ::testing::TestWithParam<dnsgate::IoBackend> {
 protected:
  void TearDown() override { EXPECT_EQ(g_io_chosen.load(), GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(Backends, UdpHotPath,
                         ::testing::Values(dnsgate::IoBackend::epoll, dnsgate::IoBackend::uring),
                         [](const auto& info) {
                           return std::string(dnsgate::io_backend_name(info.param));
                         });

TEST_P(UdpHotPath, ForwardAndRefuseAllocateNothingPerQuery) {
  ProxyRig rig(nullptr, false, nullptr, GetParam());
  expect_no_allocation_per_query(rig, "hot path, test emitter");
}

// The same with the production sink behind the emitter: its emit() copies
// the record into a preallocated ring; the writer thread (not counted: not
// the DNS path) formats and writes to /dev/null.
TEST_P(UdpHotPath, WithTheCloudEventSinkAllocatesNothingPerQuery) {
  dnsgate::EventSinkOptions options;
  options.cell = "alloc";
  options.kind = dnsgate::EventSinkKind::file;
  options.path = "/dev/null";
  std::string error;
  auto sink = dnsgate::CloudEventSink::open(options, error);
  ASSERT_NE(sink, nullptr) << error;
  {
    ProxyRig rig(sink.get(), false, nullptr, GetParam());
    expect_no_allocation_per_query(rig, "hot path, CloudEventSink");
  }
  sink->close();
  EXPECT_EQ(sink->dropped(), 0U);
}

// With the metrics board attached (DESIGN §12): the loop's counters,
// per-resolver figures and latency histogram are stores into preallocated
// atomics, never an allocation per query.
TEST_P(UdpHotPath, WithTheMetricsBoardAllocatesNothingPerQuery) {
  dnsgate::MetricsBoard board;
  {
    ProxyRig rig(nullptr, false, &board, GetParam());
    expect_no_allocation_per_query(rig, "hot path, metrics board");
  }
  EXPECT_GT(board.counters().received, 0U);
  const auto resolvers = board.resolvers();
  ASSERT_EQ(resolvers.size(), 1U);
  EXPECT_GT(resolvers[0]->latency.snapshot().count, 0U);
}

}  // namespace
