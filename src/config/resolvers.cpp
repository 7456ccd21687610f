#include "config/resolvers.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>

namespace dnsgate::config_reader {

namespace {

constexpr std::size_t kMaxUrlLength = 512;
constexpr std::size_t kMaxServerNameLength = 253;
constexpr std::uint16_t kDefaultEncryptedPort = 853;  // DoT (RFC 7858) and DoQ (RFC 9250)
constexpr std::uint16_t kDefaultHttpsPort = 443;

struct ProtocolName {
  std::string_view name;
  UpstreamProtocol protocol;
};

constexpr std::array<ProtocolName, 5> kProtocols{{
    {"do53-udp", UpstreamProtocol::do53_udp},
    {"do53-tcp", UpstreamProtocol::do53_tcp},
    {"dot", UpstreamProtocol::dot},
    {"doh", UpstreamProtocol::doh},
    {"doq", UpstreamProtocol::doq},
}};

bool is_encrypted(UpstreamProtocol protocol) {
  return protocol == UpstreamProtocol::dot || protocol == UpstreamProtocol::doh ||
         protocol == UpstreamProtocol::doq;
}

UpstreamProtocol read_protocol(const Field& field) {
  const std::string text = read_string(field.value, field.path, field.line);
  for (const auto& known : kProtocols) {
    if (known.name == text) return known.protocol;
  }
  reject(field.path, field.line,
         fmt::format("unknown protocol \"{}\"; valid protocols: do53-udp, do53-tcp, dot, doh, doq",
                     text));
}

// Resolver names live as long as the process: events on their way to a
// sink point at them, whatever happens to the config they came from.
std::string_view intern(std::string text) {
  static std::mutex lock;
  static std::deque<std::string> names;
  const std::lock_guard<std::mutex> guard(lock);
  for (const std::string& name : names) {
    if (name == text) return name;
  }
  return names.emplace_back(std::move(text));
}

std::string_view resolver_uri(const ResolverConfig& resolver) {
  switch (resolver.protocol) {
    case UpstreamProtocol::dot:
      return intern("dot://" + resolver.address.to_string());
    case UpstreamProtocol::doq:
      return intern("doq://" + resolver.address.to_string());
    case UpstreamProtocol::doh:
      return intern(resolver.url);
    case UpstreamProtocol::do53_udp:
    case UpstreamProtocol::do53_tcp:
      break;
  }
  return intern(resolver.address.to_string());
}

// "192.0.2.1:853", or for the encrypted protocols also "192.0.2.1" with
// their default port.
Endpoint read_resolver_address(const Field& field, UpstreamProtocol protocol) {
  const std::string text = read_string(field.value, field.path, field.line);
  if (auto endpoint = Endpoint::parse(text)) return *endpoint;
  if (protocol == UpstreamProtocol::dot || protocol == UpstreamProtocol::doq) {
    const bool v6 = text.find(':') != std::string::npos && text.front() != '[';
    const std::string with_port = v6 ? fmt::format("[{}]:{}", text, kDefaultEncryptedPort)
                                     : fmt::format("{}:{}", text, kDefaultEncryptedPort);
    if (auto endpoint = Endpoint::parse(with_port)) return *endpoint;
  }
  return read_endpoint(field);  // rejects with the usual message
}

bool is_host_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxServerNameLength || name.front() == '.' ||
      name.back() == '.') {
    return false;
  }
  std::size_t label = 0;
  for (const char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return true;
}

// RFC 7858 4.2: base64 of a SHA-256 digest, so 44 characters ending in '='.
bool is_spki_pin(std::string_view pin) {
  if (pin.size() != 44 || pin[43] != '=') return false;
  const auto base64 = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '/';
  };
  return std::all_of(pin.begin(), pin.begin() + 43, base64);
}

std::vector<std::string> read_pins(const Field& field) {
  if (!field.value.IsSequence() || field.value.size() == 0) {
    reject(field.path, field.line,
           "expected a list of base64 SHA-256 SubjectPublicKeyInfo digests (RFC 7858 4.2)");
  }
  std::vector<std::string> pins;
  for (std::size_t i = 0; i < field.value.size(); ++i) {
    const YAML::Node item = field.value[i];
    const std::string path = fmt::format("{}[{}]", field.path, i);
    const int line = item.IsNull() ? field.line : line_of(item);
    std::string pin = read_string(item, path, line);
    if (!is_spki_pin(pin)) {
      reject(path, line,
             fmt::format("\"{}\" is not a base64 SHA-256 digest (44 characters ending in '=', "
                         "e.g. the output of certtool --pubkey-info ... | sha256 | base64)",
                         pin));
    }
    pins.push_back(std::move(pin));
  }
  return pins;
}

