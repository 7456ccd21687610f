// The dot upstream: DNS over TLS (RFC 7858) on one pipelined connection.
#pragma once

#include "net/frame_reader.hpp"
#include "upstream/tls_stream.hpp"

namespace dnsgate {

// Queries are written back to back, each with its 2-octet length (padded,
// RFC 8467); answers are matched by id in any order (RFC 7766). The
// connection's life is TlsStreamUpstream's.
class DotUpstream final : public TlsStreamUpstream {
 public:
  DotUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
              std::chrono::milliseconds timeout, UpstreamListener& listener)
      : TlsStreamUpstream(resolver, std::move(tls), timeout, listener, "") {}

 private:
  void on_established() override {}
  void submit(std::span<const std::uint8_t> query) override;
  UpstreamError consume(std::span<const std::uint8_t> bytes, SteadyTime now) override;
  void on_closed() noexcept override;

  FrameReader frames_;
};

}  // namespace dnsgate
