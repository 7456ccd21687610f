// Per-query events: the compact record the DNS path fills in, the emitter
// interface it hands records to, and the CloudEvents formatting.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "dnsgate/endpoint.hpp"
#include "dnsgate/name.hpp"
#include "dnsgate/parser.hpp"
#include "dnsgate/upstream_error.hpp"

namespace dnsgate {

enum class QueryAction : std::uint8_t { forward, refuse, drop, servfail };

enum class ReasonCode : std::uint8_t {
  allowed,               // forwarded, the upstream's answer relayed
  not_allowlisted,       // denied by policy, REFUSED (or NXDOMAIN) sent
  malformed_query,       // the parser rejected it, nothing sent
  unsupported_opcode,    // opcode other than QUERY, NOTIMP (or BADVERS) sent
  upstream_timeout,      // SERVFAIL + EDE 22
  upstream_error,        // SERVFAIL + EDE 23
  overloaded,            // in-flight table full, SERVFAIL
  shutdown,              // still in flight when the proxy stopped, nothing sent
  client_gone,           // the workload's TCP connection closed before its answer
  dnssec_bogus,          // validation failed (DESIGN §9): SERVFAIL + EDE 6
  dnssec_indeterminate,  // the chain of trust could not be fetched: SERVFAIL + EDE 5
};

// What DNSSEC validation (DESIGN §9) concluded; `unchecked` when it did not
// run: validation off, the workload set CD, or dnsgate answered itself.
enum class DnssecState : std::uint8_t { unchecked, secure, insecure, bogus, indeterminate };

enum class Transport : std::uint8_t { udp, tcp };

std::string_view to_string(QueryAction action) noexcept;
std::string_view to_string(ReasonCode reason) noexcept;
std::string_view to_string(Transport transport) noexcept;
std::string_view to_string(DnssecState state) noexcept;

// Everything one event says, in a fixed-size value the DNS path fills in
// without allocating; the JSON is built later, off the DNS path.
struct QueryRecord {
  std::chrono::system_clock::time_point received_at{};
  std::uint32_t latency_us = 0;
  Transport transport = Transport::udp;
  Endpoint client;
  std::uint32_t size = 0;  // octets of the query as received

  bool has_transaction_id = false;   // false only when fewer than 2 octets arrived
  std::uint16_t transaction_id = 0;  // the workload's id

  bool has_question = false;  // false when the parser rejected the packet
  QueryName qname;
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;

  QueryAction action = QueryAction::drop;
  ReasonCode reason = ReasonCode::malformed_query;
  ParseError parse_error = ParseError::too_short;  // meaningful for malformed_query only
  std::uint8_t opcode = 0;                         // meaningful for unsupported_opcode only

  bool has_rcode = false;  // false when nothing was sent to the workload
  std::uint8_t rcode = 0;  // what the workload received; 16 for BADVERS
  std::uint16_t answer_count = 0;

  bool has_upstream = false;  // true when the query was sent upstream
  Endpoint upstream;
  // How events name the resolver ("dot://127.0.0.1:853", a DoH URL); when
  // empty, `upstream` is printed. Points at text that lives as long as the
  // process (ResolverConfig::uri).
  std::string_view upstream_uri;
  UpstreamError upstream_error;  // why the resolver failed, for upstream_error
  DnssecState dnssec = DnssecState::unchecked;
  // The allowlist in force when the query was decided (DESIGN §12: a short
  // hash, printed as 12 hex digits; policy_version_of in config.hpp).
  std::uint64_t policy_version = 0;
};

// The sink of per-query events. The DNS path calls emit() once per query;
// it must never block. It returns false when the event could not be accepted
// (queue full, sink failed), which the proxy counts as `eventsDropped`.
class DnsQueryEmitter {
 public:
  DnsQueryEmitter() = default;
  DnsQueryEmitter(const DnsQueryEmitter&) = delete;
  DnsQueryEmitter& operator=(const DnsQueryEmitter&) = delete;
  virtual ~DnsQueryEmitter() = default;
  virtual bool emit(const QueryRecord& record) noexcept = 0;

