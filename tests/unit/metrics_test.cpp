// The metrics board and endpoint (DESIGN.md §12, docs/metrics.md): the
// histogram's buckets, the exposition text, /healthz and /readyz, and the
// HTTP server on an ephemeral loopback port.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dnsgate/metrics.hpp"
#include "metrics/metrics_server.hpp"

namespace dnsgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// The sample lines of a rendering, keyed by name and labels as written.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

std::string value_of(const std::string& text, const std::string& key) {
  const auto all = samples(text);
  const auto it = all.find(key);
  return it == all.end() ? std::string("<absent>") : it->second;
}

TEST(MetricsHistogram, EachValueGoesToTheFirstBucketAtOrAboveIt) {
  LatencyHistogram histogram;
  histogram.record(0);        // bucket 0 (le 50us)
  histogram.record(50);       // on the bound: still bucket 0
  histogram.record(51);       // bucket 1 (le 100us)
  histogram.record(5000000);  // the last bound
  histogram.record(5000001);  // +Inf
  const auto snap = histogram.snapshot();
  EXPECT_EQ(snap.buckets[0], 2U);
  EXPECT_EQ(snap.buckets[1], 1U);
  EXPECT_EQ(snap.buckets[LatencyHistogram::kBoundsUs.size() - 1], 1U);
  EXPECT_EQ(snap.buckets[LatencyHistogram::kBoundsUs.size()], 1U);
  EXPECT_EQ(snap.count, 5U);
  EXPECT_EQ(snap.sum_us, 0U + 50 + 51 + 5000000 + 5000001);
}

TEST(MetricsRender, EveryCounterHasItsFamilyAndValue) {
  MetricsBoard board;
  ProxyCounters counters;
  counters.received = 11;
  counters.refused = 3;
  counters.servfail_timeout = 2;
  counters.events_dropped = 5;
  counters.dnssec_key_cache = 42;
  counters.tcp_idle_closed = 7;
  board.publish(counters);
  const std::string text = render_metrics(board, "c1");
  EXPECT_EQ(value_of(text, R"(dnsgate_received_total{cell="c1"})"), "11");
  EXPECT_EQ(value_of(text, R"(dnsgate_refused_total{cell="c1"})"), "3");
  EXPECT_EQ(value_of(text, R"(dnsgate_servfail_timeout_total{cell="c1"})"), "2");
  EXPECT_EQ(value_of(text, R"(dnsgate_events_dropped_total{cell="c1"})"), "5");
  EXPECT_EQ(value_of(text, R"(dnsgate_tcp_idle_closed_total{cell="c1"})"), "7");
  EXPECT_EQ(value_of(text, R"(dnsgate_forwarded_total{cell="c1"})"), "0");
  EXPECT_EQ(value_of(text, R"(dnsgate_dnssec_key_cache{cell="c1"})"), "42");
  EXPECT_NE(text.find("# TYPE dnsgate_dnssec_key_cache gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE dnsgate_received_total counter\n"), std::string::npos);

  // One family per ProxyCounters field, plus the board's own.
  std::size_t counter_families = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("# TYPE ", 0) == 0) ++counter_families;
  }
  EXPECT_GE(counter_families, MetricsBoard::kCounterCount);
}

TEST(MetricsRender, EveryFamilyHasHelpAndTypeOnceAndEverySampleACellLabel) {
  MetricsBoard board;
  board.resolver("udp://127.0.0.1:53");
  board.set_validating(true);
  const std::string text = render_metrics(board, "c");
  std::map<std::string, int> helps;
  std::map<std::string, int> types;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      ++helps[line.substr(7, line.find(' ', 7) - 7)];
    } else if (line.rfind("# TYPE ", 0) == 0) {
      ++types[line.substr(7, line.find(' ', 7) - 7)];
    } else {
      ASSERT_NE(line.find(R"({cell="c")"), std::string::npos) << line;
      const std::string name = line.substr(0, line.find('{'));
      bool declared = types.count(name) > 0;
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string s(suffix);
        if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
          declared = declared || types.count(name.substr(0, name.size() - s.size())) > 0;
        }
      }
      EXPECT_TRUE(declared) << "sample before its TYPE line: " << line;
    }
  }
  EXPECT_EQ(helps.size(), types.size());
  for (const auto& [name, count] : types) {
    EXPECT_EQ(count, 1) << name;
    EXPECT_EQ(helps[name], 1) << name;
  }
  EXPECT_EQ(text.back(), '\n');
}

