// The operator's HTTP endpoint (DESIGN.md §12, docs/metrics.md): Prometheus
// text at /metrics, liveness at /healthz, readiness at /readyz. It runs on
// libmicrohttpd's own thread and only reads the MetricsBoard's atomics, so
// a scrape costs the DNS loop nothing.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "dnsgate/endpoint.hpp"
#include "dnsgate/metrics.hpp"

struct MHD_Daemon;

namespace dnsgate {

// Prometheus text exposition (format 0.0.4) of everything on the board;
// every sample carries the label cell="<cell>".
std::string render_metrics(const MetricsBoard& board, std::string_view cell);

// What /healthz and /readyz answer: the status code and a one-line body.
struct ProbeAnswer {
  unsigned status = 200;
  std::string body;
};
ProbeAnswer health_answer(const MetricsBoard& board, std::chrono::steady_clock::time_point now);
ProbeAnswer ready_answer(const MetricsBoard& board);

// Bounds on what scrapers may hold (docs/metrics.md "Limits").
struct MetricsServerLimits {
  // Connections served at once; past it new ones are closed at accept.
  // A scrape is one short request: a few are plenty, and the bound keeps
  // a flood of sockets from costing the process more than a few KB each.
  unsigned connection_limit = 32;
  // A connection idle this long (a stuck scraper, half a request sent) is
  // closed, so it cannot hold a slot forever.
  std::chrono::seconds idle_timeout{5};
};

class MetricsServer {
 public:
  // Binds `listen` (IPv4 or IPv6; port 0 lets the kernel choose, see
  // address()) and serves from libmicrohttpd's own thread. The error text
  // on failure says which step failed and why (e.g. address in use). The
  // board must outlive the server.
  static std::variant<std::unique_ptr<MetricsServer>, std::string> start(
      const Endpoint& listen, const MetricsBoard& board, std::string cell,
      const MetricsServerLimits& limits = {});

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  // Stops the thread and closes every connection and the listener.
  ~MetricsServer();

  // The address bound, with the port the kernel chose for port 0.
  const Endpoint& address() const noexcept { return address_; }

  // For libmicrohttpd's callback only.
  struct Context {
    const MetricsBoard* board;
    std::string cell;
  };

 private:
  MetricsServer() = default;

  Context context_{};
  Endpoint address_;
  MHD_Daemon* daemon_ = nullptr;
};

}  // namespace dnsgate
