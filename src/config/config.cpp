#include "dnsgate/config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <gnutls/crypto.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "config/resolvers.hpp"
#include "config/yaml_fields.hpp"

namespace dnsgate {

namespace {

using namespace config_reader;  // NOLINT(google-build-using-namespace)

// A config file larger than this is a mistake (a log file, /dev/zero), not
// an allowlist: refuse it rather than read without end.
constexpr std::size_t kMaxConfigMiB = 64;
constexpr std::size_t kMaxConfigOctets = kMaxConfigMiB << 20;

constexpr std::size_t kMaxCellLength = 128;
constexpr std::int64_t kMinUpstreamTimeoutMs = 1;
constexpr std::int64_t kMaxTcpConnectionsLimit = 65535;
constexpr std::int64_t kMaxTcpTimeoutMs = 3600000;

std::string read_cell(const Field& field) {
  std::string cell = read_string(field.value, field.path, field.line);
  if (cell.empty() || cell.size() > kMaxCellLength) {
    reject(field.path, field.line,
           fmt::format("must be 1 to {} characters long, found {}", kMaxCellLength, cell.size()));
  }
  // The cell id goes into every event's `source` and into file names
  // operators derive from it: keep it to characters that need no escaping.
  const auto allowed = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
  };
  if (!std::all_of(cell.begin(), cell.end(), allowed)) {
    reject(field.path, field.line,
           fmt::format("\"{}\" may contain only ASCII letters, digits, '.', '_' and '-'", cell));
  }
  return cell;
}

void read_listen(const Field& listen, DnsProxyConfig& config) {
  const auto fields = read_map(listen.value, listen.path, listen.line, {"udp", "tcp"});
  for (const Field& field : fields) {
    if (field.key == "udp") {
      config.listen_udp = read_endpoint(field);
    } else {
      config.listen_tcp = read_endpoint(field);
    }
  }
  if (!config.listen_udp && !config.listen_tcp) {
    reject(listen.path, listen.line, "needs udp, tcp or both");
  }
}

// The `tcp:` block: each limit optional, defaults in TcpLimits.
void read_tcp_limits(const Field& tcp, DnsProxyConfig& config) {
  const auto fields =
      read_map(tcp.value, tcp.path, tcp.line,
               {"maxConnections", "maxInflightPerConnection", "idleTimeoutMs", "frameTimeoutMs"});
  for (const Field& field : fields) {
    if (field.key == "maxConnections") {
      config.tcp.max_connections = static_cast<std::size_t>(
          read_integer(field.value, field.path, field.line, 1, kMaxTcpConnectionsLimit));
    } else if (field.key == "maxInflightPerConnection") {
      config.tcp.max_inflight_per_connection =
          static_cast<std::size_t>(read_integer(field.value, field.path, field.line, 1, 65535));
    } else if (field.key == "idleTimeoutMs") {
      config.tcp.idle_timeout = std::chrono::milliseconds(
          read_integer(field.value, field.path, field.line, 1, kMaxTcpTimeoutMs));
    } else {
      config.tcp.frame_timeout = std::chrono::milliseconds(
          read_integer(field.value, field.path, field.line, 1, kMaxTcpTimeoutMs));
    }
  }
}

// A name under /run/netns/ (as `ip netns` makes them) or an absolute path
// (/proc/PID/ns/net, a bind mount elsewhere).
std::string read_netns(const Field& field) {
  std::string netns = read_string(field.value, field.path, field.line);
  if (netns.empty() || netns.size() > 4096) {
    reject(field.path, field.line, "must be a namespace name or an absolute path");
  }
  if (netns.front() != '/' &&
      (netns.find('/') != std::string::npos || netns == "." || netns == "..")) {
    reject(field.path, field.line,
           fmt::format("\"{}\" is neither a name under /run/netns/ nor an absolute path", netns));
  }
  return netns;
}

// A user name (or numeric uid) the proxy runs as; resolved by the supervisor.
std::string read_user(const Field& field) {
  std::string user = read_string(field.value, field.path, field.line);
  const auto allowed = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
  };
  if (user.empty() || user.size() > 32 || !std::all_of(user.begin(), user.end(), allowed)) {
    reject(field.path, field.line,
           fmt::format("\"{}\" is not a user name (1-32 of letters, digits, '.', '_', '-')", user));
  }
  return user;
}

