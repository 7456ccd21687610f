#include "spawn/cell.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <variant>

#include "spawn/netns.hpp"
#include "upstream/tls_client.hpp"

namespace dnsgate::spawn {

FileIdentity identity_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {st.st_dev, st.st_ino,
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

std::vector<std::string> cell_files(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.path().extension() == ".yaml" && entry.is_regular_file(error)) {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool read_cell_text(const std::string& file, std::string& text) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return false;
  std::ostringstream whole;
  whole << in.rdbuf();
  text = whole.str();
  return true;
}

std::string cell_name_of(const std::string& file) {
  return std::filesystem::path(file).stem().string();
}

ConfigError unsupported_in_cell(const DnsProxyConfig& config) {
  // The proxy runs in the cell's namespace, where no scraper can reach it,
  // and the supervisor hands it only the DNS listeners: serving metrics
  // there needs a listener bound on the host side and passed down (and the
  // supervisor's summary already has each cell's stats). Until then the
  // block is refused rather than silently ignored (docs/metrics.md).
  if (config.metrics.listen) {
    return {"metrics", 0,
            "is not supported in a supervised cell yet; run the cell with `dnsgate run` to "
            "serve /metrics, or leave the block out"};
  }
  // A delivering sink would connect from inside the cell's namespace, and
  // its spool would need a directory the unprivileged proxy owns and the
  // supervisor's crash recovery writes to (docs/events.md).
  if (config.events.sink == EventSinkKind::nats || config.events.sink == EventSinkKind::http) {
    return {"events.sink", 0,
            "nats and http are not supported in a supervised cell yet; use sink: file (the "
            "supervisor recovers its events after a crash) or run the cell with `dnsgate run`"};
  }
  // The cell's proxy runs under seccomp, whose allow-list has no
  // io_uring_setup (docs/configuration.md, `io`): `auto` runs epoll there.
  if (config.io == IoBackend::uring) {
    return {"io", 0,
            "uring is not supported in a supervised cell (the proxy runs under seccomp); use "
            "auto or epoll"};
  }
  return {};
}

std::unique_ptr<Cell> prepare_cell(const std::string& file, const std::string& binary,
                                   std::string& why) {
  auto cell = std::make_unique<Cell>();
  cell->name = cell_name_of(file);
  cell->file = file;
  if (!read_cell_text(file, cell->text)) {
    why = "cannot read " + file + ": " + std::strerror(errno);
    return nullptr;
  }
  auto parsed = parse_config(cell->text);
  if (auto* error = std::get_if<ConfigError>(&parsed)) {
    why = error->describe(file);
    return nullptr;
  }
  cell->config = std::get<DnsProxyConfig>(std::move(parsed));
  for (std::size_t i = 0; i < cell->config.resolvers.size(); ++i) {
    if (std::string tls = tls_setup_error(cell->config.resolvers[i]); !tls.empty()) {
      why = ConfigError{"dnsAuthority.resolvers[" + std::to_string(i) + "]", 0, tls}.describe(file);
      return nullptr;
    }
  }
  if (cell->config.netns.empty()) {
    why = ConfigError{"netns", 0, "required by dnsgate supervise: the cell's network namespace"}
              .describe(file);
    return nullptr;
  }
  if (const ConfigError refusal = unsupported_in_cell(cell->config); !refusal.field.empty()) {
    why = refusal.describe(file);
    return nullptr;
  }
  auto user = resolve_user(cell->config.user, why);
  if (!user) return nullptr;
  cell->user = *user;
  cell->netns = open_netns(cell->config.netns, why);
  if (!cell->netns.valid()) return nullptr;
  {
    NetnsVisit inside(cell->netns.get(), why);
    if (!inside.ok()) return nullptr;
    if (cell->config.listen_udp) {
      cell->udp = bind_udp_listener(*cell->config.listen_udp, why);
      if (!cell->udp.valid()) return nullptr;
    }
    if (cell->config.listen_tcp) {
      cell->tcp = bind_tcp_listener(*cell->config.listen_tcp, why);
      if (!cell->tcp.valid()) return nullptr;
    }
  }
  cell->binary = identity_of(binary);
  return cell;
}

}  // namespace dnsgate::spawn
