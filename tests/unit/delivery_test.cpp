// The delivery backends of DESIGN.md §11: event ids, HTTP against a
// collector in this process, NATS against a real nats-server with
// JetStream on loopback. Every process started here is stopped by its PID.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "events/delivery.hpp"

namespace dnsgate {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// Lines shaped as dnsgate writes them, with ids that differ per `tag`.
struct Events {
  std::vector<std::string> lines;
  std::vector<OutgoingEvent> batch;

  Events(std::size_t count, unsigned tag) {
    lines.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      lines.push_back(fmt::format(
          R"({{"specversion":"1.0","id":"{:08x}-0000-4000-8000-{:012x}","source":"dnsgate/test",)"
          R"("type":"dev.dnsgate.dns_query","data":{{"n":{}}}}})",
          tag, i, i));
    }
    for (const std::string& line : lines) batch.push_back({event_id_of(line), line});
  }
};

TEST(DeliveryEventId, ReadsTheIdOfDnsgateLines) {
  const std::string line =
      R"({"specversion":"1.0","id":"0b4c2f6e-1f0a-4c1e-9a55-3f1d2b7c8e90","source":"dnsgate/web"})";
  EXPECT_EQ(event_id_of(line), "0b4c2f6e-1f0a-4c1e-9a55-3f1d2b7c8e90");
  EXPECT_EQ(event_id_of(R"({"specversion":"1.0","id":"short","x":1})"), "short");
}

TEST(DeliveryEventId, EmptyForOtherLines) {
  EXPECT_EQ(event_id_of(""), "");
  EXPECT_EQ(event_id_of("not json"), "");
  EXPECT_EQ(event_id_of(R"({"id":"abc","specversion":"1.0"})"), "");
  EXPECT_EQ(event_id_of(R"({"specversion":"1.0","id":"")"), "");
  EXPECT_EQ(event_id_of(R"({"specversion":"1.0","id":"","x":1})"), "");
  EXPECT_EQ(event_id_of(R"({"specversion":"1.0","id":"unterminated)"), "");
  EXPECT_EQ(event_id_of(R"({"specversion":"1.0","id":"a\"b","x":1})"), "");
  EXPECT_EQ(event_id_of(R"({"specversion":"1.0","id":"a b","x":1})"), "");
  EXPECT_EQ(
      event_id_of(fmt::format(R"({{"specversion":"1.0","id":"{}","x":1}})", std::string(65, 'a'))),
      "");
}

// ---------------------------------------------------------------- HTTP --

// A loopback port just given back by the kernel: nothing listens on it.
std::uint16_t free_port() {
  const int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  const bool bound = ::bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                     ::getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(probe);
  if (!bound) ADD_FAILURE() << "no free loopback port: " << std::strerror(errno);
  return ntohs(address.sin_port);
}

// A collector on a loopback port: answers each request with the next
// status queued (200 once the queue is empty) and keeps what it was sent.
class Collector {
 public:
  struct Request {
    std::string request_line;
    std::string content_type;
    std::string body;
  };

  Collector() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ADD_FAILURE() << "collector: cannot listen: " << std::strerror(errno);
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~Collector() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }

  std::string url() const { return fmt::format("http://127.0.0.1:{}/events", port_); }

  // `status` 0: read the request and never answer.
  void answer(int status, std::string body = {}) {
    const std::lock_guard lock(mutex_);
    answers_.emplace_back(status, std::move(body));
  }

  std::vector<Request> requests() {
    const std::lock_guard lock(mutex_);
    return requests_;
  }
  int connections() const { return connections_; }

 private:
  bool wait_readable(int fd) const {
    pollfd entry{fd, POLLIN, 0};
    while (!stop_) {
      if (::poll(&entry, 1, 50) > 0) return true;
    }
    return false;
  }

  void serve() {
    while (wait_readable(listener_)) {
      const int connection = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      ++connections_;
      serve_connection(connection);
      ::close(connection);
    }
  }

  // One connection at a time, its requests in turn (libcurl keeps one).
  void serve_connection(int connection) {
    std::string buffer;
    char chunk[65536];
    for (;;) {
      std::size_t head_end;
      while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
        if (!wait_readable(connection)) return;
        const ssize_t got = ::recv(connection, chunk, sizeof chunk, 0);
        if (got <= 0) return;
        buffer.append(chunk, static_cast<std::size_t>(got));
      }
      const std::string head = buffer.substr(0, head_end);
      const std::size_t length = std::stoul(header(head, "content-length").value_or("0"));
      while (buffer.size() < head_end + 4 + length) {
        if (!wait_readable(connection)) return;
        const ssize_t got = ::recv(connection, chunk, sizeof chunk, 0);
        if (got <= 0) return;
        buffer.append(chunk, static_cast<std::size_t>(got));
      }
      Request request;
      request.request_line = head.substr(0, head.find("\r\n"));
      request.content_type = header(head, "content-type").value_or("");
      request.body = buffer.substr(head_end + 4, length);
      buffer.erase(0, head_end + 4 + length);

      std::pair<int, std::string> reply{200, ""};
      {
        const std::lock_guard lock(mutex_);
        requests_.push_back(std::move(request));
        if (!answers_.empty()) {
          reply = std::move(answers_.front());
          answers_.pop_front();
        }
      }
      if (reply.first == 0) {
        while (wait_readable(connection)) {
          if (::recv(connection, chunk, sizeof chunk, 0) <= 0) return;
        }
        return;
      }
      const std::string response = fmt::format(
          "HTTP/1.1 {} Canned\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
          reply.first, reply.second.size(), reply.second);
      if (::send(connection, response.data(), response.size(), MSG_NOSIGNAL) < 0) return;
    }
  }

  static std::optional<std::string> header(const std::string& head, std::string_view name) {
    std::size_t at = head.find("\r\n");
    while (at != std::string::npos && at + 2 < head.size()) {
      const std::size_t end = head.find("\r\n", at + 2);
      const std::string line = head.substr(at + 2, end == std::string::npos ? end : end - at - 2);
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos && colon == name.size() &&
          std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
            return a == std::tolower(static_cast<unsigned char>(b));
          })) {
        std::size_t value = colon + 1;
        while (value < line.size() && line[value] == ' ') ++value;
        return line.substr(value);
      }
      at = end;
    }
    return std::nullopt;
  }

  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::mutex mutex_;
  std::deque<std::pair<int, std::string>> answers_;
  std::vector<Request> requests_;
  std::thread thread_;
};

