#include "spawn/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/event_sink.hpp"
#include "dnsgate/socket.hpp"
#include "spawn/cell.hpp"
#include "spawn/privileges.hpp"

namespace dnsgate::spawn {

namespace {

constexpr milliseconds kMaxBackoff{10000};
// A proxy that served this long before it died is restarted at once (the
// queries waiting in its socket want an answer now); one that dies sooner
// is crash-looping and waits kFirstBackoff, doubling up to kMaxBackoff.
constexpr milliseconds kStableRun{1000};
constexpr milliseconds kStopTimeout{5000};  // then SIGKILL
constexpr std::size_t kMaxLine = std::size_t{64} * 1024;
constexpr std::size_t kEventRingRecords = 8192;  // the sink's default queue

std::string signal_name(int signal_number) {
  const char* abbrev = sigabbrev_np(signal_number);
  return abbrev != nullptr ? std::string("SIG") + abbrev
                           : "signal " + std::to_string(signal_number);
}

void set_cloexec(int fd, bool on) {
  const int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
}

// What an epoll event is about.
struct Watch {
  std::string cell;
  pid_t pid = -1;
  bool is_ready_pipe = false;
};

class Supervisor {
 public:
  explicit Supervisor(SupervisorOptions options) : options_(std::move(options)) {}
  int run();

 private:
  bool spawn(Cell& cell, Role role);
  void start_cell(const std::string& file);
  void reload();
  void replace(Cell& cell, std::unique_ptr<Cell> fresh);
  void on_signal();
  void reap();
  void on_child_exit(Cell& cell, pid_t pid, int status);
  void on_readable(std::uint64_t tag);
  ssize_t read_output(Cell& cell, Proxy& proxy);
  void on_ready(Cell& cell, Proxy& proxy);
  void ask_to_stop(Proxy& proxy);
  void write_queued_events(const Cell& cell, const Proxy& proxy, int status);
  void forget(Proxy& proxy);
  void run_timers();
  int next_timeout() const;
  std::uint64_t watch(int fd, const std::string& cell, pid_t pid, bool ready_pipe);
  std::string summary_json() const;
  void end_cell(const Cell& cell);

