#include "dnsgate/upstream_error.hpp"

#include <charconv>
#include <cstring>

namespace dnsgate {

std::string_view to_string(UpstreamErrorKind kind) noexcept {
  switch (kind) {
    case UpstreamErrorKind::none:
      return "none";
    case UpstreamErrorKind::connect_refused:
      return "connect_refused";
    case UpstreamErrorKind::connect_failed:
      return "connect_failed";
    case UpstreamErrorKind::connect_timeout:
      return "connect_timeout";
    case UpstreamErrorKind::connection_closed:
      return "connection_closed";
    case UpstreamErrorKind::send_failed:
      return "send_failed";
    case UpstreamErrorKind::tls_handshake:
      return "tls_handshake";
    case UpstreamErrorKind::tls_certificate:
      return "tls_certificate";
    case UpstreamErrorKind::tls_pin_mismatch:
      return "tls_pin_mismatch";
    case UpstreamErrorKind::http_status:
      return "http_status";
    case UpstreamErrorKind::http_content_type:
      return "http_content_type";
    case UpstreamErrorKind::http_stream_reset:
      return "http_stream_reset";
    case UpstreamErrorKind::http_goaway:
      return "http_goaway";
    case UpstreamErrorKind::http_protocol_error:
      return "http_protocol_error";
    case UpstreamErrorKind::doq_protocol_error:
      return "doq_protocol_error";
    case UpstreamErrorKind::doq_stream_reset:
      return "doq_stream_reset";
    case UpstreamErrorKind::answer_too_large:
      return "answer_too_large";
    case UpstreamErrorKind::answer_malformed:
      return "answer_malformed";
  }
  return "unknown";
}

std::size_t write_upstream_error(const UpstreamError& error, char* out) noexcept {
  const std::string_view word = to_string(error.kind);
  std::memcpy(out, word.data(), word.size());
  std::size_t size = word.size();
  if (error.kind == UpstreamErrorKind::http_status) {
    out[size++] = '_';
    size = static_cast<std::size_t>(
        std::to_chars(out + size, out + kMaxUpstreamErrorText, error.detail).ptr - out);
  }
  return size;
}

}  // namespace dnsgate
