#include "dnsgate/endpoint.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <string>

namespace dnsgate {

namespace {

// Decimal digits only: no sign, no spaces, no hex, so "53" is the only way
// to write port 53 and a stray character is an error rather than ignored.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

}  // namespace

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  std::string_view host;
  std::string_view port_text;
  int family = AF_INET;

  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    const auto rest = text.substr(close + 1);
    if (rest.size() < 2 || rest.front() != ':') return std::nullopt;
    port_text = rest.substr(1);
    family = AF_INET6;
  } else {
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) return std::nullopt;  // the port is required
    // A second colon means an IPv6 address without brackets: its last group
    // and a port cannot be told apart, so the brackets are required.
    if (text.find(':', colon + 1) != std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }

  const auto port = parse_port(port_text);
  if (!port) return std::nullopt;

  // inet_pton reads a NUL-terminated string: an embedded NUL would make it
  // ignore whatever follows. A host longer than any address literal is not one.
  char host_text[INET6_ADDRSTRLEN] = {};
  if (host.empty() || host.size() >= sizeof host_text) return std::nullopt;
  if (host.find('\0') != std::string_view::npos) return std::nullopt;
  std::memcpy(host_text, host.data(), host.size());

  Endpoint endpoint;
  endpoint.family_ = family;
  endpoint.port_ = *port;
  if (inet_pton(family, host_text, endpoint.address_.data()) != 1) return std::nullopt;
  return endpoint;
}

std::optional<Endpoint> Endpoint::from_sockaddr(const sockaddr* address,
                                                socklen_t length) noexcept {
  if (address == nullptr) return std::nullopt;
  Endpoint endpoint;
  if (address->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in4;
    std::memcpy(&in4, address, sizeof in4);
    endpoint.family_ = AF_INET;
    std::memcpy(endpoint.address_.data(), &in4.sin_addr, sizeof in4.sin_addr);
    endpoint.port_ = ntohs(in4.sin_port);
    return endpoint;
  }
  if (address->sa_family == AF_INET6 && length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6;
    std::memcpy(&in6, address, sizeof in6);
    endpoint.family_ = AF_INET6;
    std::memcpy(endpoint.address_.data(), &in6.sin6_addr, sizeof in6.sin6_addr);
    endpoint.port_ = ntohs(in6.sin6_port);
    return endpoint;
  }
  return std::nullopt;
}

socklen_t Endpoint::to_sockaddr(sockaddr_storage& out) const noexcept {
  std::memset(&out, 0, sizeof out);
  if (family_ == AF_INET6) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port_);
    std::memcpy(&in6.sin6_addr, address_.data(), sizeof in6.sin6_addr);
    std::memcpy(&out, &in6, sizeof in6);
    return sizeof in6;
  }
  sockaddr_in in4{};
  in4.sin_family = AF_INET;
  in4.sin_port = htons(port_);
  std::memcpy(&in4.sin_addr, address_.data(), sizeof in4.sin_addr);
  std::memcpy(&out, &in4, sizeof in4);
  return sizeof in4;
}

std::string Endpoint::to_string() const {
  char host[INET6_ADDRSTRLEN] = {};
  inet_ntop(family_, address_.data(), host, sizeof host);
  std::string text;
  text.reserve(sizeof host + 8);
  if (family_ == AF_INET6) {
    text += '[';
    text += host;
    text += ']';
  } else {
    text += host;
  }
  text += ':';
  text += std::to_string(port_);
  return text;
}

}  // namespace dnsgate