  SupervisorOptions options_;
  UniqueFd epoll_;
  UniqueFd signals_;
  std::map<std::string, std::unique_ptr<Cell>> cells_;
  std::unordered_map<std::uint64_t, Watch> watches_;
  std::uint64_t next_tag_ = 1;
  bool stopping_ = false;
  std::optional<Clock::time_point> kill_at_;
  std::vector<std::string> ended_;  // JSON of cells removed while running
};

// Forks the proxy: in the child, the cell's namespace, the descriptors it
// gets, the user it runs as, then exec. Async-signal-safe calls only after
// fork (the supervisor is single-threaded, but stays careful).
bool Supervisor::spawn(Cell& cell, Role role) {
  // What the child gets, made before fork.
  int output_pipe[2];
  int ready_pipe[2];
  if (pipe2(output_pipe, O_CLOEXEC) != 0) return false;
  UniqueFd output_read(output_pipe[0]);
  UniqueFd output_write(output_pipe[1]);
  if (pipe2(ready_pipe, O_CLOEXEC) != 0) return false;
  UniqueFd ready_read(ready_pipe[0]);
  UniqueFd ready_write(ready_pipe[1]);
  // The supervisor's ends never block it; the proxy's stay blocking.
  fcntl(output_read.get(), F_SETFL, O_NONBLOCK);
  fcntl(ready_read.get(), F_SETFL, O_NONBLOCK);
  UniqueFd config(memfd_create("dnsgate-cell", MFD_CLOEXEC));
  if (!config.valid() || write(config.get(), cell.text.data(), cell.text.size()) !=
                             static_cast<ssize_t>(cell.text.size())) {
    spdlog::error("cell {}: cannot pass the config: {}", cell.name, std::strerror(errno));
    return false;
  }
  UniqueFd events;
  if (cell.config.events.sink == EventSinkKind::file) {
    events = UniqueFd(
        ::open(cell.config.events.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!events.valid()) {
      spdlog::error("cell {}: cannot open the events file {}: {}", cell.name,
                    cell.config.events.path, std::strerror(errno));
      return false;
    }
  }
  std::string ring_error;
  UniqueFd ring(create_event_ring(kEventRingRecords, ring_error));
  if (!ring.valid()) {
    spdlog::error("cell {}: {}", cell.name, ring_error);
    return false;
  }
  const auto number = [](const UniqueFd& fd) { return std::to_string(fd.get()); };
  std::vector<std::string> args = {
      options_.binary,   "cell",         "--name",     cell.name,
      "--config-fd",     number(config), "--ready-fd", number(ready_write),
      "--event-ring-fd", number(ring)};
  if (cell.udp.valid()) args.insert(args.end(), {"--udp-fd", number(cell.udp)});
  if (cell.tcp.valid()) args.insert(args.end(), {"--tcp-fd", number(cell.tcp)});
  if (events.valid()) args.insert(args.end(), {"--events-fd", number(events)});
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int inherited[] = {config.get(),   ready_write.get(), cell.udp.get(),
                           cell.tcp.get(), events.get(),      ring.get()};

  const pid_t pid = fork();
  if (pid < 0) {
    spdlog::error("cell {}: fork: {}", cell.name, std::strerror(errno));
    return false;
  }
  if (pid == 0) {
    // The child: signals as a fresh process has them.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(output_write.get(), STDERR_FILENO);
    const auto fail = [](const char* what) {
      const char prefix[] = "dnsgate cell: cannot start: ";
      (void)!write(STDERR_FILENO, prefix, sizeof prefix - 1);
      (void)!write(STDERR_FILENO, what, std::strlen(what));
      (void)!write(STDERR_FILENO, "\n", 1);
      _exit(126);
    };
    if (setns(cell.netns.get(), CLONE_NEWNET) != 0) fail("setns");
    for (const int fd : inherited) {
      if (fd >= 0) set_cloexec(fd, false);
    }
    if (const char* failed = drop_privileges(cell.user)) fail(failed);
    execv(argv[0], argv.data());
    fail("execv");
  }
  Proxy proxy;
  proxy.pid = pid;
  proxy.role = role;
  proxy.started = Clock::now();
  proxy.output = std::move(output_read);
  proxy.ready = std::move(ready_read);
  proxy.events = std::move(ring);
  watch(proxy.output.get(), cell.name, pid, false);
  watch(proxy.ready.get(), cell.name, pid, true);
  cell.proxies.push_back(std::move(proxy));
  ++cell.starts;
  spdlog::info("cell {}: proxy {} started{}", cell.name, pid,
               role == Role::replacement ? " (replacing the running one)" : "");
  return true;
}

std::uint64_t Supervisor::watch(int fd, const std::string& cell, pid_t pid, bool ready_pipe) {
  const std::uint64_t tag = next_tag_++;
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = tag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) == 0) {
    watches_[tag] = Watch{cell, pid, ready_pipe};
  }
  return tag;
}

void Supervisor::start_cell(const std::string& file) {
  const std::string name = cell_name_of(file);
  std::string why;
  auto cell = prepare_cell(file, options_.binary, why);
  if (!cell) {
    spdlog::error("cell {}: refused: {}", name, why);
    return;
  }
  Cell& placed = *cell;
  cells_[name] = std::move(cell);
  if (!spawn(placed, Role::serving)) {
    placed.restart_at = Clock::now() + placed.backoff;
  }
}

// A changed cell: the new proxy first, on the same sockets when its
// namespace and listeners are the same; the old one stops once the new one
// serves.
void Supervisor::replace(Cell& cell, std::unique_ptr<Cell> fresh) {
  cell.text = fresh->text;
  cell.config = fresh->config;
  cell.user = fresh->user;
  cell.binary = fresh->binary;
  if (Proxy* pending = cell.with_role(Role::replacement)) ask_to_stop(*pending);
  if (cell.with_role(Role::serving) == nullptr) {
    cell.restart_at.reset();
    spawn(cell, Role::serving);
    return;
  }
  if (!spawn(cell, Role::replacement)) {
    spdlog::error("cell {}: the new proxy could not start; the running one stays", cell.name);
  }
}

void Supervisor::reload() {
  spdlog::info("SIGHUP: reading {} again", options_.cells_dir);
  const std::vector<std::string> files = cell_files(options_.cells_dir);
  std::vector<std::string> names;
  names.reserve(files.size());
  for (const std::string& file : files) names.push_back(cell_name_of(file));
  for (auto& [name, cell] : cells_) {
    if (cell->removing || std::find(names.begin(), names.end(), name) != names.end()) continue;
    spdlog::info("cell {}: its file is gone: stopping", name);
    cell->removing = true;
    cell->restart_at.reset();
    for (Proxy& proxy : cell->proxies) ask_to_stop(proxy);
  }
  const FileIdentity binary = identity_of(options_.binary);
  for (const std::string& file : files) {
    const std::string name = cell_name_of(file);
    const auto found = cells_.find(name);
    if (found == cells_.end()) {
      start_cell(file);
      continue;
    }
    Cell& cell = *found->second;
    if (cell.removing) continue;  // still stopping: the next SIGHUP starts it again
    std::string text;
    read_cell_text(file, text);
    const bool changed = text != cell.text;
    if (!changed && binary == cell.binary) continue;
    auto parsed = parse_config(text);
    if (auto* error = std::get_if<ConfigError>(&parsed)) {
      spdlog::error("cell {}: new config refused, the running one stays: {}", name,
                    error->describe(file));
      continue;
    }
    const DnsProxyConfig& next = std::get<DnsProxyConfig>(parsed);
    if (const ConfigError refusal = unsupported_in_cell(next); !refusal.field.empty()) {
      spdlog::error("cell {}: new config refused, the running one stays: {}", name,
                    refusal.describe(file));
      continue;
    }
    const bool same_sockets = next.netns == cell.config.netns &&
                              next.listen_udp == cell.config.listen_udp &&
                              next.listen_tcp == cell.config.listen_tcp;
    if (!same_sockets) {
      // New sockets can be bound only once the old ones are closed.
      spdlog::info("cell {}: namespace or listeners changed: stopping it, then starting it anew",
                   name);
      cell.removing = true;
      cell.restart_at.reset();
      for (Proxy& proxy : cell.proxies) ask_to_stop(proxy);
      continue;
    }
    std::string why;
    auto fresh = std::make_unique<Cell>();
    fresh->text = text;
    fresh->config = next;
    auto user = resolve_user(next.user, why);
    if (!user) {
      spdlog::error("cell {}: new config refused, the running one stays: {}", name, why);
      continue;
    }
    fresh->user = *user;
    fresh->binary = binary;
    spdlog::info("cell {}: {} changed: replacing its proxy", name,
                 changed ? "config" : "dnsgate binary");
    replace(cell, std::move(fresh));
  }
}

// A proxy that did not close its sink (killed, crashed) may have left
// events in its ring: they are the audit trail of queries it handled, so
// the supervisor writes them.
void Supervisor::write_queued_events(const Cell& cell, const Proxy& proxy, int status) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;  // it drained its queue itself
  UniqueFd file;
  int output = STDOUT_FILENO;
  if (cell.config.events.sink == EventSinkKind::file) {
    file = UniqueFd(
        ::open(cell.config.events.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!file.valid()) {
      spdlog::error("cell {}: cannot open {} for the events proxy {} left: {}", cell.name,
                    cell.config.events.path, proxy.pid, std::strerror(errno));
      return;
    }
    output = file.get();
  }
  std::string error;
  const std::size_t written = recover_event_ring(proxy.events.get(), cell.config, output, error);
  if (!error.empty()) {
    spdlog::error("cell {}: the events proxy {} left: {}", cell.name, proxy.pid, error);
  } else if (written > 0) {
    spdlog::info("cell {}: wrote {} event{} proxy {} had queued", cell.name, written,
                 written == 1 ? "" : "s", proxy.pid);
  }
}

void Supervisor::ask_to_stop(Proxy& proxy) {
  if (proxy.stop_requested) return;
  proxy.stop_requested = true;
  proxy.role = Role::retiring;
  proxy.stop_sent = Clock::now();
  kill(proxy.pid, SIGTERM);
}

void Supervisor::forget(Proxy& proxy) {
  for (auto it = watches_.begin(); it != watches_.end();) {
    it = it->second.pid == proxy.pid ? watches_.erase(it) : std::next(it);
  }
}

void Supervisor::on_ready(Cell& cell, Proxy& proxy) {
  char byte = 0;
  if (read(proxy.ready.get(), &byte, 1) != 1) {
    // Closed without a word: the proxy is gone or going; its exit says why.
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, proxy.ready.get(), nullptr);
    return;
  }
  if (proxy.is_ready) return;
  proxy.is_ready = true;
  if (proxy.role != Role::replacement) return;
  // The new proxy serves: the old one drains and stops.
  if (Proxy* old = cell.with_role(Role::serving)) ask_to_stop(*old);
  proxy.role = Role::serving;
  spdlog::info("cell {}: proxy {} serves; the previous one drains", cell.name, proxy.pid);
}

