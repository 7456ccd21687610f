// CloudEventSink: whole lines in order, bounded queue, prompt writes, errors
// counted rather than fatal.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "dnsgate/event_sink.hpp"

namespace dnsgate {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

QueryRecord numbered_record(std::uint32_t number) {
  QueryRecord record;
  record.received_at = std::chrono::system_clock::now();
  record.client = Endpoint::parse("127.0.0.1:40312").value_or(Endpoint{});
  record.size = 33;
  record.has_transaction_id = true;
  record.transaction_id = static_cast<std::uint16_t>(number);
  record.has_question = true;
  const std::array<std::uint8_t, 13> wire = {7,   'e', 'x', 'a', 'm', 'p', 'l',
                                             'e', 3,   'c', 'o', 'm', 0};
  record.qname = QueryName::from_wire(wire).value_or(QueryName{});
  record.qtype = 1;
  record.qclass = 1;
  record.action = QueryAction::refuse;
  record.reason = ReasonCode::not_allowlisted;
  record.has_rcode = true;
  record.rcode = 5;
  record.latency_us = number;  // the order the events were emitted in
  return record;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t end = text.find('\n'); end != std::string::npos; end = text.find('\n', start)) {
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  EXPECT_EQ(start, text.size()) << "the output ends inside a line";
  return lines;
}

class EventSinkTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = testing::TempDir() + "dnsgate-events-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    directory_ = pattern;
    path_ = directory_ + "/events.jsonl";
  }

  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(directory_.c_str());
  }

  EventSinkOptions file_options() const {
    EventSinkOptions options;
    options.cell = "demo";
    options.kind = EventSinkKind::file;
    options.path = path_;
    return options;
  }

  std::unique_ptr<CloudEventSink> open_sink(const EventSinkOptions& options) {
    std::string error;
    auto sink = CloudEventSink::open(options, error);
    EXPECT_NE(sink, nullptr) << error;
    return sink;
  }

  std::string directory_;
  std::string path_;
};

TEST_F(EventSinkTest, WritesEveryRecordAsOneJsonLineInOrder) {
  constexpr std::uint32_t kRecords = 5000;
  EventSinkOptions options = file_options();
  options.queue_capacity = kRecords;  // room for all: this test is about order, not drops
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);
  for (std::uint32_t i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(sink->emit(numbered_record(i))) << i;
  }
  sink->close();
  EXPECT_EQ(sink->written(), kRecords);
  EXPECT_EQ(sink->dropped(), 0u);
  EXPECT_EQ(sink->write_errors(), 0u);

  const auto lines = split_lines(read_file(path_));
  ASSERT_EQ(lines.size(), kRecords);
  std::unordered_set<std::string> ids;
  for (std::uint32_t i = 0; i < kRecords; ++i) {
    const Json event = Json::parse(lines[i]);
    EXPECT_EQ(event["data"]["latencyUs"], i);
    EXPECT_EQ(event["source"], "dnsgate/cells/demo");
    EXPECT_EQ(event["subject"], "example.com");
    EXPECT_TRUE(ids.insert(event["id"].get<std::string>()).second) << "duplicate id";
  }
}

TEST_F(EventSinkTest, CreatesTheFileWithMode0640AndAppends) {
  const mode_t previous_umask = ::umask(022);
  {
    std::ofstream(path_) << "kept\n";
    ::chmod(path_.c_str(), 0600);  // an existing file keeps its own mode
    auto sink = open_sink(file_options());
    ASSERT_NE(sink, nullptr);
    ASSERT_TRUE(sink->emit(numbered_record(1)));
  }  // the destructor drains and closes
  const auto lines = split_lines(read_file(path_));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "kept");
  EXPECT_EQ(Json::parse(lines[1])["data"]["latencyUs"], 1);

  ::unlink(path_.c_str());
  {
    auto sink = open_sink(file_options());
    ASSERT_NE(sink, nullptr);
  }
  struct stat status {};
  ASSERT_EQ(::stat(path_.c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 0777, 0640u);
  ::umask(previous_umask);
}

