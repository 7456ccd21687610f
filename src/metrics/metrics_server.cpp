// /metrics, /healthz and /readyz (DESIGN.md §12, docs/metrics.md).
#include "metrics/metrics_server.hpp"

#include <fcntl.h>
#include <microhttpd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <utility>
#include <vector>

#include "dnsgate/socket.hpp"

#ifndef DNSGATE_VERSION
#define DNSGATE_VERSION "unknown"
#endif

namespace dnsgate {

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

struct CounterFamily {
  const char* name;
  const char* help;
  std::uint64_t ProxyCounters::*field;
  bool gauge;
};

// Every ProxyCounters field, one family each, in the order of the stats
// line: its camelCase key in snake_case with `_total`. The one gauge is
// the key cache's size. A test checks that the table covers the struct.
constexpr CounterFamily kCounterFamilies[] = {
    {"dnsgate_received_total",
     "Datagrams and TCP frames received from the workload, malformed included.",
     &ProxyCounters::received, false},
    {"dnsgate_forwarded_total", "Queries sent to a resolver.", &ProxyCounters::forwarded, false},
    {"dnsgate_relayed_total", "Resolver answers relayed to the workload.", &ProxyCounters::relayed,
     false},
    {"dnsgate_refused_total", "Queries denied by the allowlist.", &ProxyCounters::refused, false},
    {"dnsgate_notimp_total", "Queries with an opcode other than QUERY, answered NOTIMP.",
     &ProxyCounters::notimp, false},
    {"dnsgate_malformed_total", "Packets the parser rejected, dropped.", &ProxyCounters::malformed,
     false},
    {"dnsgate_servfail_timeout_total",
     "SERVFAIL answered: the resolver was silent past the timeout.",
     &ProxyCounters::servfail_timeout, false},
    {"dnsgate_servfail_error_total", "SERVFAIL answered: the resolver was unreachable or failed.",
     &ProxyCounters::servfail_error, false},
    {"dnsgate_overloaded_total", "Queries answered SERVFAIL because the in-flight table was full.",
     &ProxyCounters::overloaded, false},
    {"dnsgate_unsolicited_upstream_total", "Packets from the upstream side that matched no query.",
     &ProxyCounters::unsolicited_upstream, false},
    {"dnsgate_events_dropped_total", "Events the emitter did not accept.",
     &ProxyCounters::events_dropped, false},
    {"dnsgate_event_backlog_waits_total", "Loop turns that waited for the event writer.",
     &ProxyCounters::event_backlog_waits, false},
    {"dnsgate_dropped_at_shutdown_total", "Queries still in flight when the loop stopped.",
     &ProxyCounters::dropped_at_shutdown, false},
    {"dnsgate_send_failed_total", "Answers the kernel would not send to the workload.",
     &ProxyCounters::send_failed, false},
    {"dnsgate_client_gone_total", "Answers for a workload TCP connection already closed.",
     &ProxyCounters::client_gone, false},
    {"dnsgate_tcp_accepted_total", "Workload TCP connections taken on.",
     &ProxyCounters::tcp_accepted, false},
    {"dnsgate_tcp_rejected_total",
     "Workload TCP connections closed at once: maxConnections reached.",
     &ProxyCounters::tcp_rejected, false},
    {"dnsgate_tcp_frames_abandoned_total", "Workload TCP frames begun but never finished.",
     &ProxyCounters::tcp_frames_abandoned, false},
    {"dnsgate_tcp_idle_closed_total", "Workload TCP connections closed after idleTimeoutMs.",
     &ProxyCounters::tcp_idle_closed, false},
    {"dnsgate_upstream_tcp_connects_total", "Connections opened to the resolvers.",
     &ProxyCounters::upstream_tcp_connects, false},
    {"dnsgate_dnssec_secure_total", "Answers validated secure.", &ProxyCounters::dnssec_secure,
     false},
    {"dnsgate_dnssec_insecure_total", "Answers proven insecure (no DNSSEC below a trust anchor).",
     &ProxyCounters::dnssec_insecure, false},
    {"dnsgate_dnssec_bogus_total", "Answers that failed validation.", &ProxyCounters::dnssec_bogus,
     false},
    {"dnsgate_dnssec_indeterminate_total", "Answers whose validation could not be completed.",
     &ProxyCounters::dnssec_indeterminate, false},
    {"dnsgate_dnssec_fetches_total", "DS and DNSKEY fetches the validator made.",
     &ProxyCounters::dnssec_fetches, false},
    {"dnsgate_dnssec_key_cache", "Validated DS and DNSKEY RRsets the validator holds.",
     &ProxyCounters::dnssec_key_cache, true},
};
static_assert(
    std::size(kCounterFamilies) == MetricsBoard::kCounterCount,
    "a ProxyCounters field has no metric: add it to kCounterFamilies and docs/metrics.md");

// Label values are text from the operator's config (a cell name, a URI):
// the exposition format needs \, " and newline escaped.
void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// Exact decimal seconds from microseconds ("0.00025", "5", "1.5"): no
// floating point, so the `le` labels and sums read as written.
void append_seconds(std::string& out, std::uint64_t micros) {
  out += std::to_string(micros / 1000000);
  std::uint64_t fraction = micros % 1000000;
  if (fraction == 0) return;
  std::string digits = std::to_string(fraction);
  digits.insert(0, 6 - digits.size(), '0');
  while (digits.back() == '0') digits.pop_back();
  out += '.';
  out += digits;
}

class Writer {
 public:
  Writer(std::string& out, std::string_view cell) : out_(out) {
    cell_label_ = "cell=\"";
    append_label_value(cell_label_, cell);
    cell_label_ += '"';
  }

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;  // our own text: no backslash or newline to escape
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // One sample; `labels` is already rendered ("upstream=\"...\"") or empty.
  void sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    open(name, labels);
    out_ += std::to_string(value);
    out_ += '\n';
  }

