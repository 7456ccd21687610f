// `dnsgate supervise` and the hidden `dnsgate cell` it starts for each cell
// (DESIGN.md §10, docs/running.md).
#include "cli/supervise_commands.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <variant>

#include "dnsgate/config.hpp"
#include "dnsgate/event_sink.hpp"
#include "dnsgate/proxy.hpp"
#include "dnsgate/socket.hpp"
#include "spawn/seccomp_policy.hpp"

namespace dnsgate::cli {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntimeFailure = 1;
constexpr int kExitBadUsage = 2;

std::string read_all(int fd) {
  std::string text;
  char buffer[8192];
  lseek(fd, 0, SEEK_SET);
  while (true) {
    const ssize_t got = read(fd, buffer, sizeof buffer);
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  return text;
}

}  // namespace

int supervise_command(const std::string& cells_dir, const std::string& binary) {
  if (geteuid() != 0) {
    std::fprintf(stderr,
                 "dnsgate: supervise needs root: it enters network namespaces, binds the cells' "
                 "sockets and starts each proxy as its cell's user\n");
    return kExitBadUsage;
  }
  auto logger = spdlog::stderr_color_mt("supervise");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z dnsgate supervise %l: %v");
  spdlog::set_default_logger(std::move(logger));
  spawn::SupervisorOptions options;
  options.cells_dir = cells_dir;
  char resolved[4096];
  const ssize_t length = readlink("/proc/self/exe", resolved, sizeof resolved - 1);
  options.binary = !binary.empty() ? binary
                   : length > 0    ? std::string(resolved, static_cast<std::size_t>(length))
                                   : std::string("dnsgate");
  return spawn::run_supervisor(options);
}

int cell_command(const std::string& name, const spawn::CellDescriptors& fds,
                 const std::atomic<bool>& stop_requested, int stop_wake_fd) {
  auto logger = spdlog::stderr_color_mt("dnsgate");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z dnsgate %l: %v");
  spdlog::set_default_logger(std::move(logger));

  auto parsed = parse_config(read_all(fds.config));
  close(fds.config);
  if (auto* error = std::get_if<ConfigError>(&parsed)) {
    std::fprintf(stderr, "dnsgate: %s\n", error->describe(name).c_str());
    return kExitBadUsage;
  }
  const DnsProxyConfig config = std::get<DnsProxyConfig>(std::move(parsed));

  // Inside the cell's namespace already: the upstream socket is the cell's.
  std::string error;
  UniqueFd udp_upstream;
  if (fds.udp >= 0 && config.resolvers.front().protocol == UpstreamProtocol::do53_udp) {
    udp_upstream = open_upstream_udp(config.resolvers.front().address, error);
    if (!udp_upstream.valid()) {
      spdlog::error("cannot open a socket to upstream {}: {}",
                    config.resolvers.front().address.to_string(), error);
      return kExitRuntimeFailure;
    }
  }
  EventSinkOptions sink_options;
  sink_options.cell = config.cell;
  sink_options.kind = config.events.sink;
  sink_options.path = config.events.path;
  sink_options.fd = fds.events;
  sink_options.ring_fd = fds.event_ring;
  auto sink = CloudEventSink::open(sink_options, error);
  if (!sink) {
    spdlog::error("event sink: {}", error);
    return kExitRuntimeFailure;
  }

  if (!spawn::install_seccomp_filter(error)) {
    spdlog::error("seccomp: {}", error);
    return kExitRuntimeFailure;
  }
  // For tests of the filter itself (docs/running.md): dies by SIGSYS here.
  if (const char* probe = std::getenv("DNSGATE_SECCOMP_PROBE"); probe && probe[0] == '1') {
    spawn::make_forbidden_call();
    spdlog::error("DNSGATE_SECCOMP_PROBE: the forbidden call returned: no filter in place");
  }
  spdlog::info("dnsgate {} cell {} ({}): serving as uid {}, seccomp on", DNSGATE_VERSION,
               config.cell, name, getuid());
  if (fds.ready >= 0) {
    const char byte = 1;
    (void)!write(fds.ready, &byte, 1);
    close(fds.ready);
  }
  ProxyHooks hooks;
  hooks.io_chosen = log_io_backend;
  hooks.under_seccomp = true;
  hooks.wake_fd = stop_wake_fd;
  const DnsProxyStats stats =
      run_proxy(config, {fds.udp, fds.tcp, udp_upstream.get()}, *sink, stop_requested, hooks);
  report_stop(*sink, stats);
  return kExitOk;
}

void log_io_backend(IoBackend backend, std::string_view why) {
  if (why.empty()) {
    spdlog::info("io: {}", io_backend_name(backend));
  } else {
    spdlog::info("io: {} ({})", io_backend_name(backend), why);
  }
}

void report_stop(CloudEventSink& sink, const DnsProxyStats& stats) {
  sink.close();
  if (sink.write_errors() > 0) {
    spdlog::warn("{} events could not be written to the sink", sink.write_errors());
  }
  spdlog::info("stopped");
  spdlog::default_logger()->flush();
  DnsProxyStats totals = stats;
  totals.events_dropped += sink.dropped_after_accept();
  std::string json = totals.to_json();
  if (const auto delivery = sink.delivery()) {
    // A delivering sink's figures (DESIGN §11) as one more object.
    json.pop_back();
    json += fmt::format(
        R"(,"delivery":{{"sink":"{}","delivered":{},"spooled":{},"spoolBytes":{},"backlog":{},"retried":{},)"
        R"("rejected":{},"dropped":{},"corruptSkipped":{}}}}})",
        delivery->sink, delivery->delivered, delivery->spooled, delivery->spool_bytes,
        delivery->backlog, delivery->retried, delivery->rejected, delivery->dropped,
        delivery->corrupt_skipped);
  }
  std::fprintf(stderr, "%s\n", json.c_str());
  std::fflush(stderr);
}

}  // namespace dnsgate::cli