// https://host[:port]/path: the host is what the certificate must name
// (unless tlsServerName says otherwise) and the request's :authority.
void read_url(const Field& field, ResolverConfig& resolver,
              std::optional<Endpoint>& address_from_url, std::string& host_name) {
  const std::string url = read_string(field.value, field.path, field.line);
  const auto bad = [&](std::string_view why) {
    reject(field.path, field.line,
           fmt::format("\"{}\" is not a DoH URL ({}); write https://host[:port]/path", url, why));
  };
  if (url.size() > kMaxUrlLength) bad(fmt::format("longer than {} characters", kMaxUrlLength));
  for (const char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == '"' || c == '\\' || c == '#') {
      bad("it has a space, a quote, a backslash, a '#' or a character outside printable ASCII");
    }
  }
  constexpr std::string_view kScheme = "https://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) bad("the scheme must be https");
  const std::string rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  if (slash == std::string::npos) bad("it has no path");
  const std::string authority = rest.substr(0, slash);
  if (authority.find('@') != std::string::npos) bad("user information is not accepted");
  std::string host = authority;
  std::uint16_t port = kDefaultHttpsPort;
  std::size_t host_end = std::string::npos;
  if (!authority.empty() && authority.front() == '[') {
    host_end = authority.find(']');
    if (host_end == std::string::npos) bad("an IPv6 host needs its closing ']'");
    host = authority.substr(0, host_end + 1);
    if (host_end + 1 < authority.size() && authority[host_end + 1] != ':') bad("bad port");
    host_end = host_end + 1 < authority.size() ? host_end + 1 : std::string::npos;
  } else {
    host_end = authority.rfind(':');
    if (host_end != std::string::npos) host = authority.substr(0, host_end);
  }
  if (host_end != std::string::npos) {
    const std::string digits = authority.substr(host_end + 1);
    int value = 0;
    if (digits.empty() || digits.size() > 5 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        (value = std::stoi(digits)) < 1 || value > 65535) {
      bad("the port must be 1 to 65535");
    }
    port = static_cast<std::uint16_t>(value);
  }
  if (host.empty()) bad("it has no host");
  if (auto literal = Endpoint::parse(fmt::format("{}:{}", host, port))) {
    address_from_url = literal;
  } else if (!is_host_name(host)) {
    bad("the host is neither a name nor an IP address");
  }
  resolver.url = url;
  resolver.url_host = authority;
  resolver.url_path = rest.substr(slash);
  if (!address_from_url) host_name = host;
}

ResolverConfig read_resolver(const YAML::Node& item, const std::string& path, int item_line,
                             int& address_line) {
  ResolverConfig resolver;
  const auto fields = read_map(
      item, path, item_line, {"protocol", "address", "url", "tlsServerName", "caFile", "spkiPins"});
  // Without a protocol a resolver is plain DNS over UDP, as it always was.
  if (const Field* protocol = find_field(fields, "protocol")) {
    resolver.protocol = read_protocol(*protocol);
  }
  const bool encrypted = is_encrypted(resolver.protocol);
  std::optional<Endpoint> address_from_url;
  std::string url_host_name;  // the URL's host when it is a name
  bool has_address = false;
  address_line = item_line;
  for (const Field& field : fields) {
    if (field.key == "address") {
      resolver.address = read_resolver_address(field, resolver.protocol);
      address_line = field.line;
      has_address = true;
    } else if (field.key == "url") {
      if (resolver.protocol != UpstreamProtocol::doh) {
        reject(field.path, field.line, "is used only with protocol: doh");
      }
      read_url(field, resolver, address_from_url, url_host_name);
    } else if (field.key != "protocol" && !encrypted) {
      reject(field.path, field.line,
             fmt::format("is used only with protocol dot, doh or doq, not {}",
                         protocol_name(resolver.protocol)));
    } else if (field.key == "tlsServerName") {
      resolver.tls_server_name = read_string(field.value, field.path, field.line);
      if (!is_host_name(resolver.tls_server_name)) {
        reject(field.path, field.line,
               fmt::format("\"{}\" is not a host name", resolver.tls_server_name));
      }
    } else if (field.key == "caFile") {
      resolver.ca_file = read_string(field.value, field.path, field.line);
      // Found now, by `check`, not at the first query.
      if (resolver.ca_file.empty() || access(resolver.ca_file.c_str(), R_OK) != 0) {
        reject(field.path, field.line,
               fmt::format("cannot read \"{}\": {}", resolver.ca_file,
                           resolver.ca_file.empty() ? "empty path" : std::strerror(errno)));
      }
    } else if (field.key == "spkiPins") {
      resolver.spki_pins = read_pins(field);
    }
  }
  if (resolver.protocol == UpstreamProtocol::doh) {
    if (resolver.url.empty()) {
      reject(child_path(path, "url"), item_line,
             "required field is missing (https://host[:port]/path)");
    }
    if (!has_address) {
      if (!address_from_url) {
        reject(child_path(path, "address"), item_line,
               fmt::format("required when the URL's host is a name (dnsgate does not resolve "
                           "\"{}\"): write the address to connect to",
                           url_host_name));
      }
      resolver.address = *address_from_url;
      has_address = true;
    }
    if (resolver.tls_server_name.empty()) {
      resolver.tls_server_name = url_host_name;
    }
  }
  if (!has_address) reject(child_path(path, "address"), item_line, "required field is missing");
  resolver.uri = resolver_uri(resolver);
  return resolver;
}

}  // namespace

