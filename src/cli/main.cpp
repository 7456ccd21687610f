// The dnsgate command line: a thin shell that loads the config, binds the
// sockets and hands them to the library's proxy loop.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <variant>

#include "cli/config_reloader.hpp"
#include "cli/report_command.hpp"
#include "cli/supervise_commands.hpp"
#include "cli/systemd.hpp"
#include "dnsgate/config.hpp"
#include "dnsgate/event_sink.hpp"
#include "dnsgate/metrics.hpp"
#include "dnsgate/proxy.hpp"
#include "dnsgate/socket.hpp"
#include "metrics/metrics_server.hpp"
#include "spawn/seccomp_policy.hpp"
#include "upstream/tls_client.hpp"

namespace {

// Exit codes of DESIGN.md §4.
constexpr int kExitOk = 0;
constexpr int kExitRuntimeFailure = 1;
constexpr int kExitBadUsage = 2;

// Written by the signal handler, read by the proxy loop: only a lock-free
// atomic is safe to touch from a handler.
std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free);

// Readable once a stop is requested, so the loop stops waiting at once
// rather than at its next periodic look at the flag.
int stop_wake_fd = -1;

extern "C" void request_stop(int /*signal*/) {
  stop_requested.store(true);
  if (stop_wake_fd >= 0) {
    const std::uint64_t one = 1;
    (void)!write(stop_wake_fd, &one, sizeof one);
  }
}

// No SA_RESTART, so a blocking call in progress returns with EINTR and the
// loop sees the flag at once. SA_RESETHAND makes a second identical signal
// fatal: an operator who presses Ctrl-C twice means it.
bool install_stop_handlers(std::string& error) {
  stop_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_wake_fd < 0) {
    error = std::string("eventfd: ") + std::strerror(errno);
    return false;
  }
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;
  for (const int signal_number : {SIGINT, SIGTERM}) {
    if (sigaction(signal_number, &action, nullptr) != 0) {
      error = std::strerror(errno);
      return false;
    }
  }
  // A closed stdout (events piped into a reader that exits) must surface as
  // a write error the sink counts, not kill the proxy.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  if (sigaction(SIGPIPE, &ignore, nullptr) != 0) {
    error = std::strerror(errno);
    return false;
  }
  return true;
}

// Logs go to stderr: stdout may be the event stream.
void set_up_logging() {
  auto logger = spdlog::stderr_color_mt("dnsgate");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z dnsgate %l: %v");
  spdlog::set_default_logger(std::move(logger));
}

// "stdout", the file's path, "nats nats://... subject ...", "http URL".
std::string events_destination(const dnsgate::DnsProxyConfig& config) {
  switch (config.events.sink) {
    case dnsgate::EventSinkKind::file:
      return config.events.path;
    case dnsgate::EventSinkKind::nats:
      return "nats (subject " + dnsgate::expand_cell(config.events.nats.subject, config.cell) + ")";
    case dnsgate::EventSinkKind::http:
      return "http " + config.events.http.url;
    case dnsgate::EventSinkKind::stdout_lines:
      break;
  }
  return "stdout";
}

extern "C" void request_reopen(int /*signal*/) {
  dnsgate::CloudEventSink::request_reopen();
}

// SIGUSR1: the file sink reopens its path (log rotation).
bool install_reopen_handler(std::string& error) {
  struct sigaction action {};
  action.sa_handler = request_reopen;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGUSR1, &action, nullptr) != 0) {
    error = std::strerror(errno);
    return false;
  }
  return true;
}

// Loads the config; on failure prints the one-line error and returns false.
bool load_or_report(const std::string& path, dnsgate::DnsProxyConfig& config) {
  auto result = dnsgate::load_config_file(path);
  if (auto* error = std::get_if<dnsgate::ConfigError>(&result)) {
    std::fprintf(stderr, "dnsgate: %s\n", error->describe(path).c_str());
    return false;
  }
  config = std::get<dnsgate::DnsProxyConfig>(std::move(result));
  // What the YAML cannot show: a CA file that holds no certificate, a
  // system store that is empty. Said now, in the config error format.
  for (std::size_t i = 0; i < config.resolvers.size(); ++i) {
    const std::string why = dnsgate::tls_setup_error(config.resolvers[i]);
    if (why.empty()) continue;
    const dnsgate::ConfigError error{fmt::format("dnsAuthority.resolvers[{}]", i), 0, why};
    std::fprintf(stderr, "dnsgate: %s\n", error.describe(path).c_str());
    return false;
  }
  return true;
}