TEST(MetricsRender, ResolversTheirCountersUpAndLatency) {
  MetricsBoard board;
  ResolverMetrics& first = board.resolver("udp://127.0.0.1:5300");
  ResolverMetrics& second = board.resolver("tls://192.0.2.1:853");
  ResolverMetrics& gone = board.resolver("udp://192.0.2.9:53");
  board.set_resolvers_in_force({&first, &second});
  first.queries = 10;
  first.answers = 9;
  first.failures = 1;
  second.up = false;
  second.times_down = 2;
  gone.queries = 4;
  first.latency.record(30);     // le 0.00005
  first.latency.record(700);    // le 0.001
  first.latency.record(70000);  // le 0.1
  const std::string text = render_metrics(board, "c");
  const std::string a = R"({cell="c",upstream="udp://127.0.0.1:5300")";
  const std::string b = R"({cell="c",upstream="tls://192.0.2.1:853")";
  const std::string g = R"({cell="c",upstream="udp://192.0.2.9:53")";
  EXPECT_EQ(value_of(text, "dnsgate_upstream_queries_total" + a + "}"), "10");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_answers_total" + a + "}"), "9");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_failures_total" + a + "}"), "1");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_times_down_total" + b + "}"), "2");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_queries_total" + g + "}"), "4");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_up" + a + "}"), "1");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_up" + b + "}"), "0");
  // A resolver no longer in the config keeps its counters but has no up.
  EXPECT_EQ(value_of(text, "dnsgate_upstream_up" + g + "}"), "<absent>");

  const std::string bucket = "dnsgate_upstream_latency_seconds_bucket" + a;
  EXPECT_EQ(value_of(text, bucket + R"(,le="0.00005"})"), "1");
  EXPECT_EQ(value_of(text, bucket + R"(,le="0.0005"})"), "1");
  EXPECT_EQ(value_of(text, bucket + R"(,le="0.001"})"), "2");
  EXPECT_EQ(value_of(text, bucket + R"(,le="0.05"})"), "2");
  EXPECT_EQ(value_of(text, bucket + R"(,le="0.1"})"), "3");
  EXPECT_EQ(value_of(text, bucket + R"(,le="1"})"), "3");
  EXPECT_EQ(value_of(text, bucket + R"(,le="2.5"})"), "3");
  EXPECT_EQ(value_of(text, bucket + R"(,le="5"})"), "3");
  EXPECT_EQ(value_of(text, bucket + R"(,le="+Inf"})"), "3");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_latency_seconds_sum" + a + "}"), "0.07073");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_latency_seconds_count" + a + "}"), "3");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_latency_seconds_count" + b + "}"), "0");
  EXPECT_EQ(value_of(text, "dnsgate_upstream_latency_seconds_sum" + b + "}"), "0");
}

TEST(MetricsRender, ValidationHistogramOnlyWhileValidating) {
  MetricsBoard board;
  board.validation_time().record(1500);
  EXPECT_EQ(render_metrics(board, "c").find("dnsgate_dnssec_validation_seconds"),
            std::string::npos);
  board.set_validating(true);
  const std::string text = render_metrics(board, "c");
  EXPECT_EQ(value_of(text, R"(dnsgate_dnssec_validation_seconds_bucket{cell="c",le="0.001"})"),
            "0");
  EXPECT_EQ(value_of(text, R"(dnsgate_dnssec_validation_seconds_bucket{cell="c",le="0.0025"})"),
            "1");
  EXPECT_EQ(value_of(text, R"(dnsgate_dnssec_validation_seconds_sum{cell="c"})"), "0.0015");
  EXPECT_EQ(value_of(text, R"(dnsgate_dnssec_validation_seconds_count{cell="c"})"), "1");
}

TEST(MetricsRender, EventsReloadsPolicyAndBuild) {
  MetricsBoard board;
  board.events_delivered = 100;
  board.events_spooled = 7;
  board.spool_bytes = 4096;
  board.events_retried = 12;
  board.events_rejected = 3;
  board.set_policy_version("0123456789ab");
  board.reload_applied("ba9876543210");
  board.reload_refused();
  board.reload_refused();
  const std::string text = render_metrics(board, "c");
  EXPECT_EQ(value_of(text, R"(dnsgate_events_delivered_total{cell="c"})"), "100");
  EXPECT_EQ(value_of(text, R"(dnsgate_events_spooled_total{cell="c"})"), "7");
  EXPECT_EQ(value_of(text, R"(dnsgate_spool_bytes{cell="c"})"), "4096");
  EXPECT_EQ(value_of(text, R"(dnsgate_events_retried_total{cell="c"})"), "12");
  EXPECT_EQ(value_of(text, R"(dnsgate_events_rejected_total{cell="c"})"), "3");
  EXPECT_EQ(value_of(text, R"(dnsgate_config_reloads_total{cell="c",result="applied"})"), "1");
  EXPECT_EQ(value_of(text, R"(dnsgate_config_reloads_total{cell="c",result="refused"})"), "2");
  EXPECT_EQ(value_of(text, R"(dnsgate_policy_info{cell="c",policy_version="ba9876543210"})"), "1");
  EXPECT_NE(text.find("dnsgate_build_info{cell=\"c\",version=\""), std::string::npos);
}