TEST_F(EventSinkTest, UnwritablePathIsAnErrorNamingPathAndCause) {
  EventSinkOptions options = file_options();
  options.path = "/nonexistent/dir/x.jsonl";
  std::string error;
  auto sink = CloudEventSink::open(options, error);
  EXPECT_EQ(sink, nullptr);
  EXPECT_NE(error.find("/nonexistent/dir/x.jsonl"), std::string::npos) << error;
  EXPECT_NE(error.find(std::strerror(ENOENT)), std::string::npos) << error;
}

TEST_F(EventSinkTest, CloseIsIdempotentAndLaterEventsAreDropped) {
  auto sink = open_sink(file_options());
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->emit(numbered_record(1)));
  sink->close();
  sink->close();
  EXPECT_EQ(sink->written(), 1u);
  EXPECT_FALSE(sink->emit(numbered_record(2)));
  EXPECT_EQ(sink->dropped(), 1u);
  sink->close();
  EXPECT_EQ(split_lines(read_file(path_)).size(), 1u);
}

TEST_F(EventSinkTest, LineAppearsWithinTheFlushIntervalWithoutClose) {
  EventSinkOptions options = file_options();
  options.flush_interval = 100ms;
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->emit(numbered_record(7)));

  const auto deadline = std::chrono::steady_clock::now() + 300ms;
  std::string content;
  while (std::chrono::steady_clock::now() < deadline) {
    content = read_file(path_);
    if (!content.empty() && content.back() == '\n') {
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_FALSE(content.empty()) << "nothing written within 300 ms";
  const auto lines = split_lines(content);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(Json::parse(lines[0])["data"]["latencyUs"], 7);
}

// A reader that stops reading must cost dropped events, never a blocked
// emit(): the sink writes to a pipe that is already full, so the writer
// blocks in write(2) while the DNS path keeps emitting.
TEST_F(EventSinkTest, FullQueueDropsAndCountsWithoutBlocking) {
  std::array<int, 2> pipe_ends{};
  ASSERT_EQ(::pipe(pipe_ends.data()), 0);
  const int read_end = pipe_ends[0];
  const int write_end = pipe_ends[1];

  constexpr std::size_t kCapacity = 4;
  EventSinkOptions options = file_options();
  options.queue_capacity = kCapacity;
  // Opening the pipe through /proc gives the sink its own, blocking, file
  // description; the test's end is made non-blocking to fill the pipe.
  options.path = "/proc/self/fd/" + std::to_string(write_end);
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);

  ASSERT_EQ(::fcntl(write_end, F_SETFL, O_NONBLOCK), 0);
  const std::string filler(511, 'x');
  while (::write(write_end, (filler + '\n').data(), filler.size() + 1) > 0) {
  }
  while (::write(write_end, "\n", 1) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);

  constexpr std::uint32_t kEmitted = 100;
  std::uint32_t accepted = 0;
  const auto started = std::chrono::steady_clock::now();
  for (std::uint32_t i = 0; i < kEmitted; ++i) {
    accepted += sink->emit(numbered_record(i)) ? 1 : 0;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 100ms) << "emit() blocked";
  // The writer holds at most one batch (at most the capacity) in its blocked
  // write; the queue holds at most the capacity more.
  EXPECT_LE(accepted, 2 * kCapacity);
  EXPECT_EQ(sink->dropped(), kEmitted - accepted);

  std::string drained;
  std::thread reader([&] {
    std::array<char, 65536> buffer{};
    ssize_t n = 0;
    while ((n = ::read(read_end, buffer.data(), buffer.size())) > 0) {
      drained.append(buffer.data(), static_cast<std::size_t>(n));
    }
  });
  sink->close();  // drains the queue into the pipe, closes the sink's end
  ::close(write_end);
  reader.join();
  ::close(read_end);

  EXPECT_EQ(sink->written(), accepted);
  EXPECT_EQ(sink->write_errors(), 0u);
  std::uint32_t events = 0;
  std::int64_t previous = -1;
  for (const auto& line : split_lines(drained)) {
    if (line.empty() || line[0] != '{') {
      continue;  // the filler
    }
    const Json event = Json::parse(line);
    const std::int64_t number = event["data"]["latencyUs"];
    EXPECT_GT(number, previous) << "out of order";
    previous = number;
    ++events;
  }
  EXPECT_EQ(events, accepted);
}