  void sample_seconds(std::string_view name, std::string_view labels, std::uint64_t micros) {
    open(name, labels);
    append_seconds(out_, micros);
    out_ += '\n';
  }

  // The _bucket, _sum and _count lines of one histogram (family line
  // written by the caller).
  void histogram(std::string_view name, std::string_view labels,
                 const LatencyHistogram::Snapshot& snapshot) {
    const std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < snapshot.buckets.size(); ++i) {
      cumulative += snapshot.buckets[i];
      std::string le = labels.empty() ? std::string() : std::string(labels) + ',';
      le += "le=\"";
      if (i < LatencyHistogram::kBoundsUs.size()) {
        append_seconds(le, LatencyHistogram::kBoundsUs[i]);
      } else {
        le += "+Inf";
      }
      le += '"';
      sample(bucket, le, cumulative);
    }
    sample_seconds(std::string(name) + "_sum", labels, snapshot.sum_us);
    sample(std::string(name) + "_count", labels, cumulative);
  }

 private:
  void open(std::string_view name, std::string_view labels) {
    out_ += name;
    out_ += '{';
    out_ += cell_label_;
    if (!labels.empty()) {
      out_ += ',';
      out_ += labels;
    }
    out_ += "} ";
  }

  std::string& out_;
  std::string cell_label_;
};

std::string label(std::string_view key, std::string_view value) {
  std::string out(key);
  out += "=\"";
  append_label_value(out, value);
  out += '"';
  return out;
}

}  // namespace

