#include "upstream/make_upstream.hpp"

#include "upstream/do53.hpp"
#include "upstream/dot.hpp"
#include "upstream/tls_client.hpp"

namespace dnsgate {

namespace {

// A resolver whose transport cannot be set up (its CA file no longer
// loads): every query fails at once with the same word, and the loop's
// failover takes over. `dnsgate run` refuses to start with one; a library
// caller learns of it from the events.
class UnusableUpstream final : public Upstream {
 public:
  explicit UnusableUpstream(UpstreamError error) : error_(error) {}
  UpstreamError send(std::span<const std::uint8_t>, Transport, SteadyTime) override {
    return error_;
  }
  void cancel(std::uint16_t) noexcept override {}
  std::size_t io_slots() const noexcept override { return 0; }
  IoInterest io_interest(std::size_t) const noexcept override { return {}; }
  void on_io(std::size_t, std::uint32_t, SteadyTime) override {}
  UpstreamCounters counters() const noexcept override { return {}; }

 private:
  UpstreamError error_;
};

}  // namespace

std::unique_ptr<Upstream> make_upstream(const ResolverConfig& resolver, int udp_fd,
                                        std::chrono::milliseconds timeout,
                                        UpstreamListener& listener) {
  switch (resolver.protocol) {
    case UpstreamProtocol::do53_udp:
    case UpstreamProtocol::do53_tcp:
      return std::make_unique<Do53Upstream>(resolver, udp_fd, listener);
    case UpstreamProtocol::dot: {
      std::string error;
      auto tls = TlsClientContext::create(resolver, error);
      if (!tls) {
        return std::make_unique<UnusableUpstream>(
            UpstreamError{UpstreamErrorKind::tls_certificate, 0});
      }
      return std::make_unique<DotUpstream>(resolver, std::move(tls), timeout, listener);
    }
    case UpstreamProtocol::doh:
    case UpstreamProtocol::doq:
      break;
  }
  return std::make_unique<UnusableUpstream>(UpstreamError{UpstreamErrorKind::connect_failed, 0});
}

}  // namespace dnsgate
