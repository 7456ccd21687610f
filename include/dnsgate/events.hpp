// Per-query events: the compact record the DNS path fills in, the emitter
// interface it hands records to, and the CloudEvents formatting.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "dnsgate/endpoint.hpp"
#include "dnsgate/name.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

enum class QueryAction : std::uint8_t { forward, refuse, drop, servfail };

enum class ReasonCode : std::uint8_t {
  allowed,             // forwarded, the upstream's answer relayed
  not_allowlisted,     // denied by policy, REFUSED (or NXDOMAIN) sent
  malformed_query,     // the parser rejected it, nothing sent
  unsupported_opcode,  // opcode other than QUERY, NOTIMP sent
  upstream_timeout,    // SERVFAIL + EDE 22
  upstream_error,      // SERVFAIL + EDE 23
  overloaded,          // in-flight table full, SERVFAIL
  shutdown,            // still in flight when the proxy stopped, nothing sent
  client_gone,         // the workload's TCP connection closed before its answer
};

enum class Transport : std::uint8_t { udp, tcp };

std::string_view to_string(QueryAction action) noexcept;
std::string_view to_string(ReasonCode reason) noexcept;
std::string_view to_string(Transport transport) noexcept;

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

  bool has_rcode = false;  // false when nothing was sent to the workload
  std::uint8_t rcode = 0;  // what the workload received
  std::uint16_t answer_count = 0;

  bool has_upstream = false;  // true when the query was sent upstream
  Endpoint upstream;
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
  // loop keeps the CPU they share busy) blocks here, for at most `limit`,
  // until the writer has caught up, and returns true: the proxy slows down
  // rather than lose audit records. A sink stalled on its output (a reader
  // that stopped reading) does not wait: waiting would not help, it drops.
  virtual bool wait_while_backlogged(std::chrono::milliseconds limit) noexcept {
    (void)limit;
    return false;
  }
};

inline constexpr std::string_view kEventType = "dev.dnsgate.dns_query";

// One CloudEvents 1.0 structured-mode JSON object on one line (no newline).
// `event_id` must be unique per event (the sinks use a random UUID v4).
std::string format_cloud_event(const QueryRecord& record, std::string_view cell,
                               std::string_view event_id);
// The same line appended to `out`, so a writer can batch lines in one buffer.
void append_cloud_event(std::string& out, const QueryRecord& record, std::string_view cell,
                        std::string_view event_id);

// A random RFC 4122 version 4 UUID, lower-case hex.
std::string random_uuid_v4();

}  // namespace dnsgate
