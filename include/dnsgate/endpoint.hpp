// Endpoint: an IPv4 or IPv6 address and a port, as the config writes it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dnsgate {

class Endpoint {
 public:
  Endpoint() = default;

  // "127.0.0.1:5353" or "[::1]:5353"; the port is required (1-65535).
  static std::optional<Endpoint> parse(std::string_view text);
  static std::optional<Endpoint> from_sockaddr(const sockaddr* address, socklen_t length) noexcept;

  int family() const noexcept { return family_; }  // AF_INET or AF_INET6
  std::uint16_t port() const noexcept { return port_; }

  // Fills `out`; returns the length to pass to bind/sendto.
  socklen_t to_sockaddr(sockaddr_storage& out) const noexcept;

  // "127.0.0.1:40312" or "[::1]:40312".
  std::string to_string() const;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;

 private:
  int family_ = AF_INET;
  std::array<std::uint8_t, 16> address_{};
  std::uint16_t port_ = 0;
};

}  // namespace dnsgate