// A reader that stops reading is not helped by the DNS loop pausing: the
// loop must not wait for a writer stuck in write(2) (longer than half a
// second: kStalledOutput).
TEST_F(EventSinkTest, StalledOutputNeverMakesTheLoopWait) {
  std::array<int, 2> pipe_ends{};
  ASSERT_EQ(::pipe(pipe_ends.data()), 0);
  EventSinkOptions options = file_options();
  options.queue_capacity = 8;
  options.path = "/proc/self/fd/" + std::to_string(pipe_ends[1]);
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);
  ASSERT_EQ(::fcntl(pipe_ends[1], F_SETFL, O_NONBLOCK), 0);
  const std::string filler(4095, 'x');
  while (::write(pipe_ends[1], (filler + '\n').data(), filler.size() + 1) > 0) {
  }
  while (::write(pipe_ends[1], "\n", 1) > 0) {
  }

  // The first records take the writer into its blocked write; the next
  // ones fill the queue behind it.
  for (std::uint32_t i = 0; i < 8; ++i) sink->emit(numbered_record(i));
  std::this_thread::sleep_for(700ms);
  for (std::uint32_t i = 0; i < 8; ++i) sink->emit(numbered_record(i));

  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(sink->wait_while_backlogged(2s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 300ms) << "waited for a stalled output";

  std::thread reader([read_end = pipe_ends[0]] {
    std::array<char, 65536> buffer{};
    while (::read(read_end, buffer.data(), buffer.size()) > 0) {
    }
  });
  sink->close();
  ::close(pipe_ends[1]);
  reader.join();
  ::close(pipe_ends[0]);
}

// The DNS loop's side: `events` emitted in bursts of 32, with
// wait_while_backlogged(limit) after each, as once per turn.
struct Played {
  std::uint32_t accepted = 0;
  std::uint32_t waits = 0;
};
Played play_the_loop(CloudEventSink& sink, std::uint32_t events, std::chrono::milliseconds limit) {
  constexpr std::uint32_t kBurst = 32;
  Played played;
  for (std::uint32_t i = 0; i < events; ++i) {
    played.accepted += sink.emit(numbered_record(i)) ? 1 : 0;
    if (i % kBurst == kBurst - 1 && sink.wait_while_backlogged(limit)) ++played.waits;
  }
  return played;
}

// Emitting a record costs far less than formatting it, so a DNS loop that
// keeps the writer's CPU busy outruns the writer, and without pausing for it
// the queue would overflow and events would be lost. Here the test thread
// plays the loop on the writer's CPU: it emits in bursts smaller than a
// quarter of the queue and calls wait_while_backlogged() between bursts, as
// the loop does once per turn. Every event must arrive, and the waits must
// have happened.
TEST_F(EventSinkTest, WriterShortOfCpuMakesTheLoopWaitInsteadOfDropping) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(::sched_getaffinity(0, sizeof allowed, &allowed), 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &allowed)) ++cpu;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ASSERT_EQ(::sched_setaffinity(0, sizeof one, &one), 0);  // the writer inherits it

  EventSinkOptions options = file_options();
  options.queue_capacity = 256;
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);

  constexpr std::uint32_t kEvents = 20000;
  const auto [accepted, waits] = play_the_loop(*sink, kEvents, 1s);
  sink->close();
  ASSERT_EQ(::sched_setaffinity(0, sizeof allowed, &allowed), 0);

  EXPECT_EQ(accepted, kEvents);
  EXPECT_EQ(sink->dropped(), 0u);
  EXPECT_EQ(sink->written(), kEvents);
  EXPECT_GT(waits, 0u) << "the writer kept up on its own: the test proves nothing";
  EXPECT_EQ(split_lines(read_file(path_)).size(), kEvents);
}

