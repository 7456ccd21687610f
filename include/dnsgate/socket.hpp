// Owning file descriptors and the sockets the command line binds.
#pragma once

#include <string>

#include "dnsgate/endpoint.hpp"

namespace dnsgate {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept;

 private:
  int fd_ = -1;
};

// A UDP socket bound to `where` (the workload-facing listener). On failure
// the result is invalid and `error` says why.
UniqueFd bind_udp_listener(const Endpoint& where, std::string& error);

// A TCP socket bound to `where` and listening (the workload-facing TCP/53
// listener).
UniqueFd bind_tcp_listener(const Endpoint& where, std::string& error);

// A UDP socket for talking to `upstream`: same family, bound to an ephemeral
// port chosen by the kernel.
UniqueFd open_upstream_udp(const Endpoint& upstream, std::string& error);

}  // namespace dnsgate
