// parse_config on arbitrary text: it never crashes and never throws (an
// exception escaping here aborts, which libFuzzer reports). Whatever it
// accepts is a usable config: the invariants the loader promises hold.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "dnsgate/config.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const dnsgate::ConfigResult result = dnsgate::parse_config(text);
  if (const auto* error = std::get_if<dnsgate::ConfigError>(&result)) {
    FUZZ_CHECK(!error->message.empty());
    FUZZ_CHECK(error->line >= 0);
    FUZZ_CHECK(!error->describe("fuzz.yaml").empty());
    return 0;
  }
  const auto& config = std::get<dnsgate::DnsProxyConfig>(result);
  FUZZ_CHECK(!config.cell.empty());
  FUZZ_CHECK(!config.resolvers.empty() && config.resolvers.size() <= dnsgate::kMaxResolvers);
  for (const auto& resolver : config.resolvers) {
    FUZZ_CHECK(!resolver.uri.empty());
    FUZZ_CHECK(resolver.address.port() != 0);
    // The URI goes into events unescaped: nothing JSON would have to escape.
    for (const char c : resolver.uri) {
      FUZZ_CHECK(c > 0x20 && c < 0x7F && c != '"' && c != '\\');
    }
    FUZZ_CHECK((resolver.protocol == dnsgate::UpstreamProtocol::doh) == !resolver.url.empty());
  }
  FUZZ_CHECK(config.max_inflight >= 1 && config.max_inflight <= dnsgate::kMaxInflightLimit);
  FUZZ_CHECK(config.upstream_timeout.count() >= 1 &&
             config.upstream_timeout <= dnsgate::kMaxUpstreamTimeout);
  FUZZ_CHECK(config.allowlist.literal_count() + config.allowlist.wildcard_count() <=
             config.hostname_allowlist.size());
  FUZZ_CHECK(!dnsgate::summarize(config).empty());
  return 0;
}
