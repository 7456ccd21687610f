// Network namespaces of cells: opened by name (/run/netns/NAME, as `ip
// netns` makes them) or by path, and entered only for as long as a socket
// is bound in them.
#pragma once

#include <string>

#include "dnsgate/socket.hpp"

namespace dnsgate::spawn {

// The path a cell's `netns:` stands for.
std::string netns_path(const std::string& netns);

// Opens the namespace; invalid and `error` set when there is none.
UniqueFd open_netns(const std::string& netns, std::string& error);

// Enters `netns` on the calling thread and returns to the thread's previous
// namespace when destroyed. `ok()` false (and `error` set) when it could
// not enter.
class NetnsVisit {
 public:
  NetnsVisit(int netns, std::string& error);
  ~NetnsVisit();
  NetnsVisit(const NetnsVisit&) = delete;
  NetnsVisit& operator=(const NetnsVisit&) = delete;
  bool ok() const noexcept { return entered_; }

 private:
  UniqueFd home_;
  bool entered_ = false;
};

}  // namespace dnsgate::spawn