std::string render_metrics(const MetricsBoard& board, std::string_view cell) {
  std::string out;
  out.reserve(16384);
  Writer w(out, cell);

  const ProxyCounters counters = board.counters();
  for (const CounterFamily& family : kCounterFamilies) {
    w.family(family.name, family.gauge ? "gauge" : "counter", family.help);
    w.sample(family.name, {}, counters.*family.field);
  }

  const auto resolvers = board.resolvers();
  std::vector<std::string> upstream_labels;
  upstream_labels.reserve(resolvers.size());
  for (const ResolverMetrics* resolver : resolvers) {
    upstream_labels.push_back(label("upstream", resolver->uri));
  }
  struct ResolverFamily {
    const char* name;
    const char* help;
    const std::atomic<std::uint64_t> ResolverMetrics::*field;
  };
  const ResolverFamily resolver_families[] = {
      {"dnsgate_upstream_queries_total", "Queries sent to this resolver.",
       &ResolverMetrics::queries},
      {"dnsgate_upstream_answers_total", "Answers received from this resolver.",
       &ResolverMetrics::answers},
      {"dnsgate_upstream_failures_total", "Queries to this resolver that timed out or failed.",
       &ResolverMetrics::failures},
      {"dnsgate_upstream_times_down_total", "Times this resolver was marked down.",
       &ResolverMetrics::times_down},
  };
  for (const ResolverFamily& family : resolver_families) {
    w.family(family.name, "counter", family.help);
    for (std::size_t i = 0; i < resolvers.size(); ++i) {
      w.sample(family.name, upstream_labels[i], (resolvers[i]->*family.field).load(kRelaxed));
    }
  }
  w.family("dnsgate_upstream_up", "gauge",
           "1 while a resolver of the config in force is up, 0 while it is down (in a backoff).");
  for (std::size_t i = 0; i < resolvers.size(); ++i) {
    if (!resolvers[i]->in_config.load(kRelaxed)) continue;
    w.sample("dnsgate_upstream_up", upstream_labels[i], resolvers[i]->up.load(kRelaxed) ? 1 : 0);
  }
  w.family("dnsgate_upstream_latency_seconds", "histogram",
           "Time from a query sent to this resolver to its answer.");
  for (std::size_t i = 0; i < resolvers.size(); ++i) {
    w.histogram("dnsgate_upstream_latency_seconds", upstream_labels[i],
                resolvers[i]->latency.snapshot());
  }
  if (board.validating()) {
    w.family("dnsgate_dnssec_validation_seconds", "histogram",
             "Time spent validating one answer (dnssec mode validate).");
    w.histogram("dnsgate_dnssec_validation_seconds", {}, board.validation_time().snapshot());
  }

  w.family("dnsgate_events_delivered_total", "counter",
           "Events a nats or http sink had acknowledged.");
  w.sample("dnsgate_events_delivered_total", {}, board.events_delivered.load(kRelaxed));
  w.family("dnsgate_events_spooled_total", "counter", "Events written to the spool.");
  w.sample("dnsgate_events_spooled_total", {}, board.events_spooled.load(kRelaxed));
  w.family("dnsgate_spool_bytes", "gauge", "Bytes in the event spool now.");
  w.sample("dnsgate_spool_bytes", {}, board.spool_bytes.load(kRelaxed));
  w.family("dnsgate_events_retried_total", "counter",
           "Events sent again after a transient delivery failure.");
  w.sample("dnsgate_events_retried_total", {}, board.events_retried.load(kRelaxed));
  w.family("dnsgate_events_rejected_total", "counter",
           "Events the sink refused for good (HTTP 4xx), kept in the dead-letter file.");
  w.sample("dnsgate_events_rejected_total", {}, board.events_rejected.load(kRelaxed));

  w.family("dnsgate_config_reloads_total", "counter",
           "Config reloads (SIGHUP): applied, or refused and the old config kept.");
  w.sample("dnsgate_config_reloads_total", R"(result="applied")", board.reloads_applied());
  w.sample("dnsgate_config_reloads_total", R"(result="refused")", board.reloads_refused());
  w.family("dnsgate_policy_info", "gauge", "Always 1; policy_version: the allowlist in force.");
  w.sample("dnsgate_policy_info", label("policy_version", board.policy_version()), 1);
  w.family("dnsgate_build_info", "gauge", "Always 1; version: the dnsgate binary's.");
  w.sample("dnsgate_build_info", label("version", DNSGATE_VERSION), 1);

  w.family("dnsgate_healthy", "gauge",
           "1 while the loop turned within the last second (/healthz).");
  w.sample("dnsgate_healthy", {}, board.healthy(std::chrono::steady_clock::now()) ? 1 : 0);
  w.family("dnsgate_ready", "gauge",
           "1 while the listeners are bound and a resolver in force is up (/readyz).");
  w.sample("dnsgate_ready", {}, board.ready() ? 1 : 0);
  return out;
}

