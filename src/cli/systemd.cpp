#include "cli/systemd.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "dnsgate/endpoint.hpp"

namespace dnsgate::cli {

namespace {

// What bind_udp_listener asks for (src/net/socket.cpp). A socket unit sets
// it with ReceiveBuffer=/SendBuffer= (PID 1 may force it past rmem_max); a
// hand-made unit may not, so the same best effort is made here.
constexpr int kSocketBufferOctets = 4 * 1024 * 1024;

void enlarge_buffers(int fd) {
  for (const int option : {SO_RCVBUF, SO_SNDBUF}) {
    int current = 0;
    socklen_t length = sizeof current;
    // The kernel reports twice what was set; half of it is the request.
    if (getsockopt(fd, SOL_SOCKET, option, &current, &length) == 0 &&
        current / 2 >= kSocketBufferOctets) {
      continue;
    }
    const int forced = option == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
    if (setsockopt(fd, SOL_SOCKET, forced, &kSocketBufferOctets, sizeof kSocketBufferOctets) != 0) {
      setsockopt(fd, SOL_SOCKET, option, &kSocketBufferOctets, sizeof kSocketBufferOctets);
    }
  }
}

std::optional<Endpoint> local_address(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return std::nullopt;
  return Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&address), length);
}

// One descriptor as it came, for messages: `fd 3 "dnsgate@web.socket"`.
struct Passed {
  UniqueFd fd;
  std::string name;
  std::string kind;  // "udp", "tcp" or "" (unusable)
  std::optional<Endpoint> address;
  int address_errno = 0;  // why getsockname failed

  std::string describe() const {
    std::string text = kind.empty() ? std::string("a socket") : kind;
    if (address) text += " " + address->to_string();
    return text + " (fd " + std::to_string(fd.get()) + " \"" + name + "\")";
  }
};

// sd_listen_fds_with_names hands over a NULL-terminated array of malloc'ed
// strings.
std::vector<std::string> take_names(char** names) {
  std::vector<std::string> out;
  if (names == nullptr) return out;
  for (char** name = names; *name != nullptr; ++name) {
    out.emplace_back(*name);
    std::free(*name);
  }
  std::free(static_cast<void*>(names));
  return out;
}

// Checks the passed socket of one kind against the config's listener of
// that kind; `passed` may be null (none of that kind came).
bool match_one(const char* kind, const std::optional<Endpoint>& configured, const Passed* passed,
               std::string& error) {
  const std::string field = std::string("listen.") + kind;
  if (passed == nullptr) {
    if (!configured) return true;
    error = "the config's " + field + " is " + configured->to_string() + " but systemd passed no " +
            kind + " socket";
    return false;
  }
  if (!configured) {
    error = "systemd passed " + passed->describe() + " but the config has no " + field;
    return false;
  }
  if (!passed->address) {
    error = "cannot read the local address of " + passed->describe() + ": " +
            std::strerror(passed->address_errno);
    return false;
  }
  if (*passed->address != *configured) {
    error = "systemd passed " + passed->describe() + " but the config's " + field + " is " +
            configured->to_string() + "; they must be the same address and port";
    return false;
  }
  return true;
}

}  // namespace

bool take_activated_listeners(const DnsProxyConfig& config, ActivatedListeners& out,
                              std::string& error) {
  char** raw_names = nullptr;
  const int count = sd_listen_fds_with_names(1, &raw_names);
  const std::vector<std::string> names = take_names(raw_names);
  if (count < 0) {
    error = std::string("LISTEN_FDS: ") + std::strerror(-count);
    return false;
  }
  if (count == 0) return true;

  // Every passed descriptor is owned from here on, so an error closes all.
  std::vector<Passed> passed;
  passed.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    Passed one;
    one.fd = UniqueFd(SD_LISTEN_FDS_START + i);
    one.name = static_cast<std::size_t>(i) < names.size() ? names[static_cast<std::size_t>(i)]
                                                          : std::string("unknown");
    if (sd_is_socket_inet(one.fd.get(), AF_UNSPEC, SOCK_DGRAM, -1, 0) > 0) {
      one.kind = "udp";
    } else if (sd_is_socket_inet(one.fd.get(), AF_UNSPEC, SOCK_STREAM, 1, 0) > 0) {
      one.kind = "tcp";
    }
    if (!one.kind.empty()) {
      one.address = local_address(one.fd.get());
      if (!one.address) one.address_errno = errno;
    }
    passed.push_back(std::move(one));
  }

  Passed* udp = nullptr;
  Passed* tcp = nullptr;
  for (Passed& one : passed) {
    if (one.kind.empty()) {
      error = "systemd passed fd " + std::to_string(one.fd.get()) + " \"" + one.name +
              "\", which is neither an IPv4/IPv6 datagram socket nor a listening IPv4/IPv6 "
              "stream socket";
      return false;
    }
    Passed*& slot = one.kind == "udp" ? udp : tcp;
    if (slot != nullptr) {
      error = "systemd passed two " + one.kind + " sockets, " + slot->describe() + " and " +
              one.describe() + "; dnsgate serves one of each kind";
      return false;
    }
    slot = &one;
  }
  if (!match_one("udp", config.listen_udp, udp, error)) return false;
  if (!match_one("tcp", config.listen_tcp, tcp, error)) return false;

  out.activated = true;
  out.summary.clear();
  if (udp != nullptr) {
    enlarge_buffers(udp->fd.get());
    out.summary = udp->describe();
    out.udp = std::move(udp->fd);
  }
  if (tcp != nullptr) {
    out.summary += (out.summary.empty() ? "" : ", ") + tcp->describe();
    out.tcp = std::move(tcp->fd);
  }
  return true;
}

ServiceNotifier::ServiceNotifier(const std::atomic<bool>& stop_requested)
    : stop_requested_(stop_requested) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  if (!enabled_) return;
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);

  // The thread inherits the signal mask: with SIGINT and SIGTERM blocked
  // there, they are delivered to the proxy loop's thread, whose waits they
  // interrupt.
  sigset_t stop_signals;
  sigset_t previous;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
  try {
    thread_ = std::thread([this] { run(); });
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

ServiceNotifier::~ServiceNotifier() {
  if (!thread_.joinable()) return;
  {
    const std::lock_guard lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ServiceNotifier::send(const std::string& state) {
  if (enabled_) sd_notify(0, state.c_str());
}

void ServiceNotifier::ready(const std::string& status) {
  send("READY=1\nSTATUS=" + status);
}

void ServiceNotifier::stopping() {
  if (!enabled_ || stopping_sent_.exchange(true)) return;
  send("STOPPING=1\nSTATUS=stopping");
}

void ServiceNotifier::run() {
  // How often the thread looks at the stop flag (a signal handler cannot
  // wake a condition variable) and, with a watchdog, pings at half its
  // timeout, as sd_watchdog_enabled(3) advises.
  constexpr std::chrono::milliseconds kPoll{100};
  const auto ping_every = watchdog_ / 2;
  auto next_ping = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  while (!quit_) {
    const auto now = std::chrono::steady_clock::now();
    if (watchdog_.count() > 0 && now >= next_ping) {
      send("WATCHDOG=1");
      next_ping = now + ping_every;
    }
    if (stop_requested_.load()) stopping();
    auto until = now + kPoll;
    if (watchdog_.count() > 0 && next_ping < until) until = next_ping;
    wake_.wait_until(lock, until, [this] { return quit_; });
  }
}

}  // namespace dnsgate::cli
