// A peer's socket address as the kernel gave it.
#pragma once

#include <sys/socket.h>

namespace dnsgate {

struct PeerAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
};

}  // namespace dnsgate
