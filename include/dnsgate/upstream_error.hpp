// Why an upstream resolver did not answer a query: the words of an event's
// `data.upstreamError` (docs/events.md lists every one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dnsgate {

enum class UpstreamErrorKind : std::uint8_t {
  none,
  connect_refused,      // nobody listens there (TCP RST, ICMP port unreachable)
  connect_failed,       // any other failure to reach the resolver
  connect_timeout,      // the connection or handshake did not complete in time
  connection_closed,    // the resolver closed a connection with queries on it
  send_failed,          // the kernel would not send the query
  tls_handshake,        // TLS (or QUIC's TLS) handshake failed
  tls_certificate,      // the certificate does not chain, has expired, or names another host
  tls_pin_mismatch,     // no certificate key matches a configured SPKI pin
  http_status,          // DoH status other than 200 (`http_status_<code>`)
  http_content_type,    // DoH answer not application/dns-message
  http_stream_reset,    // DoH stream reset by the server
  http_goaway,          // DoH connection going away before the query was handled
  http_protocol_error,  // HTTP/2 framing the client could not follow
  doq_protocol_error,   // RFC 9250 violated (a non-zero id, a bad frame)
  doq_stream_reset,     // DoQ stream reset by the server
  answer_too_large,     // an answer longer than a DNS message may be
  answer_malformed,     // a length-framed answer that is not a DNS message
};

struct UpstreamError {
  UpstreamErrorKind kind = UpstreamErrorKind::none;
  std::uint16_t detail = 0;  // the HTTP status for http_status

  explicit operator bool() const noexcept { return kind != UpstreamErrorKind::none; }
  friend bool operator==(const UpstreamError&, const UpstreamError&) = default;
};

// The word for `kind` (for http_status without its code).
std::string_view to_string(UpstreamErrorKind kind) noexcept;

// Writes the event word ("tls_certificate", "http_status_503") to `out`,
// which must hold at least kMaxUpstreamErrorText characters; returns its length.
inline constexpr std::size_t kMaxUpstreamErrorText = 32;
std::size_t write_upstream_error(const UpstreamError& error, char* out) noexcept;

}  // namespace dnsgate
