#include "dnsgate/config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
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

namespace dnsgate {

namespace {

// A config file larger than this is a mistake (a log file, /dev/zero), not
// an allowlist: refuse it rather than read without end.
constexpr std::size_t kMaxConfigMiB = 64;
constexpr std::size_t kMaxConfigOctets = kMaxConfigMiB << 20;

constexpr std::size_t kMaxCellLength = 128;
constexpr std::int64_t kMinUpstreamTimeoutMs = 1;
constexpr std::int64_t kMaxTcpConnectionsLimit = 65535;
constexpr std::int64_t kMaxTcpTimeoutMs = 3600000;

// The first error found ends the walk. The walk is deep and every level
// would otherwise have to test and forward a result; the exception never
// leaves parse_config.
struct Rejection {
  ConfigError error;
};

[[noreturn]] void reject(std::string field, int line, std::string message) {
  throw Rejection{ConfigError{std::move(field), line, std::move(message)}};
}

// yaml-cpp counts lines from 0 and marks nodes without a position with -1.
int line_of(const YAML::Node& node) {
  const int line = node.Mark().line;
  return line >= 0 ? line + 1 : 0;
}

std::string_view kind_of(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a single value";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// One `key: value` of a map, with everything an error message needs.
struct Field {
  std::string path;  // "dnsAuthority.resolvers[0].address"
  std::string key;   // "address"
  int line = 0;      // the key's line: a null value's own mark points past it
  YAML::Node value;
};

std::string child_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return fmt::format("{}.{}", parent, key);
}

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// An unknown key is most often a typo or a wrong case of a known one; say
// which, since the operator's intended setting is otherwise silently absent.
std::string unknown_field_message(std::string_view key,
                                  std::initializer_list<std::string_view> known) {
  std::string_view closest;
  std::size_t best = 3;  // suggest only within two edits
  const std::string key_lower = lower_ascii(key);
  for (std::string_view candidate : known) {
    const std::size_t distance = edit_distance(key_lower, lower_ascii(candidate));
    if (distance < best) {
      best = distance;
      closest = candidate;
    }
  }
  std::string message = fmt::format("unknown field \"{}\"", key);
  if (!closest.empty()) message += fmt::format(" (did you mean \"{}\"?)", closest);
  message += "; valid fields here:";
  const char* separator = " ";
  for (std::string_view candidate : known) {
    message += separator;
    message += candidate;
    separator = ", ";
  }
  return message;
}

// The entries of a map, in file order, after refusing unknown and
// duplicated keys (yaml-cpp keeps both copies of a duplicate and a lookup
// would silently use one of them).
std::vector<Field> read_map(const YAML::Node& node, const std::string& path, int line,
                            std::initializer_list<std::string_view> known) {
  if (!node.IsMap()) {
    reject(path, line, fmt::format("expected a map of fields, found {}", kind_of(node)));
  }
  std::vector<Field> fields;
  for (const auto& entry : node) {
    const YAML::Node& key_node = entry.first;
    const int key_line = line_of(key_node);
    if (!key_node.IsScalar()) {
      reject(path, key_line,
             fmt::format("field names must be plain words, found {}", kind_of(key_node)));
    }
    const std::string& key = key_node.Scalar();
    const std::string field_path = child_path(path, key);
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      reject(field_path, key_line, unknown_field_message(key, known));
    }
    for (const Field& seen : fields) {
      if (seen.key == key) {
        reject(field_path, key_line,
               fmt::format("duplicate field (first given on line {})", seen.line));
      }
    }
    fields.push_back(Field{field_path, key, key_line, entry.second});
  }
  return fields;
}

const Field* find_field(const std::vector<Field>& fields, std::string_view key) {
  for (const Field& field : fields) {
    if (field.key == key) return &field;
  }
  return nullptr;
}

std::string read_string(const YAML::Node& node, const std::string& path, int line) {
  if (!node.IsScalar())
    reject(path, line, fmt::format("expected a value, found {}", kind_of(node)));
  return node.Scalar();
}

// A plain YAML/JSON integer within [min, max]. A quoted number is refused:
// the file's author wrote a string, and a generator that quotes numbers
// may also have mangled them.
std::int64_t read_integer(const YAML::Node& node, const std::string& path, int line,
                          std::int64_t min, std::int64_t max) {
  const std::string range = fmt::format("an integer from {} to {}", min, max);
  if (!node.IsScalar())
    reject(path, line, fmt::format("expected {}, found {}", range, kind_of(node)));
  const std::string& text = node.Scalar();
  if (node.Tag() != "?") {
    reject(path, line, fmt::format("expected {}, found the quoted string \"{}\"", range, text));
  }
  std::int64_t value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  const bool digits_only =
      !text.empty() && std::all_of(text.begin() + (text.front() == '-' ? 1 : 0), text.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
  const auto [end, ec] = std::from_chars(first, last, value);
  if (!digits_only || text == "-" || ec != std::errc{} || end != last || value < min ||
      value > max) {
    reject(path, line, fmt::format("expected {}, found {}", range, text));
  }
  return value;
}

Endpoint read_endpoint(const Field& field) {
  const std::string text = read_string(field.value, field.path, field.line);
  auto endpoint = Endpoint::parse(text);
  if (!endpoint) {
    reject(field.path, field.line,
           fmt::format("\"{}\" is not an address and port (write 192.0.2.1:53 or "
                       "[2001:db8::1]:53; host names are not accepted)",
                       text));
  }
  return *endpoint;
}

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

struct ProtocolName {
  std::string_view name;
  UpstreamProtocol protocol;
  bool supported;
};

constexpr std::array<ProtocolName, 5> kProtocols{{
    {"do53-udp", UpstreamProtocol::do53_udp, true},
    {"do53-tcp", UpstreamProtocol::do53_tcp, true},
    {"dot", UpstreamProtocol::dot, false},
    {"doh", UpstreamProtocol::doh, false},
    {"doq", UpstreamProtocol::doq, false},
}};

std::string_view protocol_name(UpstreamProtocol protocol) {
  for (const auto& known : kProtocols) {
    if (known.protocol == protocol) return known.name;
  }
  return "unknown";
}

UpstreamProtocol read_protocol(const Field& field) {
  const std::string text = read_string(field.value, field.path, field.line);
  for (const auto& known : kProtocols) {
    if (known.name != text) continue;
    if (!known.supported) {
      reject(field.path, field.line,
             fmt::format("protocol \"{}\" is not supported yet; this version forwards over "
                         "do53-udp and do53-tcp only",
                         text));
    }
    return known.protocol;
  }
  reject(field.path, field.line,
         fmt::format("unknown protocol \"{}\"; valid protocols: do53-udp, do53-tcp, dot, doh, doq",
                     text));
}

// Returns the line of the resolver's address, for errors found later.
int read_resolvers(const Field& field, DnsProxyConfig& config) {
  if (!field.value.IsSequence()) {
    reject(field.path, field.line,
           fmt::format("expected a list with one resolver, found {}", kind_of(field.value)));
  }
  if (field.value.size() == 0) {
    reject(field.path, field.line, "expected exactly one resolver, found none");
  }
  if (field.value.size() > 1) {
    const YAML::Node second = field.value[1];
    reject(fmt::format("{}[1]", field.path), second.IsNull() ? field.line : line_of(second),
           fmt::format("only one resolver is supported in this version, found {}",
                       field.value.size()));
  }
  const YAML::Node item = field.value[0];
  const std::string item_path = fmt::format("{}[0]", field.path);
  const int item_line = item.IsNull() ? field.line : line_of(item);
  ResolverConfig resolver;
  int address_line = item_line;
  bool has_address = false;
  for (const Field& entry : read_map(item, item_path, item_line, {"protocol", "address"})) {
    if (entry.key == "protocol") {
      resolver.protocol = read_protocol(entry);
    } else {
      resolver.address = read_endpoint(entry);
      address_line = entry.line;
      has_address = true;
    }
  }
  if (!has_address)
    reject(child_path(item_path, "address"), item_line, "required field is missing");
  config.resolvers.assign(1, resolver);
  return address_line;
}

// Returns the line of the resolver's address, for errors found later.
int read_dns_authority(const Field& authority, DnsProxyConfig& config) {
  const auto fields =
      read_map(authority.value, authority.path, authority.line, {"hostnameAllowlist", "resolvers"});
  int address_line = 0;
  for (const Field& field : fields) {
    if (field.key == "hostnameAllowlist") {
      read_allowlist(field, config);
    } else {
      address_line = read_resolvers(field, config);
    }
  }
  if (!find_field(fields, "hostnameAllowlist")) {
    reject(child_path(authority.path, "hostnameAllowlist"), authority.line,
           "required field is missing (write [] to allow nothing)");
  }
  if (!find_field(fields, "resolvers")) {
    reject(child_path(authority.path, "resolvers"), authority.line, "required field is missing");
  }
  return address_line;
}

Rcode read_deny_rcode(const Field& field) {
  const std::string text = lower_ascii(read_string(field.value, field.path, field.line));
  if (text == "refused") return Rcode::refused;
  if (text == "nxdomain") return Rcode::nxdomain;
  reject(field.path, field.line,
         fmt::format("unknown rcode \"{}\"; valid: REFUSED, NXDOMAIN", field.value.Scalar()));
}

void read_events(const Field& events, DnsProxyConfig& config) {
  const auto fields = read_map(events.value, events.path, events.line, {"sink", "path"});
  const Field* path = find_field(fields, "path");
  for (const Field& field : fields) {
    if (field.key == "sink") {
      const std::string sink = read_string(field.value, field.path, field.line);
      if (sink == "stdout") {
        config.events.sink = EventSinkKind::stdout_lines;
      } else if (sink == "file") {
        config.events.sink = EventSinkKind::file;
      } else {
        reject(field.path, field.line,
               fmt::format("unknown sink \"{}\"; valid sinks: stdout, file", sink));
      }
    } else {
      config.events.path = read_string(field.value, field.path, field.line);
      if (config.events.path.empty()) reject(field.path, field.line, "must not be empty");
    }
  }
  if (config.events.sink == EventSinkKind::file && path == nullptr) {
    reject(child_path(events.path, "path"), events.line, "required when sink is file");
  }
  // A path next to sink stdout would be silently unused: the operator
  // believes events go to a file that never appears.
  if (config.events.sink == EventSinkKind::stdout_lines && path != nullptr) {
    reject(path->path, path->line, "is used only with sink: file (set sink: file or remove path)");
  }
}

DnsProxyConfig read_config(const YAML::Node& root) {
  DnsProxyConfig config;
  const int root_line = line_of(root);
  const auto fields = read_map(root, "", root_line,
                               {"cell", "listen", "dnsAuthority", "upstreamTimeoutMs",
                                "maxInflight", "denyRcode", "tcp", "events"});
  int address_line = 0;
  for (const Field& field : fields) {
    if (field.key == "cell") {
      config.cell = read_cell(field);
    } else if (field.key == "listen") {
      read_listen(field, config);
    } else if (field.key == "dnsAuthority") {
      address_line = read_dns_authority(field, config);
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
    } else {
      read_events(field, config);
    }
  }
  if (!find_field(fields, "listen")) reject("listen", root_line, "required field is missing");
  if (!find_field(fields, "dnsAuthority")) {
    reject("dnsAuthority", root_line, "required field is missing");
  }
  // Forwarding to our own listener would bounce every allowed query back
  // into the proxy until it times out.
  for (const auto& [name, listener] :
       {std::pair{"listen.udp", config.listen_udp}, std::pair{"listen.tcp", config.listen_tcp}}) {
    if (listener && config.resolvers.front().address == *listener) {
      reject("dnsAuthority.resolvers[0].address", address_line,
             fmt::format("{} is the proxy's own listener ({}): queries would loop",
                         listener->to_string(), name));
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

std::string summarize(const DnsProxyConfig& config) {
  std::string allowlist;
  if (config.hostname_allowlist.empty()) {
    allowlist = "allowlist EMPTY (every query is refused)";
  } else {
    allowlist = fmt::format("allowlist {} entries ({} literal, {} wildcard)",
                            config.hostname_allowlist.size(), config.allowlist.literal_count(),
                            config.allowlist.wildcard_count());
  }
  std::string listen;
  if (config.listen_udp) listen += "udp " + config.listen_udp->to_string();
  if (config.listen_tcp) {
    listen += listen.empty() ? "" : " and ";
    listen += fmt::format("tcp {} (maxConnections {}, maxInflightPerConnection {})",
                          config.listen_tcp->to_string(), config.tcp.max_connections,
                          config.tcp.max_inflight_per_connection);
  }
  std::string upstream = "none";
  if (!config.resolvers.empty()) {
    upstream = fmt::format("{} {}", protocol_name(config.resolvers.front().protocol),
                           config.resolvers.front().address.to_string());
  }
  const std::string events = config.events.sink == EventSinkKind::file
                                 ? fmt::format("file {}", config.events.path)
                                 : std::string("stdout");
  return fmt::format(
      "config ok: cell {}, listen {}, upstream {}, {}, upstreamTimeoutMs {}, maxInflight {}, "
      "denyRcode {}, events {}",
      config.cell, listen, upstream, allowlist, config.upstream_timeout.count(),
      config.max_inflight, rcode_name(config.deny_rcode), events);
}

}  // namespace dnsgate
