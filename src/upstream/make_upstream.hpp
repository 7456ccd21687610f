// The transport for one configured resolver.
#pragma once

#include <memory>

#include "dnsgate/config.hpp"
#include "net/datagram_ring.hpp"
#include "upstream/upstream.hpp"

namespace dnsgate {

// `udp_fd`: a UDP socket the caller bound for a do53-udp resolver (not
// owned), or -1. `timeout`: how long a connection and its handshake may
// take (the loop gives half of upstreamTimeoutMs). `ring`: the io_uring
// backend's, which then carries a do53-udp resolver's datagrams; null on
// epoll.
std::unique_ptr<Upstream> make_upstream(const ResolverConfig& resolver, int udp_fd,
                                        std::chrono::milliseconds timeout,
                                        UpstreamListener& listener, DatagramRing* ring = nullptr);

}  // namespace dnsgate