ssize_t Supervisor::read_output(Cell& cell, Proxy& proxy) {
  char buffer[4096];
  const ssize_t got = read(proxy.output.get(), buffer, sizeof buffer);
  if (got == 0) {
    // The proxy is gone (its exit is reaped through SIGCHLD): stop watching.
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, proxy.output.get(), nullptr);
  }
  if (got <= 0) return got;
  proxy.partial.append(buffer, static_cast<std::size_t>(got));
  std::size_t newline;
  while ((newline = proxy.partial.find('\n')) != std::string::npos) {
    std::string line = proxy.partial.substr(0, newline);
    proxy.partial.erase(0, newline + 1);
    // The proxy's last line is its stats, bare JSON.
    if (line.rfind("{\"received\"", 0) == 0) cell.last_stats = line;
    std::fprintf(stderr, "cell %s[%d]: %s\n", cell.name.c_str(), proxy.pid, line.c_str());
  }
  if (proxy.partial.size() > kMaxLine) {
    std::fprintf(stderr, "cell %s[%d]: %s\n", cell.name.c_str(), proxy.pid, proxy.partial.c_str());
    proxy.partial.clear();
  }
  return got;
}

void Supervisor::on_child_exit(Cell& cell, pid_t pid, int status) {
  Proxy* proxy = cell.by_pid(pid);
  if (proxy == nullptr) return;
  // What it wrote last (its stats line), before its pipe goes away.
  while (read_output(cell, *proxy) > 0) {
  }
  write_queued_events(cell, *proxy, status);
  const bool asked = proxy->stop_requested;
  const Role role = proxy->role;
  const auto ran = Clock::now() - proxy->started;
  if (WIFSIGNALED(status)) {
    const int signal_number = WTERMSIG(status);
    spdlog::warn("cell {}: proxy {} killed by signal {}{}", cell.name, pid,
                 signal_name(signal_number),
                 signal_number == SIGSYS ? " (seccomp: a system call outside its allow-list)" : "");
  } else {
    spdlog::info("cell {}: proxy {} exited with status {}", cell.name, pid, WEXITSTATUS(status));
  }
  forget(*proxy);
  cell.proxies.erase(cell.proxies.begin() + (proxy - cell.proxies.data()));
  if (asked || stopping_) {
    if (cell.proxies.empty() && cell.removing) end_cell(cell);
    return;
  }
  // An unexpected death: a crash unless it was a clean exit.
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) ++cell.crashes;
  if (role == Role::replacement) {
    spdlog::error("cell {}: the new proxy died before it served; the running one stays", cell.name);
    return;
  }
  if (cell.with_role(Role::replacement) != nullptr) return;  // it takes over when ready
  ++cell.restarts;
  if (ran >= kStableRun) {
    cell.backoff = kFirstBackoff;
    spdlog::warn("cell {}: restart {} in 0 ms", cell.name, cell.restarts);
    cell.restart_at.reset();
    if (!spawn(cell, Role::serving)) cell.restart_at = Clock::now() + cell.backoff;
    return;
  }
  cell.restart_at = Clock::now() + cell.backoff;
  spdlog::warn("cell {}: restart {} in {} ms", cell.name, cell.restarts, cell.backoff.count());
  cell.backoff = std::min(cell.backoff * 2, kMaxBackoff);
}

