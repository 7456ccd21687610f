#include "spawn/netns.hpp"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <cstring>

namespace dnsgate::spawn {

std::string netns_path(const std::string& netns) {
  return netns.front() == '/' ? netns : "/run/netns/" + netns;
}

UniqueFd open_netns(const std::string& netns, std::string& error) {
  const std::string path = netns_path(netns);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    error = errno == ENOENT ? "network namespace " + path + " does not exist"
                            : "cannot open network namespace " + path + ": " + std::strerror(errno);
    return fd;
  }
  // A path that is not a network namespace (a plain file, another kind).
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (setns(fd.get(), CLONE_NEWNET) != 0) {
    error = path + " is not a network namespace: " + std::strerror(errno);
    return UniqueFd();
  }
  if (home.valid()) setns(home.get(), CLONE_NEWNET);
  return fd;
}

NetnsVisit::NetnsVisit(int netns, std::string& error)
    : home_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
  if (!home_.valid()) {
    error = std::string("cannot open this thread's network namespace: ") + std::strerror(errno);
    return;
  }
  if (setns(netns, CLONE_NEWNET) != 0) {
    error = std::string("cannot enter the cell's network namespace: ") + std::strerror(errno);
    return;
  }
  entered_ = true;
}

NetnsVisit::~NetnsVisit() {
  if (entered_) setns(home_.get(), CLONE_NEWNET);
}

}  // namespace dnsgate::spawn
