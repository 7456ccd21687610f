// Hot reload for `dnsgate run` (DESIGN.md §12, docs/running.md "Reloading
// the config"): SIGHUP re-reads the config file on a thread of its own,
// checks it as `dnsgate check` would, and hands it to the loop, which puts
// it in force between two turns. A config that fails is refused: logged,
// counted, and the running one stays.
#pragma once

#include <semaphore.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "dnsgate/config.hpp"
#include "dnsgate/metrics.hpp"
#include "dnsgate/proxy.hpp"

namespace dnsgate::cli {

class ConfigReloader {
 public:
  // `running` is the config the loop started with (the fields a reload may
  // not change are compared with it); `board` may be null.
  ConfigReloader(std::string path, const DnsProxyConfig& running, ConfigMailbox& mailbox,
                 MetricsBoard* board);
  ~ConfigReloader();  // stops and joins the thread
  ConfigReloader(const ConfigReloader&) = delete;
  ConfigReloader& operator=(const ConfigReloader&) = delete;

  // Installs the SIGHUP handler that wakes the reloader (one per process).
  static bool install_signal_handler(std::string& error);

  std::uint64_t refused() const noexcept { return refused_.load(std::memory_order_relaxed); }
  std::uint64_t accepted() const noexcept { return accepted_.load(std::memory_order_relaxed); }

 private:
  void run();
  void reload_once();
  void refuse(const std::string& why);

  std::string path_;
  const DnsProxyConfig& running_;
  ConfigMailbox& mailbox_;
  MetricsBoard* board_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::thread thread_;
};

}  // namespace dnsgate::cli