void Supervisor::end_cell(const Cell& cell) {
  spdlog::info("cell {}: stopped", cell.name);
  if (stopping_) return;
  const std::string name = cell.name;
  const std::string file = cell.file;
  // A cell stopped to be rebound (new namespace or listeners) starts again
  // and keeps its counters: one cell, one entry in the final summary.
  if (std::filesystem::exists(file)) {
    const std::uint64_t starts = cell.starts;
    const std::uint64_t restarts = cell.restarts;
    const std::uint64_t crashes = cell.crashes;
    cells_.erase(name);
    start_cell(file);
    if (const auto again = cells_.find(name); again != cells_.end()) {
      again->second->starts += starts;
      again->second->restarts += restarts;
      again->second->crashes += crashes;
    }
    return;
  }
  ended_.push_back("{\"cell\":\"" + cell.name + "\",\"starts\":" + std::to_string(cell.starts) +
                   ",\"restarts\":" + std::to_string(cell.restarts) + ",\"crashes\":" +
                   std::to_string(cell.crashes) + ",\"stats\":" + cell.last_stats + "}");
  cells_.erase(name);
}

void Supervisor::reap() {
  while (true) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (auto& [name, cell] : cells_) {
      if (cell->by_pid(pid) != nullptr) {
        on_child_exit(*cell, pid, status);
        break;
      }
    }
  }
}