std::unique_ptr<EventDelivery> open_http(const std::string& url, std::size_t batch_max = 500) {
  HttpSinkConfig config;
  config.url = url;
  config.batch_max = batch_max;
  auto opened = open_http_delivery(config);
  if (auto* error = std::get_if<std::string>(&opened)) {
    ADD_FAILURE() << *error;
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<EventDelivery>>(opened));
}

TEST(HttpDelivery, PostsTheBatchAsAJsonArrayOnOneConnection) {
  Collector collector;
  auto delivery = open_http(collector.url(), 250);
  ASSERT_TRUE(delivery);
  EXPECT_EQ(delivery->batch_max(), 250U);
  EXPECT_NE(delivery->describe().find(collector.url()), std::string::npos);

  const Events first(3, 1);
  const Events second(250, 2);
  const DeliveryResult one = delivery->send(first.batch);
  EXPECT_EQ(one.outcome, DeliveryOutcome::delivered) << one.error;
  EXPECT_EQ(one.delivered, 3U);
  const DeliveryResult two = delivery->send(second.batch);
  EXPECT_EQ(two.outcome, DeliveryOutcome::delivered) << two.error;
  EXPECT_EQ(two.delivered, 250U);

  const auto requests = collector.requests();
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(requests[0].request_line, "POST /events HTTP/1.1");
  EXPECT_EQ(requests[0].content_type, "application/cloudevents-batch+json");
  const Json body = Json::parse(requests[0].body);
  ASSERT_TRUE(body.is_array());
  ASSERT_EQ(body.size(), 3U);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(body[i], Json::parse(first.lines[i]));
  EXPECT_EQ(Json::parse(requests[1].body).size(), 250U);
  EXPECT_EQ(collector.connections(), 1);  // kept alive

  const DeliveryCounts counts = delivery->counts();
  EXPECT_EQ(counts.sent, 253U);
  EXPECT_EQ(counts.delivered, 253U);
  EXPECT_EQ(counts.errors, 0U);
}