void read_allowlist(const Field& field, DnsProxyConfig& config) {
  if (!field.value.IsSequence()) {
    reject(field.path, field.line,
           fmt::format("expected a list of host names (write [] to allow nothing), found {}",
                       kind_of(field.value)));
  }
  std::vector<std::string> entries;
  std::vector<int> lines;
  for (std::size_t i = 0; i < field.value.size(); ++i) {
    const YAML::Node item = field.value[i];
    const std::string item_path = fmt::format("{}[{}]", field.path, i);
    const int item_line = item.IsNull() ? field.line : line_of(item);
    if (!item.IsScalar()) {
      reject(item_path, item_line, fmt::format("expected a host name, found {}", kind_of(item)));
    }
    entries.push_back(item.Scalar());
    lines.push_back(item_line);
  }
  auto built = Allowlist::build(entries);
  if (auto* error = std::get_if<AllowlistError>(&built)) {
    const std::size_t index = error->index < entries.size() ? error->index : 0;
    reject(fmt::format("{}[{}]", field.path, index), lines.empty() ? field.line : lines[index],
           fmt::format("\"{}\": {}", error->entry, error->message));
  }
  config.allowlist = std::move(std::get<Allowlist>(built));
  config.hostname_allowlist = std::move(entries);
}

// Returns the line of each resolver's address, for errors found later.
std::vector<int> read_dns_authority(const Field& authority, DnsProxyConfig& config) {
  const auto fields =
      read_map(authority.value, authority.path, authority.line, {"hostnameAllowlist", "resolvers"});
  std::vector<int> address_lines;
  for (const Field& field : fields) {
    if (field.key == "hostnameAllowlist") {
      read_allowlist(field, config);
    } else {
      address_lines = read_resolvers(field, config);
    }
  }
  if (!find_field(fields, "hostnameAllowlist")) {
    reject(child_path(authority.path, "hostnameAllowlist"), authority.line,
           "required field is missing (write [] to allow nothing)");
  }
  if (!find_field(fields, "resolvers")) {
    reject(child_path(authority.path, "resolvers"), authority.line, "required field is missing");
  }
  return address_lines;
}

IoBackend read_io_backend(const Field& field) {
  const std::string text = read_string(field.value, field.path, field.line);
  if (const auto backend = parse_io_backend(text)) return *backend;
  reject(field.path, field.line,
         fmt::format("unknown I/O backend \"{}\"; valid: auto, epoll, uring", text));
}

Rcode read_deny_rcode(const Field& field) {
  const std::string text = lower_ascii(read_string(field.value, field.path, field.line));
  if (text == "refused") return Rcode::refused;
  if (text == "nxdomain") return Rcode::nxdomain;
  reject(field.path, field.line,
         fmt::format("unknown rcode \"{}\"; valid: REFUSED, NXDOMAIN", field.value.Scalar()));
}

