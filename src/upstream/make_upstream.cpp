#include "upstream/make_upstream.hpp"

#include "upstream/do53.hpp"
#include "upstream/doh.hpp"
#include "upstream/doq.hpp"
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

// An encrypted transport, or an unusable one when its TLS settings no
// longer load (run and check refuse such a config before this).
template <class Transport>
std::unique_ptr<Upstream> with_tls(const ResolverConfig& resolver,
                                   std::chrono::milliseconds timeout, UpstreamListener& listener) {
  std::string error;
  auto tls = TlsClientContext::create(resolver, error);
  if (!tls) {
    return std::make_unique<UnusableUpstream>(UpstreamError{UpstreamErrorKind::tls_certificate, 0});
  }
  return std::make_unique<Transport>(resolver, std::move(tls), timeout, listener);
}

std::unique_ptr<Upstream> make_upstream(const ResolverConfig& resolver, int udp_fd,
                                        std::chrono::milliseconds timeout,
                                        UpstreamListener& listener, DatagramRing* ring) {
  switch (resolver.protocol) {
    case UpstreamProtocol::do53_udp:
    case UpstreamProtocol::do53_tcp:
      return std::make_unique<Do53Upstream>(resolver, udp_fd, listener, ring);
    case UpstreamProtocol::dot:
      return with_tls<DotUpstream>(resolver, timeout, listener);
    case UpstreamProtocol::doh:
      return with_tls<DohUpstream>(resolver, timeout, listener);
    case UpstreamProtocol::doq:
      return with_tls<DoqUpstream>(resolver, timeout, listener);
  }
  return std::make_unique<UnusableUpstream>(UpstreamError{UpstreamErrorKind::connect_failed, 0});
}

}  // namespace dnsgate