ProbeAnswer health_answer(const MetricsBoard& board, std::chrono::steady_clock::time_point now) {
  if (board.healthy(now)) return {200, "ok\n"};
  return {503, "unhealthy: the proxy loop has not turned within the last second\n"};
}

ProbeAnswer ready_answer(const MetricsBoard& board) {
  if (board.ready()) return {200, "ready\n"};
  // ready() is false for one of two reasons; say which.
  const auto resolvers = board.resolvers();
  bool any_in_force_up = false;
  for (const ResolverMetrics* resolver : resolvers) {
    if (resolver->in_config.load(kRelaxed) && resolver->up.load(kRelaxed)) any_in_force_up = true;
  }
  if (any_in_force_up) return {503, "not ready: the listeners are not bound yet\n"};
  return {503, "not ready: no resolver of the config in force is up\n"};
}

namespace {

MHD_Result queue_text(MHD_Connection* connection, unsigned status, const std::string& body,
                      const char* content_type) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  }
  const MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

constexpr const char* kPlain = "text/plain; charset=utf-8";
constexpr const char* kExposition = "text/plain; version=0.0.4; charset=utf-8";

MHD_Result answer(MetricsServer::Context& context, MHD_Connection* connection, std::string_view url,
                  std::string_view method) {
  if (method != MHD_HTTP_METHOD_GET && method != MHD_HTTP_METHOD_HEAD) {
    return queue_text(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n", kPlain);
  }
  if (url == "/metrics") {
    return queue_text(connection, MHD_HTTP_OK, render_metrics(*context.board, context.cell),
                      kExposition);
  }
  if (url == "/healthz") {
    const ProbeAnswer probe = health_answer(*context.board, std::chrono::steady_clock::now());
    return queue_text(connection, probe.status, probe.body, kPlain);
  }
  if (url == "/readyz") {
    const ProbeAnswer probe = ready_answer(*context.board);
    return queue_text(connection, probe.status, probe.body, kPlain);
  }
  return queue_text(connection, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz, /readyz\n",
                    kPlain);
}

// libmicrohttpd's C callback: nothing may unwind through it, so an
// allocation failure while rendering closes the connection instead.
MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method,
                      const char* /*version*/, const char* /*upload_data*/,
                      std::size_t* upload_data_size, void** /*con_cls*/) noexcept {
  // A request body (there should be none) is ignored: the answer is queued
  // on the first call, and the body read and dropped after.
  *upload_data_size = 0;
  try {
    return answer(*static_cast<MetricsServer::Context*>(cls), connection, url, method);
  } catch (...) {
    return MHD_NO;
  }
}

}  // namespace

std::variant<std::unique_ptr<MetricsServer>, std::string> MetricsServer::start(
    const Endpoint& listen, const MetricsBoard& board, std::string cell,
    const MetricsServerLimits& limits) {
  // The socket is ours to bind, so a failure says why in words (address in
  // use, permission) and port 0 can be read back; the daemon takes it over.
  std::string error;
  UniqueFd listener = bind_tcp_listener(listen, error);
  if (!listener.valid()) return error;
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    return std::string("getsockname: ") + std::strerror(errno);
  }
  const auto address = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&bound), length);
  if (!address) return std::string("the listener has no IPv4 or IPv6 address");

  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->context_ = Context{&board, std::move(cell)};
  server->address_ = *address;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
  if (listen.family() == AF_INET6) flags |= MHD_USE_IPv6;
  const int fd = listener.get();
  server->daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &on_request, &server->context_, MHD_OPTION_LISTEN_SOCKET, fd,
      MHD_OPTION_CONNECTION_LIMIT, limits.connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned>(limits.idle_timeout.count()), MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    // Some failure paths of libmicrohttpd close the socket it was given and
    // some do not: close it here only if it is still open.
    if (fcntl(fd, F_GETFD) == -1) listener.release();
    return "cannot start the HTTP server on " + address->to_string();
  }
  listener.release();  // MHD_stop_daemon closes it
  return server;
}

MetricsServer::~MetricsServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace dnsgate