TEST(HttpDelivery, ServerErrorsAndTooManyRequestsAreRetried) {
  Collector collector;
  collector.answer(503, "overloaded");
  collector.answer(429);
  collector.answer(500);
  auto delivery = open_http(collector.url());
  ASSERT_TRUE(delivery);
  const Events events(4, 3);

  const DeliveryResult unavailable = delivery->send(events.batch);
  EXPECT_EQ(unavailable.outcome, DeliveryOutcome::retry);
  EXPECT_EQ(unavailable.delivered, 0U);
  EXPECT_NE(unavailable.error.find("HTTP 503"), std::string::npos) << unavailable.error;
  EXPECT_NE(unavailable.error.find("overloaded"), std::string::npos) << unavailable.error;

  const DeliveryResult too_many = delivery->send(events.batch);
  EXPECT_EQ(too_many.outcome, DeliveryOutcome::retry);
  EXPECT_NE(too_many.error.find("HTTP 429"), std::string::npos) << too_many.error;

  const DeliveryResult internal = delivery->send(events.batch);
  EXPECT_EQ(internal.outcome, DeliveryOutcome::retry);

  const DeliveryResult ok = delivery->send(events.batch);
  EXPECT_EQ(ok.outcome, DeliveryOutcome::delivered) << ok.error;

  const DeliveryCounts counts = delivery->counts();
  EXPECT_EQ(counts.sent, 16U);
  EXPECT_EQ(counts.delivered, 4U);
  EXPECT_EQ(counts.retried, 12U);
  EXPECT_EQ(counts.errors, 3U);
  EXPECT_EQ(counts.rejected, 0U);
}

TEST(HttpDelivery, ClientErrorsRejectTheBatch) {
  Collector collector;
  collector.answer(400, "bad event\nline two");
  auto delivery = open_http(collector.url());
  ASSERT_TRUE(delivery);
  const Events events(5, 4);

  const DeliveryResult result = delivery->send(events.batch);
  EXPECT_EQ(result.outcome, DeliveryOutcome::rejected);
  EXPECT_EQ(result.delivered, 0U);
  EXPECT_EQ(result.rejected, 5U);
  EXPECT_NE(result.error.find("HTTP 400: bad event line two"), std::string::npos) << result.error;
  EXPECT_EQ(result.error.find('\n'), std::string::npos);
  EXPECT_EQ(delivery->counts().rejected, 5U);
}

TEST(HttpDelivery, ABatchOverBatchMaxGoesInSeveralPostsUpToARefusal) {
  Collector collector;
  collector.answer(200);
  collector.answer(422, "no");
  auto delivery = open_http(collector.url(), 4);
  ASSERT_TRUE(delivery);
  const Events events(10, 7);
  const DeliveryResult result = delivery->send(events.batch);
  EXPECT_EQ(result.outcome, DeliveryOutcome::rejected);
  EXPECT_EQ(result.delivered, 4U);
  EXPECT_EQ(result.rejected, 4U);  // the refused POST's, not the two never offered
  const auto requests = collector.requests();
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(Json::parse(requests[0].body).size(), 4U);
  EXPECT_EQ(Json::parse(requests[1].body)[0], Json::parse(events.lines[4]));

  const DeliveryResult rest = delivery->send(std::span(events.batch).subspan(8));
  EXPECT_EQ(rest.outcome, DeliveryOutcome::delivered) << rest.error;
  EXPECT_EQ(delivery->counts().sent, 10U);
}

TEST(HttpDelivery, ConnectionRefusedIsRetried) {
  auto delivery = open_http(fmt::format("http://127.0.0.1:{}/events", free_port()));
  ASSERT_TRUE(delivery);
  const Events events(2, 5);
  const DeliveryResult result = delivery->send(events.batch);
  EXPECT_EQ(result.outcome, DeliveryOutcome::retry);
  EXPECT_EQ(result.delivered, 0U);
  EXPECT_NE(result.error.find("http: POST http://127.0.0.1:"), std::string::npos) << result.error;
  EXPECT_EQ(delivery->counts().errors, 1U);
}

TEST(HttpDelivery, CancelEndsAWaitingPost) {
  Collector collector;
  collector.answer(0);  // never answers
  auto delivery = open_http(collector.url());
  ASSERT_TRUE(delivery);
  const Events events(2, 6);
  std::thread canceller([&] {
    for (int wait = 0; wait < 1000 && collector.requests().empty(); ++wait) {
      std::this_thread::sleep_for(10ms);
    }
    delivery->cancel();
  });
  const DeliveryResult result = delivery->send(events.batch);
  canceller.join();
  EXPECT_EQ(result.outcome, DeliveryOutcome::retry);
  EXPECT_NE(result.error.find("cancelled"), std::string::npos) << result.error;
  // Cancelled for good: the sink is shutting down.
  EXPECT_EQ(delivery->send(events.batch).outcome, DeliveryOutcome::retry);
}