DnsProxyConfig read_config(const YAML::Node& root) {
  DnsProxyConfig config;
  const int root_line = line_of(root);
  const auto fields = read_map(
      root, "", root_line,
      {"cell", "listen", "dnsAuthority", "resolverPolicy", "upstreamTimeoutMs", "maxInflight",
       "denyRcode", "tcp", "events", "dnssec", "metrics", "io", "netns", "user"});
  std::vector<int> address_lines;
  for (const Field& field : fields) {
    if (field.key == "cell") {
      config.cell = read_cell(field);
    } else if (field.key == "listen") {
      read_listen(field, config);
    } else if (field.key == "dnsAuthority") {
      address_lines = read_dns_authority(field, config);
    } else if (field.key == "resolverPolicy") {
      config.resolver_policy = read_resolver_policy(field);
    } else if (field.key == "upstreamTimeoutMs") {
      config.upstream_timeout = std::chrono::milliseconds(read_integer(
          field.value, field.path, field.line, kMinUpstreamTimeoutMs, kMaxUpstreamTimeout.count()));
    } else if (field.key == "maxInflight") {
      config.max_inflight = static_cast<std::size_t>(read_integer(
          field.value, field.path, field.line, 1, static_cast<std::int64_t>(kMaxInflightLimit)));
    } else if (field.key == "denyRcode") {
      config.deny_rcode = read_deny_rcode(field);
    } else if (field.key == "tcp") {
      read_tcp_limits(field, config);
    } else if (field.key == "dnssec") {
      read_dnssec(field, config);
    } else if (field.key == "metrics") {
      read_metrics(field, config);
    } else if (field.key == "io") {
      config.io = read_io_backend(field);
    } else if (field.key == "netns") {
      config.netns = read_netns(field);
    } else if (field.key == "user") {
      config.user = read_user(field);
    } else {
      read_events(field, config);
    }
  }
  if (!find_field(fields, "listen")) reject("listen", root_line, "required field is missing");
  config.policy_version = policy_version_of(config.hostname_allowlist);
  if (!find_field(fields, "dnsAuthority")) {
    reject("dnsAuthority", root_line, "required field is missing");
  }
  // Forwarding to our own listener would bounce every allowed query back
  // into the proxy until it times out.
  for (std::size_t i = 0; i < config.resolvers.size(); ++i) {
    for (const auto& [name, listener] :
         {std::pair{"listen.udp", config.listen_udp}, std::pair{"listen.tcp", config.listen_tcp}}) {
      if (listener && config.resolvers[i].address == *listener) {
        reject(fmt::format("dnsAuthority.resolvers[{}].address", i), address_lines[i],
               fmt::format("{} is the proxy's own listener ({}): queries would loop",
                           listener->to_string(), name));
      }
    }
  }
  return config;
}

// Walks the text's documents with yaml-cpp's event API, at most two of
// them: YAML::LoadAll in yaml-cpp 0.7 loops forever, allocating, on input
// as small as "{}," (found by fuzz/config_fuzz). Returns the 1-based line
// of a second document, if there is one.
class DocumentCounter final : public YAML::EventHandler {
 public:
  int documents = 0;
  int second_line = 0;  // where the second document's content begins