TEST(MetricsRender, LabelValuesAreEscaped) {
  MetricsBoard board;
  board.resolver("https://x.example/q?a=\"b\"\\c\nd");
  const std::string text = render_metrics(board, "we\"ird\\cell\n");
  EXPECT_NE(text.find(R"(dnsgate_received_total{cell="we\"ird\\cell\n"} 0)"), std::string::npos);
  EXPECT_NE(text.find(R"(upstream="https://x.example/q?a=\"b\"\\c\nd"} 0)"), std::string::npos);
  // No raw newline inside a sample line: every line starts with a name or #.
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    ASSERT_FALSE(line.empty());
    EXPECT_TRUE(line[0] == '#' || line.rfind("dnsgate_", 0) == 0) << line;
  }
}

TEST(MetricsProbes, HealthyWhileTheLoopTurnedWithinASecond) {
  MetricsBoard board;
  const auto now = Clock::now();
  EXPECT_FALSE(board.healthy(now));  // never turned
  EXPECT_EQ(health_answer(board, now).status, 503U);
  board.turned(now);
  EXPECT_TRUE(board.healthy(now + milliseconds(999)));
  EXPECT_EQ(health_answer(board, now + milliseconds(500)).status, 200U);
  EXPECT_EQ(health_answer(board, now + milliseconds(500)).body, "ok\n");
  EXPECT_FALSE(board.healthy(now + milliseconds(1001)));
  EXPECT_EQ(health_answer(board, now + seconds(2)).status, 503U);
}

TEST(MetricsProbes, ReadyNeedsListenersAndAResolverInForceUp) {
  MetricsBoard board;
  ResolverMetrics& first = board.resolver("udp://127.0.0.1:1");
  ResolverMetrics& second = board.resolver("udp://127.0.0.1:2");
  board.set_resolvers_in_force({&first});
  EXPECT_FALSE(board.ready());
  EXPECT_EQ(ready_answer(board).status, 503U);
  EXPECT_NE(ready_answer(board).body.find("listeners"), std::string::npos);
  board.set_listening(true);
  EXPECT_TRUE(board.ready());
  EXPECT_EQ(ready_answer(board).status, 200U);
  first.up = false;
  EXPECT_FALSE(board.ready());  // the second is up but not in force
  EXPECT_NE(ready_answer(board).body.find("no resolver"), std::string::npos);
  board.set_resolvers_in_force({&first, &second});
  EXPECT_TRUE(board.ready());
  second.up = false;
  EXPECT_EQ(ready_answer(board).status, 503U);
}

// --- the server --------------------------------------------------------

Endpoint loopback(std::uint16_t port, bool v6 = false) {
  sockaddr_storage storage{};
  if (v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    in6->sin6_port = htons(port);
    return *Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), sizeof(sockaddr_in6));
  }
  auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
  in4->sin_family = AF_INET;
  in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in4->sin_port = htons(port);
  return *Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), sizeof(sockaddr_in));
}

std::unique_ptr<MetricsServer> must_start(const Endpoint& where, const MetricsBoard& board,
                                          const MetricsServerLimits& limits = {}) {
  auto started = MetricsServer::start(where, board, "unit", limits);
  if (auto* error = std::get_if<std::string>(&started)) {
    ADD_FAILURE() << *error;
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<MetricsServer>>(started));
}

int connect_to(const Endpoint& where) {
  const int fd = socket(where.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage address{};
  const socklen_t length = where.to_sockaddr(address);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the peer closes or `timeout` passes; "" if nothing came.
std::string read_all(int fd, milliseconds timeout) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count() + 1;
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buffer[4096];
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  return out;
}

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

HttpReply request(const Endpoint& where, const std::string& method, const std::string& path) {
  HttpReply reply;
  const int fd = connect_to(where);
  if (fd < 0) return reply;
  const std::string text =
      method + " " + path + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    close(fd);
    return reply;
  }
  const std::string raw = read_all(fd, seconds(5));
  close(fd);
  if (raw.rfind("HTTP/1.1 ", 0) != 0) return reply;
  reply.status = std::stoi(raw.substr(9, 3));
  const auto end = raw.find("\r\n\r\n");
  reply.headers = raw.substr(0, end);
  if (end != std::string::npos) reply.body = raw.substr(end + 4);
  return reply;
}