int check_command(const std::string& config_path) {
  dnsgate::DnsProxyConfig config;
  if (!load_or_report(config_path, config)) return kExitBadUsage;
  std::printf("%s\n", dnsgate::summarize(config).c_str());
  return kExitOk;
}

// "127.0.0.1:53" or "dot://192.0.2.1:853, https://dns.example/dns-query (failover)".
std::string resolver_names(const dnsgate::DnsProxyConfig& config) {
  std::string names;
  for (const auto& resolver : config.resolvers) {
    if (!names.empty()) names += ", ";
    names += resolver.uri;
  }
  if (config.resolvers.size() > 1) {
    names += config.resolver_policy == dnsgate::ResolverPolicy::round_robin ? " (roundRobin)"
                                                                            : " (failover)";
  }
  return names;
}

int run_command(const std::string& config_path, bool seccomp) {
  dnsgate::DnsProxyConfig config;
  if (!load_or_report(config_path, config)) return kExitBadUsage;
  if (!config.netns.empty()) {
    std::fprintf(stderr,
                 "dnsgate: %s: netns is set (%s): this is a cell file for `dnsgate supervise`, "
                 "which binds inside the namespace\n",
                 config_path.c_str(), config.netns.c_str());
    return kExitBadUsage;
  }
  if (seccomp && (config.events.sink == dnsgate::EventSinkKind::nats ||
                  config.events.sink == dnsgate::EventSinkKind::http)) {
    // The spool creates, writes and deletes files, which the allow-list
    // forbids once the proxy serves (docs/running.md §11).
    std::fprintf(stderr,
                 "dnsgate: %s: --seccomp is not supported with events.sink nats or http yet "
                 "(the spool writes files); use sink: file, or run without --seccomp\n",
                 config_path.c_str());
    return kExitBadUsage;
  }
  // DNSGATE_IO tries a backend without editing the file (docs/running.md).
  std::optional<dnsgate::IoBackend> io_override;
  if (const char* forced = std::getenv("DNSGATE_IO"); forced != nullptr && *forced != '\0') {
    io_override = dnsgate::parse_io_backend(forced);
    if (!io_override) {
      std::fprintf(stderr, "dnsgate: DNSGATE_IO=%s: valid: auto, epoll, uring\n", forced);
      return kExitBadUsage;
    }
  }
  const dnsgate::IoBackend io = io_override.value_or(config.io);
  if (seccomp && io == dnsgate::IoBackend::uring) {
    std::fprintf(stderr,
                 "dnsgate: %s: io: uring is not supported with --seccomp; use auto or epoll\n",
                 config_path.c_str());
    return kExitBadUsage;
  }
  set_up_logging();
  if (io == dnsgate::IoBackend::uring && !seccomp) {
    if (const std::string why = dnsgate::io_uring_unavailable(); !why.empty()) {
      spdlog::error("io: uring: {}", why);
      return kExitRuntimeFailure;
    }
  }

  // Installed before the sockets are opened so that a stop requested during
  // start-up still ends in a clean exit with stats.
  std::string error;
  if (!install_stop_handlers(error) || !install_reopen_handler(error) ||
      !dnsgate::cli::ConfigReloader::install_signal_handler(error)) {
    spdlog::error("cannot install signal handlers: {}", error);
    return kExitRuntimeFailure;
  }

  // Under systemd: sd_notify when NOTIFY_SOCKET is set (watchdog pings
  // start now), and the listeners of socket activation when LISTEN_FDS names
  // this process; both do nothing otherwise (src/cli/systemd.hpp).
  dnsgate::cli::ServiceNotifier notifier(stop_requested);
  dnsgate::cli::ActivatedListeners activated;
  if (!dnsgate::cli::take_activated_listeners(config, activated, error)) {
    spdlog::error("socket activation: {}", error);
    return kExitRuntimeFailure;
  }
  if (activated.activated) {
    spdlog::info("listeners from systemd (socket activation): {}", activated.summary);
  }

  const dnsgate::Endpoint& upstream_address = config.resolvers.front().address;
  dnsgate::UniqueFd udp_listener;
  dnsgate::UniqueFd udp_upstream;
  dnsgate::UniqueFd tcp_listener;
  if (config.listen_udp) {
    udp_listener = activated.activated ? std::move(activated.udp)
                                       : dnsgate::bind_udp_listener(*config.listen_udp, error);
    if (!udp_listener.valid()) {
      spdlog::error("cannot open the UDP listener: {}", error);
      return kExitRuntimeFailure;
    }
    if (config.resolvers.front().protocol == dnsgate::UpstreamProtocol::do53_udp) {
      udp_upstream = dnsgate::open_upstream_udp(upstream_address, error);
      if (!udp_upstream.valid()) {
        spdlog::error("cannot open a socket to upstream {}: {}", upstream_address.to_string(),
                      error);
        return kExitRuntimeFailure;
      }
    }
  }
  if (config.listen_tcp) {
    tcp_listener = activated.activated ? std::move(activated.tcp)
                                       : dnsgate::bind_tcp_listener(*config.listen_tcp, error);
    if (!tcp_listener.valid()) {
      spdlog::error("cannot open the TCP listener: {}", error);
      return kExitRuntimeFailure;
    }
  }

  // The metrics endpoint (DESIGN §12) runs on its own thread, started
  // before seccomp so the filter covers it too.
  dnsgate::MetricsBoard board;
  std::unique_ptr<dnsgate::MetricsServer> metrics;
  if (config.metrics.listen) {
    auto started = dnsgate::MetricsServer::start(*config.metrics.listen, board, config.cell);
    if (auto* why = std::get_if<std::string>(&started)) {
      spdlog::error("metrics: {}", *why);
      return kExitRuntimeFailure;
    }
    metrics = std::move(std::get<std::unique_ptr<dnsgate::MetricsServer>>(started));
    spdlog::info("metrics on http://{}/metrics", metrics->address().to_string());
  }

  dnsgate::EventSinkOptions sink_options;
  sink_options.cell = config.cell;
  sink_options.kind = config.events.sink;
  sink_options.path = config.events.path;
  sink_options.delivery = config.events;
  sink_options.metrics = metrics ? &board : nullptr;
  sink_options.log = [](bool is_error, const std::string& line) {
    if (is_error) {
      spdlog::error("{}", line);
    } else {
      spdlog::info("{}", line);
    }
  };
  auto sink = dnsgate::CloudEventSink::open(sink_options, error);
  if (!sink) {
    spdlog::error("event sink: {}", error);
    return kExitRuntimeFailure;
  }

  std::string listening;
  if (config.listen_udp) listening += "udp " + config.listen_udp->to_string();
  if (config.listen_tcp) {
    listening += listening.empty() ? "tcp " : " and tcp ";
    listening += config.listen_tcp->to_string();
  }
  spdlog::info(
      "dnsgate {} cell {}: listening on {}, upstream {}, {} allowlist entries, "
      "events to {}",
      DNSGATE_VERSION, config.cell, listening, resolver_names(config),
      config.hostname_allowlist.size(), events_destination(config));
  if (config.hostname_allowlist.empty()) {
    spdlog::warn("the allowlist is empty: every query will be refused");
  }

  dnsgate::ConfigMailbox reloads;
  const dnsgate::cli::ConfigReloader reloader(config_path, config, reloads,
                                              metrics ? &board : nullptr);

  if (seccomp) {
    if (!dnsgate::spawn::install_seccomp_filter(error)) {
      spdlog::error("seccomp: {}", error);
      return kExitRuntimeFailure;
    }
    spdlog::info("seccomp: confined to the system calls of docs/running.md");
  }

  // Ready: the listeners accept, the sink is open, the loop starts next.
  notifier.ready(fmt::format("serving cell {} on {}", config.cell, listening));
  const dnsgate::DnsProxyStats stats = dnsgate::run_proxy(
      config, {udp_listener.get(), tcp_listener.get(), udp_upstream.get()}, *sink, stop_requested,
      {metrics ? &board : nullptr, &reloads, dnsgate::cli::log_io_backend, io_override, seccomp,
       stop_wake_fd});
  notifier.stopping();  // sent already if a signal stopped the loop
  dnsgate::cli::report_stop(*sink, stats);
  return kExitOk;
}

}  // namespace