TEST(HttpDelivery, OpenRefusesWhatCannotWork) {
  HttpSinkConfig config;
  config.url = "ftp://127.0.0.1/events";
  EXPECT_TRUE(std::holds_alternative<std::string>(open_http_delivery(config)));
  config.url = "http://[::1/events";
  EXPECT_TRUE(std::holds_alternative<std::string>(open_http_delivery(config)));
  config.url = "http://127.0.0.1/events";
  config.batch_max = 0;
  EXPECT_TRUE(std::holds_alternative<std::string>(open_http_delivery(config)));
}

// ---------------------------------------------------------------- NATS --

constexpr const char* kNatsServer = "/usr/sbin/nats-server";

// nats-server -js on a loopback port, its store in a directory of its own.
class NatsServer {
 public:
  explicit NatsServer(std::uint16_t port) : port_(port) {
    char pattern[] = "/tmp/dnsgate-delivery-test-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    store_ = made != nullptr ? made : "";
  }
  ~NatsServer() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(store_, ignored);
  }

  std::string url() const { return fmt::format("nats://127.0.0.1:{}", port_); }

  // Started and answering JetStream requests.
  bool start() {
    const std::string port = std::to_string(port_);
    const std::string log = store_ + "/server.log";
    std::vector<std::string> args = {kNatsServer, "-js", "-a",   "127.0.0.1", "-p",
                                     port,        "-sd", store_, "-l",        log};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, kNatsServer, nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
      return false;
    }
    // Generous: the machine running the tests may be busy.
    for (int attempt = 0; attempt < 400; ++attempt) {
      if (jetstream_ready()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Makes the stream (`subjects` comma-separated); true if it exists now.
  bool add_stream(const std::string& name, const std::vector<std::string>& subjects) {
    return with_jetstream([&](jsCtx* js) {
      std::vector<const char*> list;
      list.reserve(subjects.size());
      for (const std::string& subject : subjects) list.push_back(subject.c_str());
      jsStreamConfig config;
      jsStreamConfig_Init(&config);
      config.Name = name.c_str();
      config.Subjects = list.data();
      config.SubjectsLen = static_cast<int>(list.size());
      config.Storage = js_FileStorage;
      jsStreamInfo* info = nullptr;
      jsErrCode code{};
      const natsStatus status = js_AddStream(&info, js, &config, nullptr, &code);
      jsStreamInfo_Destroy(info);
      return status == NATS_OK;
    });
  }

  // Messages in the stream, -1 if it cannot be read.
  std::int64_t stream_messages(const std::string& name) {
    std::int64_t messages = -1;
    with_jetstream([&](jsCtx* js) {
      jsStreamInfo* info = nullptr;
      jsErrCode code{};
      if (js_GetStreamInfo(&info, js, name.c_str(), nullptr, &code) != NATS_OK) return false;
      messages = static_cast<std::int64_t>(info->State.Msgs);
      jsStreamInfo_Destroy(info);
      return true;
    });
    return messages;
  }

 private:
  bool jetstream_ready() {
    return with_jetstream([](jsCtx* js) {
      jsAccountInfo* info = nullptr;
      jsErrCode code{};
      const natsStatus status = js_GetAccountInfo(&info, js, nullptr, &code);
      jsAccountInfo_Destroy(info);
      return status == NATS_OK;
    });
  }

  template <class Use>
  bool with_jetstream(Use use) {
    natsConnection* connection = nullptr;
    if (natsConnection_ConnectTo(&connection, url().c_str()) != NATS_OK) return false;
    jsCtx* js = nullptr;
    bool ok = natsConnection_JetStream(&js, connection, nullptr) == NATS_OK && use(js);
    jsCtx_Destroy(js);
    natsConnection_Destroy(connection);
    return ok;
  }

  std::uint16_t port_;
  std::string store_;
  pid_t pid_ = -1;
};

std::unique_ptr<EventDelivery> open_nats(const std::string& url, const std::string& subject,
                                         const std::string& stream, std::string_view cell) {
  NatsSinkConfig config;
  config.urls = {url};
  config.subject = subject;
  config.stream = stream;
  auto opened = open_nats_delivery(config, cell);
  if (auto* error = std::get_if<std::string>(&opened)) {
    ADD_FAILURE() << *error;
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<EventDelivery>>(opened));
}

class NatsDeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kNatsServer, X_OK) != 0) GTEST_SKIP() << kNatsServer << " is not installed";
    server_.emplace(free_port());
  }

  void start_with_stream() {
    ASSERT_TRUE(server_->start()) << "nats-server did not start";
    ASSERT_TRUE(server_->add_stream("DNSGATE", {"dnsgate.events.*"}));
  }

  std::optional<NatsServer> server_;
};

