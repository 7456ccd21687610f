// DnsProxyConfig and the YAML loader that fills it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dnsgate/allowlist.hpp"
#include "dnsgate/endpoint.hpp"
#include "dnsgate/response.hpp"

namespace dnsgate {

enum class UpstreamProtocol { do53_udp, do53_tcp, dot, doh, doq };

// One entry of dnsAuthority.resolvers (DESIGN.md §8).
struct ResolverConfig {
  UpstreamProtocol protocol = UpstreamProtocol::do53_udp;
  Endpoint address;                    // where to connect (for doh: `address`, else the URL's host)
  std::string tls_server_name;         // SNI and the name the certificate must carry; empty: its IP
  std::string ca_file;                 // empty: the system's CA store
  std::vector<std::string> spki_pins;  // base64 SHA-256 of a SubjectPublicKeyInfo (RFC 7858 4.2)
  std::string url;                     // doh: https://host[:port]/path
  std::string url_host;                // doh: the URL's host, the :authority of each request
  std::string url_path;                // doh: the URL's path (and query), the :path of each request
  // How events name it: "127.0.0.1:53" for Do53, "dot://127.0.0.1:853",
  // "doq://...", the URL for doh. Interned: valid for the whole process.
  std::string_view uri;
};

// How queries are spread over several resolvers.
enum class ResolverPolicy { failover, round_robin };

// The most resolvers one cell may name.
inline constexpr std::size_t kMaxResolvers = 16;

enum class EventSinkKind { stdout_lines, file, nats, http };

// events.nats (DESIGN.md §11, docs/events.md "Delivery"): JetStream.
struct NatsSinkConfig {
  std::vector<std::string> urls;                  // nats://host:port, one or more
  std::string subject = "dnsgate.events.{cell}";  // {cell} replaced by the cell id
  std::string stream;                             // the stream that must capture the subject
};

// events.http: the CloudEvents HTTP binding, batched mode.
struct HttpSinkConfig {
  std::string url;  // http://host[:port]/path (or https)
  std::size_t batch_max = 500;
};

inline constexpr std::size_t kMaxHttpBatch = 10000;

// events.spool: events not yet acknowledged by a nats or http sink.
struct SpoolConfig {
  std::string dir = "/var/lib/dnsgate/spool/{cell}";  // {cell} replaced
  std::uint64_t max_bytes = 1ULL << 30;               // past it, the newest are dropped
};

inline constexpr std::uint64_t kMinSpoolBytes = 1ULL << 20;

struct EventsConfig {
  EventSinkKind sink = EventSinkKind::stdout_lines;
  std::string path;  // for EventSinkKind::file
  NatsSinkConfig nats;
  HttpSinkConfig http;
  SpoolConfig spool;
};

// DNSSEC validation (DESIGN.md §9, docs/dnssec.md).
enum class DnssecMode { off, validate };

inline constexpr std::size_t kMaxKeyCacheEntries = 1000000;

struct DnssecConfig {
  DnssecMode mode = DnssecMode::off;
  // DS or DNSKEY records in presentation form, as written (each checked by
  // the loader); empty: the root's, from Debian's dns-root-data.
  std::vector<std::string> trust_anchors;
  std::size_t key_cache_entries = 10000;  // validated DNSKEY/DS RRsets kept
};

// The operator's endpoint (DESIGN.md §12, docs/metrics.md): Prometheus
// text at /metrics, /healthz and /readyz; none when `listen` is empty.
struct MetricsConfig {
  std::optional<Endpoint> listen;
};

// Limits of the TCP listener (DESIGN.md §3 `tcp:`), each with its default.
struct TcpLimits {
  std::size_t max_connections = 512;              // past it, new connections are closed at once
  std::size_t max_inflight_per_connection = 100;  // past it, the connection is not read
  std::chrono::milliseconds idle_timeout{10000};  // nothing in flight, no frame begun
  std::chrono::milliseconds frame_timeout{5000};  // a begun frame must end within this
};

// Limits the config accepts; documented in docs/configuration.md.
inline constexpr std::size_t kMaxInflightLimit = 65535;  // one 16-bit id space per upstream socket
inline constexpr std::chrono::milliseconds kMaxUpstreamTimeout{60000};

// How the loop does its UDP I/O (docs/configuration.md, `io`): epoll, the
// default (it took less CPU per query than io_uring in make bench);
// io_uring where the kernel allows it, else epoll (automatic); or io_uring
// only, where a start that cannot have it fails.
enum class IoBackend : std::uint8_t { automatic, epoll, uring };
std::string_view io_backend_name(IoBackend backend) noexcept;
// "auto", "epoll", "uring"; nullopt for anything else.
std::optional<IoBackend> parse_io_backend(std::string_view text) noexcept;

// Options with defaults: a caller sets only what it needs.
struct DnsProxyConfig {
  std::string cell = "default";
  std::optional<Endpoint> listen_udp;
  std::optional<Endpoint> listen_tcp;
  std::vector<std::string> hostname_allowlist;  // the entries as written
  Allowlist allowlist;                          // compiled from hostname_allowlist
  // A short hash of the allowlist in force (DESIGN.md §12), from
  // policy_version_of(hostname_allowlist); events carry it. 0: not computed
  // (a config built in code), the loop computes it.
  std::uint64_t policy_version = 0;
  std::vector<ResolverConfig> resolvers;  // at least one, at most kMaxResolvers
  ResolverPolicy resolver_policy = ResolverPolicy::failover;
  std::chrono::milliseconds upstream_timeout{2000};
  std::size_t max_inflight = 10000;
  Rcode deny_rcode = Rcode::refused;  // refused or nxdomain
  EventsConfig events;
  TcpLimits tcp;
  DnssecConfig dnssec;
  MetricsConfig metrics;
  IoBackend io = IoBackend::epoll;
  // For `dnsgate supervise` (DESIGN.md §10, docs/running.md): the cell's
  // network namespace, a name under /run/netns/ or a path; empty: none
  // (`dnsgate run` refuses a config that names one). The user the proxy
  // runs as.
  std::string netns;
  std::string user = "nobody";
};

// The allowlist's version: the first 48 bits of a SHA-256 over the entries,
// lower-cased, without a trailing dot, sorted and deduplicated (reordering
// the file does not change it). Printed as 12 hex digits (format_policy_version).
std::uint64_t policy_version_of(const std::vector<std::string>& entries);
std::string format_policy_version(std::uint64_t version);

// `text` with every "{cell}" replaced by `cell` (events.nats.subject,
// events.spool.dir).
std::string expand_cell(std::string_view text, std::string_view cell);

// What is wrong with a config file: the field's path as written in the file
// (e.g. "dnsAuthority.hostnameAllowlist[2]"), its 1-based line (0 if none
// applies, e.g. an unreadable file) and a message for an operator.
struct ConfigError {
  std::string field;
  int line = 0;
  std::string message;

  // "config.yaml:7: dnsAuthority.hostnameAllowlist[2]: <message>"
  std::string describe(std::string_view file_name) const;
};

using ConfigResult = std::variant<DnsProxyConfig, ConfigError>;

// Parses YAML (or JSON) text; unknown fields are errors.
ConfigResult parse_config(std::string_view text);
ConfigResult load_config_file(const std::string& path);

// One line for `dnsgate check`: cell, listener, upstream, entry counts.
std::string summarize(const DnsProxyConfig& config);

}  // namespace dnsgate
