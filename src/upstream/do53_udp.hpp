// The do53-udp upstream: plain DNS over UDP to one resolver.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "dnsgate/endpoint.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

// Talks to one resolver over a UDP socket the caller bound. The socket is
// connected to the resolver: the kernel then drops datagrams from any other
// address or port before they are read, and sends skip the route lookup.
// ICMP errors are asked for with IP_RECVERR/IPV6_RECVERR: the kernel hands
// back the payload of the datagram that failed, whose id says which query
// the resolver cannot be reached for, so an unreachable upstream is
// reported at once rather than after the timeout.
class Do53UdpUpstream {
 public:
  // Makes `fd` non-blocking, connects it to the resolver (if that fails,
  // every send names the resolver instead) and enables error reporting;
  // does not own it.
  Do53UdpUpstream(int fd, const Endpoint& resolver) noexcept;

  int fd() const noexcept { return fd_; }
  const Endpoint& resolver() const noexcept { return resolver_; }
  // The destination to give sendto/sendmmsg: none when connected.
  const sockaddr* address() const noexcept {
    return connected_ ? nullptr : reinterpret_cast<const sockaddr*>(&resolver_address_);
  }
  socklen_t address_length() const noexcept { return connected_ ? 0 : resolver_length_; }

  // 0 on success, else the errno of the failed send.
  int send(std::span<const std::uint8_t> query) const noexcept;

  // True when a datagram's source is the resolver itself.
  bool is_resolver(const sockaddr* source, socklen_t length) const noexcept;

  // Reads up to ids.size() queued errors, stores the upstream id of each
  // failed query, returns how many were stored (0: queue empty).
  std::size_t read_errors(std::span<std::uint16_t> ids) const noexcept;

 private:
  int fd_;
  Endpoint resolver_;
  sockaddr_storage resolver_address_{};
  socklen_t resolver_length_ = 0;
  bool connected_ = false;
};

// True when an upstream response answers the question that was sent: same
// name (ASCII case-insensitive), type and class. A response without a
// question never matches.
bool answers_question(const ResponseQuestion& response,
                      std::span<const std::uint8_t> sent_question) noexcept;

}  // namespace dnsgate
