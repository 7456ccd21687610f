// The transport for one configured resolver.
#pragma once

#include <memory>

#include "dnsgate/config.hpp"
#include "upstream/upstream.hpp"

namespace dnsgate {

// `udp_fd`: a UDP socket the caller bound for a do53-udp resolver (not
// owned), or -1. `timeout`: how long a connection and its handshake may
// take (the loop gives half of upstreamTimeoutMs).
std::unique_ptr<Upstream> make_upstream(const ResolverConfig& resolver, int udp_fd,
                                        std::chrono::milliseconds timeout,
                                        UpstreamListener& listener);

}  // namespace dnsgate