TEST(MetricsServer, ServesTheThreePathsOnAKernelChosenPort) {
  MetricsBoard board;
  ResolverMetrics& resolver = board.resolver("udp://127.0.0.1:5300");
  board.set_resolvers_in_force({&resolver});
  ProxyCounters counters;
  counters.received = 5;
  board.publish(counters);
  auto server = must_start(loopback(0), board);
  ASSERT_TRUE(server);
  ASSERT_NE(server->address().port(), 0);
  const Endpoint at = server->address();

  HttpReply metrics = request(at, "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.headers.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_EQ(value_of(metrics.body, R"(dnsgate_received_total{cell="unit"})"), "5");
  // Rendered at each scrape: a new figure shows at once.
  counters.received = 6;
  board.publish(counters);
  EXPECT_EQ(value_of(request(at, "GET", "/metrics").body, R"(dnsgate_received_total{cell="unit"})"),
            "6");

  HttpReply head = request(at, "HEAD", "/metrics");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");

  EXPECT_EQ(request(at, "GET", "/healthz").status, 503);  // never turned
  board.turned(Clock::now());
  HttpReply health = request(at, "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");

  HttpReply ready = request(at, "GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("listeners"), std::string::npos);
  board.set_listening(true);
  EXPECT_EQ(request(at, "GET", "/readyz").status, 200);
  resolver.up = false;
  ready = request(at, "GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("no resolver"), std::string::npos);
}

TEST(MetricsServer, OtherPathsAre404AndOtherMethods405) {
  MetricsBoard board;
  auto server = must_start(loopback(0), board);
  ASSERT_TRUE(server);
  EXPECT_EQ(request(server->address(), "GET", "/").status, 404);
  EXPECT_EQ(request(server->address(), "GET", "/metrics/x").status, 404);
  HttpReply post = request(server->address(), "POST", "/metrics");
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(post.headers.find("Allow: GET, HEAD"), std::string::npos);
  EXPECT_EQ(request(server->address(), "DELETE", "/healthz").status, 405);
}

TEST(MetricsServer, ServesOverIpv6) {
  MetricsBoard board;
  auto server = must_start(loopback(0, true), board);
  ASSERT_TRUE(server);
  EXPECT_EQ(server->address().family(), AF_INET6);
  EXPECT_EQ(request(server->address(), "GET", "/metrics").status, 200);
}

TEST(MetricsServer, AnAddressInUseIsAnErrorInWords) {
  MetricsBoard board;
  auto first = must_start(loopback(0), board);
  ASSERT_TRUE(first);
  auto second = MetricsServer::start(first->address(), board, "unit");
  ASSERT_TRUE(std::holds_alternative<std::string>(second));
  EXPECT_NE(std::get<std::string>(second).find("in use"), std::string::npos)
      << std::get<std::string>(second);
}

TEST(MetricsServer, StoppingClosesTheListener) {
  MetricsBoard board;
  Endpoint at;
  {
    auto server = must_start(loopback(0), board);
    ASSERT_TRUE(server);
    at = server->address();
    EXPECT_EQ(request(at, "GET", "/healthz").status, 503);
  }
  const int fd = connect_to(at);
  EXPECT_LT(fd, 0);
  if (fd >= 0) close(fd);
}

TEST(MetricsServer, ConnectionsPastTheLimitAreNotServedAndIdleOnesAreDropped) {
  MetricsBoard board;
  MetricsServerLimits limits;
  limits.connection_limit = 4;
  limits.idle_timeout = seconds(1);
  auto server = must_start(loopback(0), board, limits);
  ASSERT_TRUE(server);
  const Endpoint at = server->address();

  // Four stuck scrapers, each with half a request line sent.
  std::vector<int> stuck;
  for (int i = 0; i < 4; ++i) {
    const int fd = connect_to(at);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "GET /met", 8), 8);
    stuck.push_back(fd);
  }
  std::this_thread::sleep_for(milliseconds(200));  // the daemon accepts them
  // A fifth gets no answer while the four hold every slot.
  const int fifth = connect_to(at);
  ASSERT_GE(fifth, 0);
  const std::string text = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(write(fifth, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  EXPECT_EQ(read_all(fifth, milliseconds(300)), "");
  close(fifth);

  // Past the idle timeout the stuck ones are closed and the slots free.
  for (const int fd : stuck) {
    const std::string got = read_all(fd, seconds(4));  // returns at close
    EXPECT_EQ(got.find("200 OK"), std::string::npos);
    close(fd);
  }
  EXPECT_EQ(request(at, "GET", "/healthz").status, 503);  // served: never turned
}

TEST(MetricsServer, AStuckScraperDoesNotBlockTheOthers) {
  MetricsBoard board;
  auto server = must_start(loopback(0), board);
  ASSERT_TRUE(server);
  const int stuck = connect_to(server->address());
  ASSERT_GE(stuck, 0);
  ASSERT_EQ(write(stuck, "GET /metrics HTTP/1.1\r\nHo", 25), 25);
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(request(server->address(), "GET", "/metrics").status, 200);
  EXPECT_LT(Clock::now() - start, seconds(2));
  close(stuck);
}

}  // namespace
}  // namespace dnsgate