// An output that is slow but moving (a disk throttled by writeback, here a
// pipe whose reader pauses 20 ms between reads) keeps the writer inside
// write(2) for a while each time. The loop must wait for it, past its usual
// 5 ms, rather than fill the queue behind it and lose events: the bench's
// long runs lost 0.04% of them that way. The test thread plays the loop:
// bursts of 32, then wait_while_backlogged(5 ms), as once per turn.
TEST_F(EventSinkTest, SlowOutputMakesTheLoopWaitInsteadOfDropping) {
  std::array<int, 2> pipe_ends{};
  ASSERT_EQ(::pipe(pipe_ends.data()), 0);
  EventSinkOptions options = file_options();
  options.queue_capacity = 256;
  options.path = "/proc/self/fd/" + std::to_string(pipe_ends[1]);
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);

  std::size_t lines = 0;
  std::thread reader([&lines, read_end = pipe_ends[0]] {
    std::array<char, 65536> buffer{};
    ssize_t n = 0;
    while ((n = ::read(read_end, buffer.data(), buffer.size())) > 0) {
      lines += static_cast<std::size_t>(std::count(buffer.begin(), buffer.begin() + n, '\n'));
      std::this_thread::sleep_for(20ms);
    }
  });

  constexpr std::uint32_t kEvents = 4000;
  const auto [accepted, waits] = play_the_loop(*sink, kEvents, 5ms);
  sink->close();
  ::close(pipe_ends[1]);
  reader.join();
  ::close(pipe_ends[0]);

  EXPECT_EQ(accepted, kEvents);
  EXPECT_EQ(sink->dropped(), 0u);
  EXPECT_EQ(lines, kEvents);
  EXPECT_GT(waits, 0u) << "the output kept up on its own: the test proves nothing";
}

// A reader that goes away costs the events, counted; the sink keeps running.
TEST_F(EventSinkTest, BrokenPipeIsCountedAndNotFatal) {
  struct sigaction ignore {};
  struct sigaction previous {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &previous), 0);

  std::array<int, 2> pipe_ends{};
  ASSERT_EQ(::pipe(pipe_ends.data()), 0);
  EventSinkOptions options = file_options();
  options.path = "/proc/self/fd/" + std::to_string(pipe_ends[1]);
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);
  ::close(pipe_ends[0]);
  ::close(pipe_ends[1]);

  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(sink->emit(numbered_record(i)));
    std::this_thread::sleep_for(10ms);
  }
  sink->close();
  EXPECT_EQ(sink->written(), 0u);
  EXPECT_EQ(sink->write_errors(), 3u);
  EXPECT_EQ(sink->dropped(), 0u);
  ::sigaction(SIGPIPE, &previous, nullptr);
}

TEST_F(EventSinkTest, ManyThreadsEmittingLoseNothingThatWasAccepted) {
  constexpr int kThreads = 4;
  constexpr std::uint32_t kPerThread = 2000;
  EventSinkOptions options = file_options();
  options.queue_capacity = 64;  // small, so some emits meet a full queue
  auto sink = open_sink(options);
  ASSERT_NE(sink, nullptr);

  std::atomic<std::uint64_t> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (std::uint32_t i = 0; i < kPerThread; ++i) {
        accepted += sink->emit(numbered_record(i)) ? 1 : 0;
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  sink->close();

  EXPECT_EQ(accepted + sink->dropped(), kThreads * kPerThread);
  EXPECT_EQ(sink->written(), accepted);
  const auto lines = split_lines(read_file(path_));
  EXPECT_EQ(lines.size(), accepted);
  for (const auto& line : lines) {
    EXPECT_TRUE(Json::accept(line)) << line;
  }
}

}  // namespace
}  // namespace dnsgate
