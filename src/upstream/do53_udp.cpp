#include "upstream/do53_udp.hpp"

#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "dns/ascii.hpp"
#include "dns/wire.hpp"

namespace dnsgate {

Do53UdpUpstream::Do53UdpUpstream(int fd, const Endpoint& resolver) noexcept
    : fd_(fd), resolver_(resolver) {
  resolver_length_ = resolver_.to_sockaddr(resolver_address_);
  const int flags = fcntl(fd_, F_GETFL);
  if (flags >= 0) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  connected_ =
      connect(fd_, reinterpret_cast<const sockaddr*>(&resolver_address_), resolver_length_) == 0;
  const int on = 1;
  if (resolver_.family() == AF_INET6) {
    setsockopt(fd_, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on);
  } else {
    setsockopt(fd_, IPPROTO_IP, IP_RECVERR, &on, sizeof on);
  }
}

int Do53UdpUpstream::send(std::span<const std::uint8_t> query) const noexcept {
  while (true) {
    const ssize_t sent = sendto(fd_, query.data(), query.size(), 0, address(), address_length());
    if (sent >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

bool Do53UdpUpstream::is_resolver(const sockaddr* source, socklen_t length) const noexcept {
  const auto endpoint = Endpoint::from_sockaddr(source, length);
  return endpoint && *endpoint == resolver_;
}

std::size_t Do53UdpUpstream::read_errors(std::span<std::uint16_t> ids) const noexcept {
  std::size_t stored = 0;
  while (stored < ids.size()) {
    std::array<std::uint8_t, 512> payload{};
    alignas(cmsghdr) std::array<char, 512> control{};
    sockaddr_storage offender{};
    iovec io{payload.data(), payload.size()};
    msghdr message{};
    message.msg_name = &offender;
    message.msg_namelen = sizeof offender;
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    const ssize_t got = recvmsg(fd_, &message, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN: the queue is empty
    }
    bool is_network_error = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
      const bool v4 = c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR;
      const bool v6 = c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR;
      if (!v4 && !v6) continue;
      sock_extended_err error{};
      std::memcpy(&error, CMSG_DATA(c), sizeof error);
      is_network_error = error.ee_origin == SO_EE_ORIGIN_ICMP ||
                         error.ee_origin == SO_EE_ORIGIN_ICMP6 ||
                         error.ee_origin == SO_EE_ORIGIN_LOCAL;
    }
    // The payload is the datagram we sent; its first two octets are the id.
    if (is_network_error && got >= 2) {
      ids[stored++] = read_u16(payload, 0);
    }
  }
  return stored;
}

bool answers_question(const ResponseQuestion& response,
                      std::span<const std::uint8_t> sent_question) noexcept {
  if (response.header.qdcount != 1) return false;
  const auto name = response.question.name.wire();
  if (sent_question.size() != name.size() + 4) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (ascii_lower(name[i]) != ascii_lower(sent_question[i])) return false;
  }
  return read_u16(sent_question, name.size()) == response.question.qtype &&
         read_u16(sent_question, name.size() + 2) == response.question.qclass;
}

}  // namespace dnsgate
