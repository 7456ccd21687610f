// The doh upstream: DNS over HTTPS (RFC 8484), HTTP/2 POST, on nghttp2.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "upstream/tls_stream.hpp"

namespace dnsgate {

// One HTTP/2 connection (ALPN h2), one stream per query: POST of the
// padded query with id 0 (RFC 8484 4.1) as application/dns-message. An
// answer counts only with status 200 and content type
// application/dns-message; any other status, type or a reset stream fails
// that query alone. GOAWAY ends the connection once read; its unanswered
// queries go on a new one. The connection's life is TlsStreamUpstream's.
class DohUpstream final : public TlsStreamUpstream {
 public:
  DohUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
              std::chrono::milliseconds timeout, UpstreamListener& listener);
  ~DohUpstream() override;

 private:
  struct Stream {
    std::uint16_t upstream_id = 0;
    std::vector<std::uint8_t> body;  // the request, then the answer
    std::size_t body_sent = 0;
    bool answer_started = false;
    int status = 0;
    bool dns_message = false;  // content-type: application/dns-message
    bool too_large = false;
  };

  static UpstreamError outcome(const Stream& stream, std::uint32_t error_code) noexcept;

  void on_established() override;
  void submit(std::span<const std::uint8_t> query) override;
  UpstreamError consume(std::span<const std::uint8_t> bytes, SteadyTime now) override;
  void on_cancel(std::uint16_t upstream_id) noexcept override;
  void on_closed() noexcept override;
  bool wants_write() const noexcept override;
  void produce() override;

  // nghttp2's callbacks, as members.
  ssize_t read_body(std::int32_t stream_id, std::uint8_t* out, std::size_t length,
                    std::uint32_t* flags);
  int on_header(std::int32_t stream_id, std::string_view name, std::string_view value);
  int on_data(std::int32_t stream_id, const std::uint8_t* data, std::size_t length);
  int on_stream_close(std::int32_t stream_id, std::uint32_t error_code);
  int on_frame(const nghttp2_frame& frame);

  std::string authority_;
  std::string path_;
  nghttp2_session* http_ = nullptr;
  std::unordered_map<std::int32_t, Stream> streams_;
  std::unordered_map<std::uint16_t, std::int32_t> stream_of_;
  SteadyTime now_{};  // the time of the read being consumed, for callbacks
  bool protocol_error_ = false;
};

}  // namespace dnsgate