TEST_F(NatsDeliveryTest, DeliveredWhenJetStreamAcknowledges) {
  start_with_stream();
  auto delivery = open_nats(server_->url(), "dnsgate.events.{cell}", "DNSGATE", "web");
  ASSERT_TRUE(delivery);
  EXPECT_EQ(delivery->describe(),
            fmt::format("{} subject dnsgate.events.web stream DNSGATE", server_->url()));

  const Events small(10, 1);
  const DeliveryResult one = delivery->send(small.batch);
  EXPECT_EQ(one.outcome, DeliveryOutcome::delivered) << one.error;
  EXPECT_EQ(one.delivered, 10U);

  // A whole batch at once, all in flight.
  const Events full(delivery->batch_max(), 2);
  const DeliveryResult two = delivery->send(full.batch);
  EXPECT_EQ(two.outcome, DeliveryOutcome::delivered) << two.error;
  EXPECT_EQ(two.delivered, full.batch.size());

  EXPECT_EQ(server_->stream_messages("DNSGATE"), static_cast<std::int64_t>(10 + full.batch.size()));
  const DeliveryCounts counts = delivery->counts();
  EXPECT_EQ(counts.sent, 10 + full.batch.size());
  EXPECT_EQ(counts.delivered, 10 + full.batch.size());
  EXPECT_EQ(counts.errors, 0U);
}

TEST_F(NatsDeliveryTest, ABatchOverBatchMaxIsDeliveredInParts) {
  start_with_stream();
  auto delivery = open_nats(server_->url(), "dnsgate.events.{cell}", "DNSGATE", "web");
  ASSERT_TRUE(delivery);
  const Events events(delivery->batch_max() * 2 + 7, 10);
  const DeliveryResult result = delivery->send(events.batch);
  EXPECT_EQ(result.outcome, DeliveryOutcome::delivered) << result.error;
  EXPECT_EQ(result.delivered, events.batch.size());
  EXPECT_EQ(server_->stream_messages("DNSGATE"), static_cast<std::int64_t>(events.batch.size()));
}

TEST_F(NatsDeliveryTest, ResentEventsAreStoredOnceByMsgId) {
  start_with_stream();
  auto delivery = open_nats(server_->url(), "dnsgate.events.{cell}", "DNSGATE", "web");
  ASSERT_TRUE(delivery);
  const Events events(100, 3);
  for (int round = 0; round < 2; ++round) {
    const DeliveryResult result = delivery->send(events.batch);
    EXPECT_EQ(result.outcome, DeliveryOutcome::delivered) << result.error;
    EXPECT_EQ(result.delivered, 100U);
  }
  EXPECT_EQ(server_->stream_messages("DNSGATE"), 100);
  EXPECT_EQ(delivery->counts().sent, 200U);
}

TEST_F(NatsDeliveryTest, ASubjectNoStreamCapturesIsRetriedWithTheReason) {
  start_with_stream();
  auto delivery = open_nats(server_->url(), "elsewhere.{cell}", "", "web");
  ASSERT_TRUE(delivery);
  const Events events(5, 4);
  const DeliveryResult result = delivery->send(events.batch);
  EXPECT_EQ(result.outcome, DeliveryOutcome::retry);
  EXPECT_EQ(result.delivered, 0U);
  EXPECT_EQ(result.error, "nats: no responders: no stream captures subject elsewhere.web");
  EXPECT_EQ(server_->stream_messages("DNSGATE"), 0);
}