  void OnDocumentStart(const YAML::Mark& mark) override {
    ++documents;
    if (documents == 2) second_line = mark.line + 1;
    second_content_seen = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { content(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { content(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    content(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    content(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    content(mark);
  }
  void OnMapEnd() override {}

 private:
  void content(const YAML::Mark& mark) {
    if (documents == 2 && !second_content_seen) second_line = mark.line + 1;
    second_content_seen = true;
  }
  bool second_content_seen = false;
};

std::optional<int> second_document_line(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
  }
  if (counter.documents < 2) return std::nullopt;
  return counter.second_line;
}

std::string_view rcode_name(Rcode rcode) {
  return rcode == Rcode::nxdomain ? "NXDOMAIN" : "REFUSED";
}

}  // namespace

std::string ConfigError::describe(std::string_view file_name) const {
  std::string text(file_name);
  if (line > 0) text += fmt::format(":{}", line);
  text += ": ";
  if (!field.empty()) {
    text += field;
    text += ": ";
  }
  text += message;
  return text;
}

ConfigResult parse_config(std::string_view text) {
  try {
    const std::string owned(text);
    if (const auto second = second_document_line(owned)) {
      return ConfigError{"", *second,
                         "a second YAML document: the configuration is one document only"};
    }
    const YAML::Node root = YAML::Load(owned);
    if (root.IsNull()) return ConfigError{"", 0, "the configuration is empty"};
    if (!root.IsMap()) {
      return ConfigError{
          "", line_of(root),
          fmt::format("the top level must be a map of fields, found {}", kind_of(root))};
    }
    return read_config(root);
  } catch (const Rejection& rejection) {
    return rejection.error;
  } catch (const YAML::Exception& error) {
    const int line = error.mark.line >= 0 ? error.mark.line + 1 : 0;
    std::string message = fmt::format("YAML syntax error: {}", error.msg);
    // The usual way to hit this is an unquoted wildcard entry.
    if (error.msg == YAML::ErrorMsg::UNKNOWN_ANCHOR) {
      message +=
          " (an unquoted '*' starts a YAML alias: quote wildcard entries, as in "
          "\"*.example.com\")";
    }
    return ConfigError{"", line, std::move(message)};
  } catch (const std::exception& error) {
    return ConfigError{"", 0, fmt::format("cannot load the configuration: {}", error.what())};
  }
}

ConfigResult load_config_file(const std::string& path) {
  const auto failure = [&path](int error) {
    return ConfigError{"", 0,
                       fmt::format("cannot read {}: {}", path,
                                   std::error_code(error, std::generic_category()).message())};
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failure(errno);
  std::string text;
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t count = ::read(fd, buffer, sizeof buffer);
    if (count < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return failure(error);
    }
    if (count == 0) break;
    if (text.size() + static_cast<std::size_t>(count) > kMaxConfigOctets) {
      ::close(fd);
      return ConfigError{"", 0,
                         fmt::format("cannot read {}: larger than {} MiB", path, kMaxConfigMiB)};
    }
    text.append(buffer, static_cast<std::size_t>(count));
  }
  ::close(fd);
  return parse_config(text);
}

std::uint64_t policy_version_of(const std::vector<std::string>& entries) {
  std::vector<std::string> canonical;
  canonical.reserve(entries.size());
  for (const std::string& entry : entries) {
    std::string name = entry;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (name.size() > 1 && name.back() == '.') name.pop_back();
    canonical.push_back(std::move(name));
  }
  std::sort(canonical.begin(), canonical.end());
  canonical.erase(std::unique(canonical.begin(), canonical.end()), canonical.end());
  std::string text;
  for (const std::string& name : canonical) {
    text += name;
    text += '\n';
  }
  std::array<unsigned char, 32> digest{};
  gnutls_hash_fast(GNUTLS_DIG_SHA256, text.data(), text.size(), digest.data());
  std::uint64_t version = 0;
  for (std::size_t i = 0; i < 6; ++i) version = version << 8 | digest[i];
  return version;
}

std::string format_policy_version(std::uint64_t version) {
  return fmt::format("{:012x}", version & 0xFFFFFFFFFFFFULL);
}

std::optional<IoBackend> parse_io_backend(std::string_view text) noexcept {
  if (text == "auto") return IoBackend::automatic;
  if (text == "epoll") return IoBackend::epoll;
  if (text == "uring") return IoBackend::uring;
  return std::nullopt;
}

std::string_view io_backend_name(IoBackend backend) noexcept {
  switch (backend) {
    case IoBackend::epoll:
      return "epoll";
    case IoBackend::uring:
      return "uring";
    case IoBackend::automatic:
      break;
  }
  return "auto";
}

std::string summarize(const DnsProxyConfig& config) {
  std::string allowlist;
  if (config.hostname_allowlist.empty()) {
    allowlist = "allowlist EMPTY (every query is refused)";
  } else {
    allowlist = fmt::format("allowlist {} entries ({} literal, {} wildcard)",
                            config.hostname_allowlist.size(), config.allowlist.literal_count(),
                            config.allowlist.wildcard_count());
  }
  allowlist += fmt::format(", policyVersion {}", format_policy_version(config.policy_version));
  std::string listen;
  if (config.listen_udp) listen += "udp " + config.listen_udp->to_string();
  if (config.listen_tcp) {
    listen += listen.empty() ? "" : " and ";
    listen += fmt::format("tcp {} (maxConnections {}, maxInflightPerConnection {})",
                          config.listen_tcp->to_string(), config.tcp.max_connections,
                          config.tcp.max_inflight_per_connection);
  }
  std::string upstream = "none";
  if (config.resolvers.size() == 1) {
    upstream = describe_resolver(config.resolvers.front());
  } else if (!config.resolvers.empty()) {
    upstream =
        fmt::format("{} of {}:", policy_name(config.resolver_policy), config.resolvers.size());
    for (std::size_t i = 0; i < config.resolvers.size(); ++i) {
      upstream += fmt::format(" [{}] {}", i, describe_resolver(config.resolvers[i]));
    }
  }
  const std::string events = describe_events(config.events, config.cell);
  return fmt::format(
             "config ok: cell {}, listen {}, upstream {}, {}, upstreamTimeoutMs {}, maxInflight "
             "{}, "
             "denyRcode {}, events {}, {}, io {}",
             config.cell, listen, upstream, allowlist, config.upstream_timeout.count(),
             config.max_inflight, rcode_name(config.deny_rcode), events,
             describe_dnssec(config.dnssec), io_backend_name(config.io)) +
         (config.netns.empty() ? std::string()
                               : fmt::format(", netns {}, user {}", config.netns, config.user));
}

}  // namespace dnsgate