void Supervisor::on_signal() {
  signalfd_siginfo info{};
  while (read(signals_.get(), &info, sizeof info) == sizeof info) {
    switch (info.ssi_signo) {
      case SIGCHLD:
        reap();
        break;
      case SIGHUP:
        if (!stopping_) reload();
        break;
      case SIGTERM:
      case SIGINT:
        if (!stopping_) {
          spdlog::info("{}: stopping every proxy", signal_name(static_cast<int>(info.ssi_signo)));
          stopping_ = true;
          kill_at_ = Clock::now() + kStopTimeout;
          for (auto& [name, cell] : cells_) {
            cell->restart_at.reset();
            for (Proxy& proxy : cell->proxies) ask_to_stop(proxy);
          }
        }
        break;
      default:
        break;
    }
  }
}

void Supervisor::on_readable(std::uint64_t tag) {
  const auto found = watches_.find(tag);
  if (found == watches_.end()) return;
  const Watch watch = found->second;
  const auto cell = cells_.find(watch.cell);
  if (cell == cells_.end()) return;
  Proxy* proxy = cell->second->by_pid(watch.pid);
  if (proxy == nullptr) return;
  if (watch.is_ready_pipe) {
    on_ready(*cell->second, *proxy);
    // A closed ready pipe (the proxy gone or done with it) is watched no more.
    if (!proxy->is_ready) return;
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, proxy->ready.get(), nullptr);
    watches_.erase(tag);
  } else {
    read_output(*cell->second, *proxy);
  }
}