std::string_view protocol_name(UpstreamProtocol protocol) {
  for (const auto& known : kProtocols) {
    if (known.protocol == protocol) return known.name;
  }
  return "unknown";
}

std::string_view policy_name(ResolverPolicy policy) {
  return policy == ResolverPolicy::round_robin ? "roundRobin" : "failover";
}

std::vector<int> read_resolvers(const Field& field, DnsProxyConfig& config) {
  if (!field.value.IsSequence()) {
    reject(field.path, field.line,
           fmt::format("expected a list of resolvers, found {}", kind_of(field.value)));
  }
  if (field.value.size() == 0) reject(field.path, field.line, "expected a resolver, found none");
  if (field.value.size() > kMaxResolvers) {
    const YAML::Node extra = field.value[kMaxResolvers];
    reject(fmt::format("{}[{}]", field.path, kMaxResolvers),
           extra.IsNull() ? field.line : line_of(extra),
           fmt::format("at most {} resolvers, found {}", kMaxResolvers, field.value.size()));
  }
  std::vector<int> lines;
  config.resolvers.clear();
  for (std::size_t i = 0; i < field.value.size(); ++i) {
    const YAML::Node item = field.value[i];
    const std::string path = fmt::format("{}[{}]", field.path, i);
    int address_line = 0;
    config.resolvers.push_back(
        read_resolver(item, path, item.IsNull() ? field.line : line_of(item), address_line));
    lines.push_back(address_line);
    // The same resolver twice would only double its share of failures.
    for (std::size_t j = 0; j < i; ++j) {
      if (config.resolvers[j].uri == config.resolvers[i].uri &&
          config.resolvers[j].protocol == config.resolvers[i].protocol) {
        reject(path, lines.back(),
               fmt::format("the same resolver as {}[{}] ({})", field.path, j,
                           config.resolvers[i].uri));
      }
    }
  }
  return lines;
}

ResolverPolicy read_resolver_policy(const Field& field) {
  const std::string text = read_string(field.value, field.path, field.line);
  if (text == "failover") return ResolverPolicy::failover;
  if (text == "roundRobin") return ResolverPolicy::round_robin;
  reject(field.path, field.line,
         fmt::format("unknown policy \"{}\"; valid: failover, roundRobin", text));
}

std::string describe_resolver(const ResolverConfig& resolver) {
  std::string text = fmt::format("{} {}", protocol_name(resolver.protocol), resolver.uri);
  if (!is_encrypted(resolver.protocol)) return text;
  std::vector<std::string> details;
  if (resolver.protocol == UpstreamProtocol::doh) {
    details.push_back(fmt::format("via {}", resolver.address.to_string()));
  }
  details.push_back(resolver.tls_server_name.empty()
                        ? std::string("certificate must name the IP")
                        : fmt::format("tlsServerName {}", resolver.tls_server_name));
  details.push_back(resolver.ca_file.empty() ? std::string("system CAs")
                                             : fmt::format("caFile {}", resolver.ca_file));
  if (!resolver.spki_pins.empty()) {
    details.push_back(fmt::format("{} pin{}", resolver.spki_pins.size(),
                                  resolver.spki_pins.size() == 1 ? "" : "s"));
  }
  return fmt::format("{} ({})", text, fmt::join(details, ", "));
}

}  // namespace dnsgate::config_reader