TEST_F(NatsDeliveryTest, AnotherStreamCapturingTheSubjectIsRetriedWithTheReason) {
  start_with_stream();
  auto delivery = open_nats(server_->url(), "dnsgate.events.{cell}", "AUDIT", "web");
  ASSERT_TRUE(delivery);
  const Events events(5, 5);
  const DeliveryResult result = delivery->send(events.batch);
  EXPECT_EQ(result.outcome, DeliveryOutcome::retry);
  EXPECT_EQ(result.delivered, 0U);
  EXPECT_NE(result.error.find("expected stream does not match"), std::string::npos) << result.error;
  EXPECT_EQ(server_->stream_messages("DNSGATE"), 0);
}

TEST_F(NatsDeliveryTest, ServerDownIsRetriedAndAServerStartedLaterGetsTheEvents) {
  auto delivery = open_nats(server_->url(), "dnsgate.events.{cell}", "DNSGATE", "web");
  ASSERT_TRUE(delivery);
  const Events events(50, 6);
  const DeliveryResult down = delivery->send(events.batch);
  EXPECT_EQ(down.outcome, DeliveryOutcome::retry);
  EXPECT_EQ(down.delivered, 0U);
  EXPECT_NE(down.error.find("nats: not connected to " + server_->url()), std::string::npos)
      << down.error;

  start_with_stream();
  DeliveryResult later;
  for (int attempt = 0; attempt < 30; ++attempt) {
    later = delivery->send(events.batch);
    if (later.outcome == DeliveryOutcome::delivered) break;
  }
  EXPECT_EQ(later.outcome, DeliveryOutcome::delivered) << later.error;
  EXPECT_EQ(later.delivered, 50U);
  EXPECT_EQ(server_->stream_messages("DNSGATE"), 50);
  EXPECT_GE(delivery->counts().retried, 50U);
}

TEST_F(NatsDeliveryTest, AServerThatGoesAwayIsRetriedUntilItReturns) {
  start_with_stream();
  auto delivery = open_nats(server_->url(), "dnsgate.events.{cell}", "DNSGATE", "web");
  ASSERT_TRUE(delivery);
  const Events before(20, 7);
  ASSERT_EQ(delivery->send(before.batch).outcome, DeliveryOutcome::delivered);

  server_->stop();
  const Events during(20, 8);
  const DeliveryResult away = delivery->send(during.batch);
  EXPECT_EQ(away.outcome, DeliveryOutcome::retry);
  EXPECT_LT(away.delivered, 20U);
  EXPECT_NE(away.error.find("nats: "), std::string::npos);

  // The same store: the stream and what it held come back with it.
  ASSERT_TRUE(server_->start());
  DeliveryResult back;
  for (int attempt = 0; attempt < 30; ++attempt) {
    back = delivery->send(during.batch);
    if (back.outcome == DeliveryOutcome::delivered) break;
  }
  EXPECT_EQ(back.outcome, DeliveryOutcome::delivered) << back.error;
  EXPECT_EQ(server_->stream_messages("DNSGATE"), 40);
}

TEST_F(NatsDeliveryTest, CancelEndsAWaitForTheServer) {
  auto delivery = open_nats(server_->url(), "dnsgate.events.{cell}", "DNSGATE", "web");
  ASSERT_TRUE(delivery);
  delivery->cancel();
  const Events events(3, 9);
  const DeliveryResult result = delivery->send(events.batch);
  EXPECT_EQ(result.outcome, DeliveryOutcome::retry);
  EXPECT_NE(result.error.find("cancelled"), std::string::npos) << result.error;
}

TEST(NatsDelivery, OpenRefusesWhatCannotWork) {
  NatsSinkConfig config;
  EXPECT_TRUE(std::holds_alternative<std::string>(open_nats_delivery(config, "web")));
  config.urls = {"nats://127.0.0.1:99999"};
  EXPECT_TRUE(std::holds_alternative<std::string>(open_nats_delivery(config, "web")));
  config.urls = {"127.0.0.1:4222"};
  EXPECT_TRUE(std::holds_alternative<std::string>(open_nats_delivery(config, "web")));
  config.urls = {"nats://127.0.0.1:4222", "tls://user:secret@[::1]:4223"};
  config.subject = "events.{cell}.>";
  EXPECT_TRUE(std::holds_alternative<std::string>(open_nats_delivery(config, "web")));
  config.subject = "events.{cell}";
  EXPECT_TRUE(
      std::holds_alternative<std::unique_ptr<EventDelivery>>(open_nats_delivery(config, "web")));
}

}  // namespace
}  // namespace dnsgate
