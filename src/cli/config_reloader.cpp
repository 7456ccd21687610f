#include "cli/config_reloader.hpp"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>
#include <variant>

#include "upstream/tls_client.hpp"

namespace dnsgate::cli {

namespace {

// sem_post is async-signal-safe: the handler only wakes the thread, which
// does the reading and the checking.
sem_t reload_wanted;

extern "C" void request_reload(int /*signal*/) {
  const int saved = errno;
  sem_post(&reload_wanted);
  errno = saved;
}

}  // namespace

bool ConfigReloader::install_signal_handler(std::string& error) {
  if (sem_init(&reload_wanted, 0, 0) != 0) {
    error = std::strerror(errno);
    return false;
  }
  struct sigaction action {};
  action.sa_handler = request_reload;
  sigemptyset(&action.sa_mask);
  // Restarted: a SIGHUP must not make the event writer's or the loop's
  // system calls fail.
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGHUP, &action, nullptr) != 0) {
    error = std::strerror(errno);
    return false;
  }
  return true;
}

ConfigReloader::ConfigReloader(std::string path, const DnsProxyConfig& running,
                               ConfigMailbox& mailbox, MetricsBoard* board)
    : path_(std::move(path)), running_(running), mailbox_(mailbox), board_(board) {
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), "dnsgate-reload");
}

ConfigReloader::~ConfigReloader() {
  stopping_.store(true);
  sem_post(&reload_wanted);
  thread_.join();
}

void ConfigReloader::run() {
  while (true) {
    while (sem_wait(&reload_wanted) != 0 && errno == EINTR) {
    }
    if (stopping_.load()) return;
    // Several SIGHUPs while one reload ran: one more read covers them all.
    while (sem_trywait(&reload_wanted) == 0) {
    }
    reload_once();
  }
}

void ConfigReloader::refuse(const std::string& why) {
  refused_.fetch_add(1, std::memory_order_relaxed);
  if (board_ != nullptr) board_->reload_refused();
  spdlog::error("reload refused, the running config stays: {}", why);
}

void ConfigReloader::reload_once() {
  auto loaded = load_config_file(path_);
  if (const auto* error = std::get_if<ConfigError>(&loaded)) {
    refuse(error->describe(path_));
    return;
  }
  auto next = std::make_shared<DnsProxyConfig>(std::get<DnsProxyConfig>(std::move(loaded)));
  for (std::size_t i = 0; i < next->resolvers.size(); ++i) {
    const std::string why = tls_setup_error(next->resolvers[i]);
    if (!why.empty()) {
      refuse(
          ConfigError{"dnsAuthority.resolvers[" + std::to_string(i) + "]", 0, why}.describe(path_));
      return;
    }
  }
  const std::string field = restart_only_change(running_, *next);
  if (!field.empty()) {
    refuse(path_ + ": " + field + " changed, which takes a restart");
    return;
  }
  accepted_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("reload: {} accepted: policyVersion {}, {} allowlist entries, {} resolver(s)", path_,
               format_policy_version(next->policy_version), next->hostname_allowlist.size(),
               next->resolvers.size());
  mailbox_.post(std::move(next));
}

}  // namespace dnsgate::cli
