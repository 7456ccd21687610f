// A cell as the supervisor holds it (DESIGN.md §10): its checked file,
// the namespace and listeners it keeps across restarts, and its proxies.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/socket.hpp"
#include "spawn/privileges.hpp"

namespace dnsgate::spawn {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The first delay before a crash-looping proxy is started again.
inline constexpr milliseconds kFirstBackoff{100};

// The binary's identity: a new file at the same path is a new binary.
struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

FileIdentity identity_of(const std::string& path);

enum class Role : std::uint8_t { serving, replacement, retiring };

struct Proxy {
  pid_t pid = -1;
  Role role = Role::serving;
  UniqueFd output;  // the proxy's stderr
  UniqueFd ready;   // one byte once it serves
  UniqueFd events;  // its shared event ring: what it queued and had not written
  bool is_ready = false;
  Clock::time_point started{};
  Clock::time_point stop_sent{};
  bool stop_requested = false;
  std::string partial;
};

struct Cell {
  std::string name;  // the file's base name
  std::string file;
  std::string text;  // the file as checked
  DnsProxyConfig config;
  UserIds user;
  FileIdentity binary;
  UniqueFd netns;
  UniqueFd udp;
  UniqueFd tcp;
  std::vector<Proxy> proxies;
  std::uint64_t starts = 0;
  std::uint64_t restarts = 0;
  std::uint64_t crashes = 0;
  milliseconds backoff = kFirstBackoff;
  std::optional<Clock::time_point> restart_at;
  std::string last_stats = "null";
  bool removing = false;  // stopped for good once its proxies are gone

  Proxy* with_role(Role role) {
    for (Proxy& proxy : proxies) {
      if (proxy.role == role) return &proxy;
    }
    return nullptr;
  }
  Proxy* by_pid(pid_t pid) {
    for (Proxy& proxy : proxies) {
      if (proxy.pid == pid) return &proxy;
    }
    return nullptr;
  }
};

// Every *.yaml of `dir`, sorted.
std::vector<std::string> cell_files(const std::string& dir);

// A cell's name: its file's base name without .yaml.
std::string cell_name_of(const std::string& file);

// The whole file into `text`; false when it cannot be read (errno says why).
bool read_cell_text(const std::string& file, std::string& text);

// What a cell file may not have under the supervisor yet (metrics, a
// delivering event sink): the field and why; field empty when none.
ConfigError unsupported_in_cell(const DnsProxyConfig& config);

// Everything a cell needs before a proxy can run: the checked config, its
// user, its namespace, its listeners bound there. None, and `why` set (the
// config error with file and line, a missing namespace, an address in
// use...), when it cannot run. `binary` is the dnsgate its proxies run.
std::unique_ptr<Cell> prepare_cell(const std::string& file, const std::string& binary,
                                   std::string& why);

}  // namespace dnsgate::spawn
