#include "dnsgate/socket.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dnsgate {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::release() noexcept {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

namespace {

// Bursts from a busy workload must not overflow the kernel's queue while
// the loop is busy elsewhere. Best effort: a smaller buffer still works.
constexpr int kSocketBufferOctets = 4 * 1024 * 1024;
constexpr int kListenBacklog = 1024;

void enlarge_buffers(int fd) {
  for (const int option : {SO_RCVBUF, SO_SNDBUF}) {
    const int forced = option == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
    if (setsockopt(fd, SOL_SOCKET, forced, &kSocketBufferOctets, sizeof kSocketBufferOctets) != 0) {
      setsockopt(fd, SOL_SOCKET, option, &kSocketBufferOctets, sizeof kSocketBufferOctets);
    }
  }
}

UniqueFd bound_udp(int family, const sockaddr_storage& address, socklen_t length,
                   const std::string& what, std::string& error) {
  UniqueFd fd(socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    error = std::string("socket: ") + std::strerror(errno);
    return {};
  }
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    error = "bind " + what + ": " + std::strerror(errno);
    return {};
  }
  enlarge_buffers(fd.get());
  return fd;
}

}  // namespace

UniqueFd bind_udp_listener(const Endpoint& where, std::string& error) {
  sockaddr_storage address{};
  const socklen_t length = where.to_sockaddr(address);
  return bound_udp(where.family(), address, length, where.to_string(), error);
}

UniqueFd bind_tcp_listener(const Endpoint& where, std::string& error) {
  UniqueFd fd(socket(where.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    error = std::string("socket: ") + std::strerror(errno);
    return {};
  }
  // A restarted proxy must not wait out TIME_WAIT of its previous run.
  const int on = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_storage address{};
  const socklen_t length = where.to_sockaddr(address);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    error = "bind tcp " + where.to_string() + ": " + std::strerror(errno);
    return {};
  }
  if (listen(fd.get(), kListenBacklog) != 0) {
    error = "listen tcp " + where.to_string() + ": " + std::strerror(errno);
    return {};
  }
  return fd;
}

UniqueFd open_upstream_udp(const Endpoint& upstream, std::string& error) {
  // The zeroed address of the upstream's family is its wildcard address and
  // port 0: the kernel picks the source address and a random ephemeral port.
  sockaddr_storage address{};
  address.ss_family = static_cast<sa_family_t>(upstream.family());
  const socklen_t length =
      upstream.family() == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return bound_udp(upstream.family(), address, length, "upstream socket", error);
}

}  // namespace dnsgate