void Supervisor::run_timers() {
  const auto now = Clock::now();
  for (auto& [name, cell] : cells_) {
    if (!cell->restart_at || *cell->restart_at > now || stopping_) continue;
    cell->restart_at.reset();
    if (!spawn(*cell, Role::serving)) {
      cell->restart_at = now + cell->backoff;
      cell->backoff = std::min(cell->backoff * 2, kMaxBackoff);
    }
  }
  if (kill_at_ && now >= *kill_at_) {
    for (auto& [name, cell] : cells_) {
      for (Proxy& proxy : cell->proxies) {
        spdlog::warn("cell {}: proxy {} still running after {} ms: SIGKILL", name, proxy.pid,
                     kStopTimeout.count());
        kill(proxy.pid, SIGKILL);
      }
    }
    kill_at_.reset();
  }
}

int Supervisor::next_timeout() const {
  std::optional<Clock::time_point> next = kill_at_;
  for (const auto& [name, cell] : cells_) {
    if (cell->restart_at && (!next || *cell->restart_at < *next)) next = cell->restart_at;
  }
  if (!next) return -1;
  const auto wait = std::chrono::ceil<milliseconds>(*next - Clock::now()).count();
  return static_cast<int>(std::clamp<std::int64_t>(wait, 0, 60000));
}

std::string Supervisor::summary_json() const {
  std::string json = "{\"cells\":[";
  bool first = true;
  const auto add = [&](const std::string& item) {
    if (!first) json += ',';
    first = false;
    json += item;
  };
  for (const std::string& ended : ended_) add(ended);
  for (const auto& [name, cell] : cells_) {
    add("{\"cell\":\"" + name + "\",\"starts\":" + std::to_string(cell->starts) +
        ",\"restarts\":" + std::to_string(cell->restarts) +
        ",\"crashes\":" + std::to_string(cell->crashes) + ",\"stats\":" + cell->last_stats + "}");
  }
  return json + "]}";
}

int Supervisor::run() {
  sigset_t handled;
  sigemptyset(&handled);
  for (const int signal_number : {SIGCHLD, SIGHUP, SIGTERM, SIGINT}) {
    sigaddset(&handled, signal_number);
  }
  if (sigprocmask(SIG_BLOCK, &handled, nullptr) != 0) return 1;
  signals_ = UniqueFd(signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC));
  epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  if (!signals_.valid() || !epoll_.valid()) {
    spdlog::error("cannot set up signals or epoll: {}", std::strerror(errno));
    return 1;
  }
  // Writes to a proxy's pipes after it died must not kill the supervisor.
  signal(SIGPIPE, SIG_IGN);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = 0;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &event);

  const std::vector<std::string> files = cell_files(options_.cells_dir);
  spdlog::info("supervising {} cell file{} in {}, proxies run {}", files.size(),
               files.size() == 1 ? "" : "s", options_.cells_dir, options_.binary);
  for (const std::string& file : files) start_cell(file);

  std::array<epoll_event, 32> ready{};
  while (!(stopping_ && std::all_of(cells_.begin(), cells_.end(), [](const auto& entry) {
             return entry.second->proxies.empty();
           }))) {
    const int count =
        epoll_wait(epoll_.get(), ready.data(), static_cast<int>(ready.size()), next_timeout());
    for (int i = 0; i < std::max(count, 0); ++i) {
      if (ready[i].data.u64 == 0) {
        on_signal();
      } else {
        on_readable(ready[i].data.u64);
      }
    }
    run_timers();
  }
  std::fprintf(stderr, "%s\n", summary_json().c_str());
  std::fflush(stderr);
  return 0;
}

}  // namespace

int run_supervisor(const SupervisorOptions& options) {
  Supervisor supervisor(options);
  return supervisor.run();
}

}  // namespace dnsgate::spawn
