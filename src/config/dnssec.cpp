// The `dnssec:` block of the config (DESIGN.md §9).
#include <fmt/format.h>

#include <variant>

#include "config/resolvers.hpp"
#include "dnssec/trust_anchor.hpp"

namespace dnsgate::config_reader {

namespace {

DnssecMode read_mode(const Field& field) {
  const std::string mode = read_string(field.value, field.path, field.line);
  if (mode == "off") return DnssecMode::off;
  if (mode == "validate") return DnssecMode::validate;
  reject(field.path, field.line, fmt::format("unknown mode \"{}\"; valid: off, validate", mode));
}

void read_trust_anchors(const Field& field, DnsProxyConfig& config) {
  if (!field.value.IsSequence() || field.value.size() == 0) {
    reject(field.path, field.line,
           "expected a non-empty list of DS or DNSKEY records (leave the field out for the "
           "root's anchor)");
  }
  for (std::size_t i = 0; i < field.value.size(); ++i) {
    const YAML::Node& item = field.value[i];
    const std::string path = fmt::format("{}[{}]", field.path, i);
    const int line = item.IsNull() ? field.line : line_of(item);
    std::string text = read_string(item, path, line);
    const auto parsed = dnssec::parse_anchor_record(text);
    if (const auto* error = std::get_if<std::string>(&parsed)) reject(path, line, *error);
    config.dnssec.trust_anchors.push_back(std::move(text));
  }
}

}  // namespace

void read_dnssec(const Field& field, DnsProxyConfig& config) {
  const auto fields =
      read_map(field.value, field.path, field.line, {"mode", "trustAnchors", "keyCacheEntries"});
  for (const Field& child : fields) {
    if (child.key == "mode") {
      config.dnssec.mode = read_mode(child);
    } else if (child.key == "trustAnchors") {
      read_trust_anchors(child, config);
    } else {
      config.dnssec.key_cache_entries = static_cast<std::size_t>(read_integer(
          child.value, child.path, child.line, 1, static_cast<std::int64_t>(kMaxKeyCacheEntries)));
    }
  }
  // Without anchors of its own the validator needs the root's: a missing
  // dns-root-data is a config error now rather than bogus answers later.
  if (config.dnssec.mode == DnssecMode::validate && config.dnssec.trust_anchors.empty()) {
    const auto root = dnssec::read_anchor_file(std::string(dnssec::kRootAnchorFile));
    if (const auto* error = std::get_if<std::string>(&root)) {
      reject(child_path(field.path, "trustAnchors"), field.line,
             fmt::format("no trust anchors given and the root's cannot be read: {} (install "
                         "dns-root-data, or list trustAnchors)",
                         *error));
    }
  }
}

std::string describe_dnssec(const DnssecConfig& dnssec) {
  if (dnssec.mode == DnssecMode::off) return "dnssec off";
  const std::string anchors =
      dnssec.trust_anchors.empty()
          ? fmt::format("root trust anchor from {}", dnssec::kRootAnchorFile)
          : fmt::format("{} trust anchor record{}", dnssec.trust_anchors.size(),
                        dnssec.trust_anchors.size() == 1 ? "" : "s");
  return fmt::format("dnssec validate ({}, keyCacheEntries {})", anchors, dnssec.key_cache_entries);
}

}  // namespace dnsgate::config_reader