int dnsgate_main(int argc, char** argv) {
  CLI::App app{"dnsgate: a DNS proxy that forwards only allowlisted names", "dnsgate"};
  app.set_version_flag("--version", std::string("dnsgate ") + DNSGATE_VERSION);
  app.require_subcommand(1);
  // Every line dnsgate writes to stderr says who wrote it.
  app.failure_message([](const CLI::App* /*app*/, const CLI::Error& error) {
    return std::string("dnsgate: ") + error.what() + "\nRun 'dnsgate --help' for usage.\n";
  });

  std::string config_path;
  CLI::App* run = app.add_subcommand(
      "run",
      "Run the proxy in the foreground until SIGINT or SIGTERM (SIGHUP reloads the config); "
      "stats go to stderr");
  run->add_option("-c,--config", config_path, "configuration file (YAML or JSON)")->required();
  bool run_seccomp = false;
  run->add_flag("--seccomp", run_seccomp,
                "confine the proxy to the system calls it needs once it serves, as supervise does "
                "(docs/running.md)");
  CLI::App* check =
      app.add_subcommand("check", "Validate a configuration file and print a one-line summary");
  check->add_option("-c,--config", config_path, "configuration file (YAML or JSON)")->required();
  CLI::App* version = app.add_subcommand("version", "Print the version");
  std::string cells_dir;
  std::string proxy_binary;
  CLI::App* supervise = app.add_subcommand(
      "supervise",
      "Run one unprivileged proxy per cell file in DIR, each in its cell's network namespace "
      "(root; docs/running.md)");
  supervise->add_option("--cells", cells_dir, "folder of cell files (*.yaml)")->required();
  supervise->add_option("--binary", proxy_binary,
                        "the dnsgate the proxies run (default: this one)");
  // Started by `supervise` for each cell, with the descriptors it passes.
  std::string cell_name;
  dnsgate::spawn::CellDescriptors cell_fds;
  CLI::App* cell = app.add_subcommand("cell", "(internal) one cell's proxy, started by supervise");
  cell->group("");
  cell->add_option("--name", cell_name)->required();
  cell->add_option("--config-fd", cell_fds.config)->required();
  cell->add_option("--ready-fd", cell_fds.ready);
  cell->add_option("--udp-fd", cell_fds.udp);
  cell->add_option("--tcp-fd", cell_fds.tcp);
  cell->add_option("--events-fd", cell_fds.events);
  cell->add_option("--event-ring-fd", cell_fds.event_ring);
  dnsgate::cli::ReportArgs report_args;
  CLI::App* report = dnsgate::cli::add_report_command(app, report_args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // CLI11's own exit codes (106 for a missing option, ...) collapse onto
    // the one code for bad usage; --help and --version stay successful.
    const int code = app.exit(error);
    return code == 0 ? kExitOk : kExitBadUsage;
  }

  try {
    if (run->parsed()) return run_command(config_path, run_seccomp);
    if (check->parsed()) return check_command(config_path);
    if (supervise->parsed()) return dnsgate::cli::supervise_command(cells_dir, proxy_binary);
    if (report->parsed()) return dnsgate::cli::report_command(report_args);
    if (cell->parsed()) {
      std::string error;
      if (!install_stop_handlers(error)) {
        std::fprintf(stderr, "dnsgate: cannot install signal handlers: %s\n", error.c_str());
        return kExitRuntimeFailure;
      }
      return dnsgate::cli::cell_command(cell_name, cell_fds, stop_requested, stop_wake_fd);
    }
    if (version->parsed()) {
      std::printf("dnsgate %s\n", DNSGATE_VERSION);
      return kExitOk;
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "dnsgate: unexpected error: %s\n", error.what());
    return kExitRuntimeFailure;
  } catch (...) {
    std::fprintf(stderr, "dnsgate: unexpected error\n");
    return kExitRuntimeFailure;
  }
  return kExitBadUsage;
}

int main(int argc, char** argv) {
  // Building the command-line parser allocates; nothing may escape main.
  try {
    return dnsgate_main(argc, argv);
  } catch (...) {
    std::fprintf(stderr, "dnsgate: unexpected error\n");
    return kExitRuntimeFailure;
  }
}