  // Called by the DNS loop once per turn, before it takes more queries. A
  // sink whose queue is filling because its writer gets too little CPU (the
  // loop keeps a CPU they share busy) blocks here, for at most `limit`,
  // until the writer has caught up, and returns true: the proxy slows down
  // rather than lose audit records. A sink stalled on its output (a reader
  // that stopped reading) does not wait: waiting would not help, it drops.
  virtual bool wait_while_backlogged(std::chrono::milliseconds limit) noexcept {
    (void)limit;
    return false;
  }

  // Events emit() accepted that were lost afterwards (a delivering sink's
  // full spool); the proxy adds them to `eventsDropped`.
  virtual std::uint64_t dropped_after_accept() const noexcept { return 0; }
};

inline constexpr std::string_view kEventType = "dev.dnsgate.dns_query";

// Random RFC 9562 version 4 UUIDs, lower-case hex, for event ids.
//
// Neither copyable nor movable: a copy would repeat the original's ids.
class EventIdGenerator {
 public:
  static constexpr std::size_t kLength = 36;

  // The generator's whole state comes from getrandom(2), so two processes,
  // two restarts or two generators of one process do not share a sequence.
  EventIdGenerator() noexcept;
  EventIdGenerator(const EventIdGenerator&) = delete;
  EventIdGenerator& operator=(const EventIdGenerator&) = delete;

  // Writes exactly kLength characters at `out`, no terminating NUL.
  void write(char* out) noexcept;
  std::string next();

 private:
  std::mt19937_64 bits_;
};

// Formats the events of one sink: what is the same for every event of the
// sink (the cell, `source`, the upstream's address, the time down to the
// second) is formatted once and copied after that. One writer thread only.
class CloudEventFormatter {
 public:
  explicit CloudEventFormatter(std::string_view cell);
  CloudEventFormatter(const CloudEventFormatter&) = delete;
  CloudEventFormatter& operator=(const CloudEventFormatter&) = delete;

  // One CloudEvents 1.0 structured-mode JSON object on one line (no
  // newline) appended to `out`, with a fresh random UUID v4 as its id.
  // Throws only std::bad_alloc, and leaves `out` as it was when it does.
  void append(std::string& out, const QueryRecord& record);
  // The same with a given id, which must be unique per event.
  void append(std::string& out, const QueryRecord& record, std::string_view event_id);

 private:
  // inet_ntop's text for the last IPv6 address seen in one field: a client
  // usually sends many queries, and one inet_ntop costs about as much as
  // formatting the rest of the event.
  struct Ipv6Text {
    bool valid = false;
    std::array<std::uint8_t, 16> address{};
    std::array<char, 48> text{};
    std::size_t size = 0;
  };
  struct EndpointText {
    bool valid = false;
    Endpoint endpoint;
    std::array<char, 64> text{};
    std::size_t size = 0;
  };

  void append_event(std::string& out, const QueryRecord& record, const std::string_view* event_id);
  char* write_endpoint(char* at, const Endpoint& endpoint, Ipv6Text& cache) noexcept;
  char* write_time(char* at, std::chrono::system_clock::time_point time) noexcept;

  std::string after_id_;          // `","source":"dnsgate/cells/<cell>",...,"time":"`
  std::string before_transport_;  // `,"data":{"cell":"<cell>","transport":"`

  bool has_second_ = false;
  std::chrono::sys_seconds second_{};
  std::array<char, 48> second_text_{};  // `YYYY-MM-DDTHH:MM:SS`
  std::size_t second_size_ = 0;

  Ipv6Text client_ipv6_;
  Ipv6Text upstream_ipv6_;
  EndpointText upstream_;

  // Seeded on the first event that needs an id: a formatter given its ids
  // never pays for getrandom(2).
  std::optional<EventIdGenerator> ids_;
};

// One-off forms of CloudEventFormatter::append, for tests and tools: each
// call formats the cell again. `event_id` must be unique per event.
std::string format_cloud_event(const QueryRecord& record, std::string_view cell,
                               std::string_view event_id);
// The same line appended to `out`, so a writer can batch lines in one buffer.
void append_cloud_event(std::string& out, const QueryRecord& record, std::string_view cell,
                        std::string_view event_id);

// A random RFC 9562 version 4 UUID, lower-case hex, from a generator per thread.
std::string random_uuid_v4();

}  // namespace dnsgate
