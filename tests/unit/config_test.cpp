#include "dnsgate/config.hpp"
#include "dnsgate/proxy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace dnsgate {
namespace {

// DESIGN.md's example without the TCP parts this version rejects.
constexpr const char* kDesignExample = R"(cell: demo                        # the cell's id
listen:
  udp: 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - "*.example.org"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
upstreamTimeoutMs: 2000
maxInflight: 10000
denyRcode: REFUSED
events:
  sink: stdout
)";

// The smallest valid config; tests append or edit one field at a time.
constexpr const char* kMinimal = R"(listen:
  udp: 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - address: 127.0.0.1:5300
)";

DnsProxyConfig expect_valid(const std::string& text) {
  auto result = parse_config(text);
  if (auto* error = std::get_if<ConfigError>(&result)) {
    ADD_FAILURE() << "unexpected error: " << error->describe("test.yaml") << "\nin:\n" << text;
    return {};
  }
  return std::get<DnsProxyConfig>(std::move(result));
}

ConfigError expect_error(const std::string& text) {
  auto result = parse_config(text);
  if (auto* error = std::get_if<ConfigError>(&result)) return *error;
  ADD_FAILURE() << "accepted a config that should fail:\n" << text;
  return {};
}

void expect_error_at(const std::string& text, const std::string& field, int line,
                     const std::string& message_part) {
  const ConfigError error = expect_error(text);
  EXPECT_EQ(error.field, field) << error.describe("test.yaml");
  EXPECT_EQ(error.line, line) << error.describe("test.yaml");
  EXPECT_NE(error.message.find(message_part), std::string::npos)
      << "message \"" << error.message << "\" lacks \"" << message_part << '"';
}

TEST(ConfigParse, DesignExampleParsesToItsValues) {
  const DnsProxyConfig config = expect_valid(kDesignExample);
  EXPECT_EQ(config.cell, "demo");
  ASSERT_TRUE(config.listen_udp.has_value());
  EXPECT_EQ(config.listen_udp->to_string(), "127.0.0.1:5353");
  EXPECT_EQ(config.hostname_allowlist, (std::vector<std::string>{"example.com", "*.example.org"}));
  EXPECT_EQ(config.allowlist.literal_count(), 1u);
  EXPECT_EQ(config.allowlist.wildcard_count(), 1u);
  ASSERT_EQ(config.resolvers.size(), 1u);
  EXPECT_EQ(config.resolvers[0].protocol, UpstreamProtocol::do53_udp);
  EXPECT_EQ(config.resolvers[0].address.to_string(), "127.0.0.1:5300");
  EXPECT_EQ(config.upstream_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(config.max_inflight, 10000u);
  EXPECT_EQ(config.deny_rcode, Rcode::refused);
  EXPECT_EQ(config.events.sink, EventSinkKind::stdout_lines);
  EXPECT_TRUE(config.events.path.empty());
}

TEST(ConfigParse, DefaultsApplyToOmittedFields) {
  const DnsProxyConfig config = expect_valid(kMinimal);
  EXPECT_EQ(config.cell, "default");
  EXPECT_EQ(config.resolvers[0].protocol, UpstreamProtocol::do53_udp);
  EXPECT_EQ(config.upstream_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(config.max_inflight, 10000u);
  EXPECT_EQ(config.deny_rcode, Rcode::refused);
  EXPECT_EQ(config.events.sink, EventSinkKind::stdout_lines);
}

TEST(ConfigParse, EveryOptionalFieldIsRead) {
  const DnsProxyConfig config = expect_valid(std::string(kMinimal) + R"(cell: alpine-1.test_x
upstreamTimeoutMs: 60000
maxInflight: 65535
denyRcode: nxdomain
events:
  sink: file
  path: /var/log/dnsgate/events.jsonl
)");
  EXPECT_EQ(config.cell, "alpine-1.test_x");
  EXPECT_EQ(config.upstream_timeout, std::chrono::milliseconds(60000));
  EXPECT_EQ(config.max_inflight, 65535u);
  EXPECT_EQ(config.deny_rcode, Rcode::nxdomain);
  EXPECT_EQ(config.events.sink, EventSinkKind::file);
  EXPECT_EQ(config.events.path, "/var/log/dnsgate/events.jsonl");
}

TEST(ConfigParse, RangeLimitsAreInclusive) {
  const DnsProxyConfig config =
      expect_valid(std::string(kMinimal) + "upstreamTimeoutMs: 1\nmaxInflight: 1\n");
  EXPECT_EQ(config.upstream_timeout, std::chrono::milliseconds(1));
  EXPECT_EQ(config.max_inflight, 1u);
}

TEST(ConfigParse, DenyRcodeIsCaseInsensitive) {
  EXPECT_EQ(expect_valid(std::string(kMinimal) + "denyRcode: NXDomain\n").deny_rcode,
            Rcode::nxdomain);
  EXPECT_EQ(expect_valid(std::string(kMinimal) + "denyRcode: refused\n").deny_rcode,
            Rcode::refused);
}

TEST(ConfigParse, EmptyAllowlistIsValidAndSummarizedAsEmpty) {
  const DnsProxyConfig config = expect_valid(R"(listen: {udp: "127.0.0.1:5353"}
dnsAuthority:
  hostnameAllowlist: []
  resolvers: [{address: "127.0.0.1:5300"}]
)");
  EXPECT_TRUE(config.hostname_allowlist.empty());
  EXPECT_NE(summarize(config).find("EMPTY"), std::string::npos) << summarize(config);
}

TEST(ConfigParse, Ipv6Endpoints) {
  const DnsProxyConfig config = expect_valid(R"(listen:
  udp: "[::1]:5353"
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - address: "[::1]:5300"
)");
  EXPECT_EQ(config.listen_udp->to_string(), "[::1]:5353");
  EXPECT_EQ(config.resolvers[0].address.to_string(), "[::1]:5300");
}

TEST(ConfigParse, JsonWorks) {
  const DnsProxyConfig config = expect_valid(R"({
  "cell": "json-cell",
  "listen": {"udp": "127.0.0.1:5353"},
  "dnsAuthority": {
    "hostnameAllowlist": ["example.com", "*.example.org"],
    "resolvers": [{"protocol": "do53-udp", "address": "127.0.0.1:5300"}]
  },
  "upstreamTimeoutMs": 1500,
  "maxInflight": 500,
  "denyRcode": "NXDOMAIN",
  "events": {"sink": "file", "path": "/tmp/events.jsonl"}
})");
  EXPECT_EQ(config.cell, "json-cell");
  EXPECT_EQ(config.upstream_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(config.max_inflight, 500u);
  EXPECT_EQ(config.deny_rcode, Rcode::nxdomain);
  EXPECT_EQ(config.events.path, "/tmp/events.jsonl");
  EXPECT_EQ(config.hostname_allowlist.size(), 2u);
}

TEST(ConfigParse, SummaryNamesTheEssentials) {
  const std::string summary = summarize(expect_valid(kDesignExample));
  for (const char* part : {"demo", "127.0.0.1:5353", "do53-udp 127.0.0.1:5300", "2 entries",
                           "1 literal", "1 wildcard", "REFUSED", "stdout"}) {
    EXPECT_NE(summary.find(part), std::string::npos) << part << " missing in: " << summary;
  }
  EXPECT_EQ(summary.find('\n'), std::string::npos);
}

TEST(ConfigErrors, UnknownTopLevelField) {
  expect_error_at(std::string(kMinimal) + "upstreamTimeoutMS: 100\n", "upstreamTimeoutMS", 7,
                  "did you mean \"upstreamTimeoutMs\"");
}

TEST(ConfigErrors, UnknownNestedFieldNamesItsPath) {
  expect_error_at(R"(listen:
  udp: 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      adress: 127.0.0.1:5300
)",
                  "dnsAuthority.resolvers[0].adress", 7, "did you mean \"address\"");
}

TEST(ConfigErrors, UnknownFieldWithoutNearMatchListsTheValidOnes) {
  expect_error_at(std::string(kMinimal) + "events:\n  sink: stdout\n  format: json\n",
                  "events.format", 9, "valid fields here: sink, path");
}

TEST(ConfigErrors, DuplicateFieldIsRejected) {
  expect_error_at(std::string(kMinimal) + "dnsAuthority:\n  hostnameAllowlist: []\n",
                  "dnsAuthority", 7, "duplicate field (first given on line 3)");
}

TEST(ConfigErrors, BadAllowlistEntryNamesItsIndexAndLine) {
  expect_error_at(R"(listen:
  udp: 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - "*.example.org"
    - "a.*.example.net"
    - good.example
  resolvers:
    - address: 127.0.0.1:5300
)",
                  "dnsAuthority.hostnameAllowlist[2]", 7, "a.*.example.net");
}

TEST(ConfigErrors, NonStringAllowlistEntry) {
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - {name: x}
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "dnsAuthority.hostnameAllowlist[1]", 5, "expected a host name, found a map");
}

TEST(ConfigErrors, AllowlistMustBeAList) {
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist:
    example.com: true
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "dnsAuthority.hostnameAllowlist", 3, "found a map");
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist:
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "dnsAuthority.hostnameAllowlist", 3, "write [] to allow nothing");
}

TEST(ConfigErrors, UpstreamTimeoutRange) {
  expect_error_at(std::string(kMinimal) + "upstreamTimeoutMs: 0\n", "upstreamTimeoutMs", 7,
                  "from 1 to 60000");
  expect_error_at(std::string(kMinimal) + "upstreamTimeoutMs: 60001\n", "upstreamTimeoutMs", 7,
                  "from 1 to 60000");
  expect_error_at(std::string(kMinimal) + "upstreamTimeoutMs: -5\n", "upstreamTimeoutMs", 7,
                  "found -5");
}

TEST(ConfigErrors, MaxInflightRange) {
  expect_error_at(std::string(kMinimal) + "maxInflight: 0\n", "maxInflight", 7, "from 1 to 65535");
  expect_error_at(std::string(kMinimal) + "maxInflight: 65536\n", "maxInflight", 7,
                  "from 1 to 65535");
  expect_error_at(std::string(kMinimal) + "maxInflight: 99999999999999999999999\n", "maxInflight",
                  7, "from 1 to 65535");
}

TEST(ConfigErrors, NumbersMustBeIntegers) {
  for (const char* value : {"1.5", "2e3", "0x10", "ten", "+5", "1_000", "[1]", "{a: 1}", "", "~"}) {
    const ConfigError error =
        expect_error(std::string(kMinimal) + "upstreamTimeoutMs: " + value + "\n");
    EXPECT_EQ(error.field, "upstreamTimeoutMs") << value;
    EXPECT_EQ(error.line, 7) << value;
  }
  expect_error_at(std::string(kMinimal) + "maxInflight: \"100\"\n", "maxInflight", 7,
                  "quoted string");
}

TEST(ConfigParse, IoBackendDefaultsToEpollAndIsSummarized) {
  EXPECT_EQ(expect_valid(kMinimal).io, IoBackend::epoll);
  EXPECT_NE(summarize(expect_valid(kMinimal)).find(", io epoll"), std::string::npos);
  const DnsProxyConfig automatic = expect_valid(std::string(kMinimal) + "io: auto\n");
  EXPECT_EQ(automatic.io, IoBackend::automatic);
  EXPECT_NE(summarize(automatic).find(", io auto"), std::string::npos);
  EXPECT_EQ(expect_valid(std::string(kMinimal) + "io: uring\n").io, IoBackend::uring);
}

TEST(ConfigErrors, IoBackendUnknown) {
  // Names are exact, as in the docs: no "io_uring", no "EPOLL".
  expect_error_at(std::string(kMinimal) + "io: io_uring\n", "io", 7,
                  "unknown I/O backend \"io_uring\"; valid: auto, epoll, uring");
  expect_error_at(std::string(kMinimal) + "io: EPOLL\n", "io", 7, "valid: auto, epoll, uring");
  expect_error_at(std::string(kMinimal) + "io: [epoll]\n", "io", 7, "");
}

TEST(ConfigReload, ChangingIoNeedsARestart) {
  const DnsProxyConfig running = expect_valid(kMinimal);
  EXPECT_EQ(restart_only_change(running, expect_valid(std::string(kMinimal) + "io: auto\n")), "io");
  EXPECT_EQ(restart_only_change(running, expect_valid(std::string(kMinimal) + "io: epoll\n")), "");
}

TEST(ConfigErrors, DenyRcodeUnknown) {
  expect_error_at(std::string(kMinimal) + "denyRcode: SERVFAIL\n", "denyRcode", 7,
                  "valid: REFUSED, NXDOMAIN");
}

TEST(ConfigParse, SeveralResolversOfAnyProtocol) {
  const DnsProxyConfig config = expect_valid(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - address: 127.0.0.1:5300
    - {protocol: dot, address: 127.0.0.1, tlsServerName: dns.test}
    - {protocol: doq, address: "[::1]:8853"}
    - {protocol: doh, url: "https://127.0.0.1:8443/dns-query"}
    - {protocol: doh, url: "https://dns.test/q?x=1", address: 127.0.0.2:443}
resolverPolicy: roundRobin
)");
  ASSERT_EQ(config.resolvers.size(), 5U);
  EXPECT_EQ(config.resolver_policy, ResolverPolicy::round_robin);
  EXPECT_EQ(config.resolvers[0].uri, "127.0.0.1:5300");
  EXPECT_EQ(config.resolvers[1].uri, "dot://127.0.0.1:853");  // the DoT port by default
  EXPECT_EQ(config.resolvers[1].tls_server_name, "dns.test");
  EXPECT_EQ(config.resolvers[2].uri, "doq://[::1]:8853");
  EXPECT_EQ(config.resolvers[2].tls_server_name, "");  // the certificate must carry the IP
  // A DoH URL with an IP host needs no address; the certificate must carry the IP.
  EXPECT_EQ(config.resolvers[3].uri, "https://127.0.0.1:8443/dns-query");
  EXPECT_EQ(config.resolvers[3].address.to_string(), "127.0.0.1:8443");
  EXPECT_EQ(config.resolvers[3].tls_server_name, "");
  EXPECT_EQ(config.resolvers[3].url_path, "/dns-query");
  // A named host is the name the certificate must carry and the :authority.
  EXPECT_EQ(config.resolvers[4].tls_server_name, "dns.test");
  EXPECT_EQ(config.resolvers[4].url_host, "dns.test");
  EXPECT_EQ(config.resolvers[4].url_path, "/q?x=1");
  EXPECT_EQ(config.resolvers[4].address.to_string(), "127.0.0.2:443");
  EXPECT_EQ(expect_valid(std::string(kMinimal)).resolver_policy, ResolverPolicy::failover);
}

TEST(ConfigErrors, ResolverFieldsOutOfPlace) {
  const std::string head = R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
)";
  expect_error_at(head + "    - {address: 127.0.0.1:53, tlsServerName: dns.test}\n",
                  "dnsAuthority.resolvers[0].tlsServerName", 5, "only with protocol dot, doh");
  expect_error_at(head + "    - {protocol: dot, address: 127.0.0.1, url: \"https://a/b\"}\n",
                  "dnsAuthority.resolvers[0].url", 5, "only with protocol: doh");
  expect_error_at(head + "    - {protocol: doh, address: 127.0.0.1:443}\n",
                  "dnsAuthority.resolvers[0].url", 5, "required field is missing");
  expect_error_at(head + "    - {protocol: doh, url: \"https://dns.test/q\"}\n",
                  "dnsAuthority.resolvers[0].address", 5, "does not resolve");
  expect_error_at(head + "    - {protocol: doh, url: \"http://1.2.3.4/q\"}\n",
                  "dnsAuthority.resolvers[0].url", 5, "scheme must be https");
  expect_error_at(head + "    - {protocol: doh, url: \"https://1.2.3.4:99999/q\"}\n",
                  "dnsAuthority.resolvers[0].url", 5, "port");
  expect_error_at(head + "    - {protocol: doh, url: \"https://1.2.3.4\"}\n",
                  "dnsAuthority.resolvers[0].url", 5, "no path");
  expect_error_at(head + "    - {protocol: dot, address: 127.0.0.1, tlsServerName: \"a b\"}\n",
                  "dnsAuthority.resolvers[0].tlsServerName", 5, "not a host name");
  expect_error_at(head + "    - {protocol: dot, address: 127.0.0.1, caFile: /nonexistent/ca.pem}\n",
                  "dnsAuthority.resolvers[0].caFile", 5, "cannot read");
  expect_error_at(head + "    - {protocol: dot, address: 127.0.0.1, spkiPins: [abc]}\n",
                  "dnsAuthority.resolvers[0].spkiPins[0]", 5, "not a base64 SHA-256");
  expect_error_at(head + "    - {protocol: dot, address: 127.0.0.1, spkiPins: []}\n",
                  "dnsAuthority.resolvers[0].spkiPins", 5, "expected a list");
  expect_error_at(head + "    - {protocol: dot}\n", "dnsAuthority.resolvers[0].address", 5,
                  "required field is missing");
  expect_error_at(head + "    - {address: 127.0.0.1:53}\n    - {address: 127.0.0.1:53}\n",
                  "dnsAuthority.resolvers[1]", 6, "the same resolver as");
  expect_error_at(std::string(kMinimal) + "resolverPolicy: random\n", "resolverPolicy", 7,
                  "valid: failover, roundRobin");
}

TEST(ConfigErrors, TooManyResolvers) {
  std::string text = R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
)";
  for (int i = 0; i < 17; ++i) text += "    - address: 127.0.0." + std::to_string(i + 1) + ":53\n";
  expect_error_at(text, "dnsAuthority.resolvers[16]", 21, "at most 16 resolvers");
}

TEST(ConfigParse, SpkiPinsAreKept) {
  const DnsProxyConfig config = expect_valid(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: dot
      address: 127.0.0.1:853
      spkiPins: ["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]
)");
  ASSERT_EQ(config.resolvers.size(), 1U);
  EXPECT_EQ(config.resolvers[0].spki_pins,
            std::vector<std::string>{"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="});
}

TEST(ConfigErrors, NoResolver) {
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: []
)",
                  "dnsAuthority.resolvers", 4, "found none");
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
)",
                  "dnsAuthority.resolvers", 2, "required field is missing");
}

TEST(ConfigParse, Do53TcpResolverIsAccepted) {
  const DnsProxyConfig config = expect_valid(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - {protocol: do53-tcp, address: 127.0.0.1:5300}
)");
  ASSERT_EQ(config.resolvers.size(), 1U);
  EXPECT_EQ(config.resolvers[0].protocol, UpstreamProtocol::do53_tcp);
}

TEST(ConfigErrors, UnknownProtocolListsTheValidOnes) {
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - {protocol: udp, address: 127.0.0.1:5300}
)",
                  "dnsAuthority.resolvers[0].protocol", 5, "do53-udp, do53-tcp, dot, doh, doq");
}

TEST(ConfigErrors, ResolverWithoutAddress) {
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
)",
                  "dnsAuthority.resolvers[0].address", 5, "required field is missing");
}

TEST(ConfigParse, ListenTcpAndTcpLimits) {
  const DnsProxyConfig config = expect_valid(R"(listen:
  udp: 127.0.0.1:5353
  tcp: 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: [{address: 127.0.0.1:5300}]
tcp:
  maxConnections: 3
  maxInflightPerConnection: 2
  idleTimeoutMs: 1500
  frameTimeoutMs: 700
)");
  ASSERT_TRUE(config.listen_tcp.has_value());
  EXPECT_EQ(config.listen_tcp->to_string(), "127.0.0.1:5353");
  EXPECT_EQ(config.tcp.max_connections, 3U);
  EXPECT_EQ(config.tcp.max_inflight_per_connection, 2U);
  EXPECT_EQ(config.tcp.idle_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(config.tcp.frame_timeout, std::chrono::milliseconds(700));
}

TEST(ConfigParse, TcpLimitsDefault) {
  const DnsProxyConfig config = expect_valid(kMinimal);
  EXPECT_FALSE(config.listen_tcp.has_value());
  EXPECT_EQ(config.tcp.max_connections, 512U);
  EXPECT_EQ(config.tcp.max_inflight_per_connection, 100U);
  EXPECT_EQ(config.tcp.idle_timeout, std::chrono::milliseconds(10000));
  EXPECT_EQ(config.tcp.frame_timeout, std::chrono::milliseconds(5000));
}

TEST(ConfigParse, TcpListenerAlone) {
  const DnsProxyConfig config = expect_valid(R"(listen: {tcp: "[::1]:5353"}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: [{address: 127.0.0.1:5300}]
)");
  EXPECT_FALSE(config.listen_udp.has_value());
  ASSERT_TRUE(config.listen_tcp.has_value());
  EXPECT_EQ(config.listen_tcp->to_string(), "[::1]:5353");
}

TEST(ConfigErrors, TcpLimitsOutOfRangeOrUnknown) {
  expect_error_at(std::string(kMinimal) + "tcp:\n  maxConnections: 0\n", "tcp.maxConnections", 8,
                  "from 1 to 65535");
  expect_error_at(std::string(kMinimal) + "tcp:\n  maxInflightPerConnection: 65536\n",
                  "tcp.maxInflightPerConnection", 8, "from 1 to 65535");
  expect_error_at(std::string(kMinimal) + "tcp:\n  idleTimeoutMs: 0\n", "tcp.idleTimeoutMs", 8,
                  "from 1 to 3600000");
  expect_error_at(std::string(kMinimal) + "tcp:\n  frameTimeoutMs: 3600001\n", "tcp.frameTimeoutMs",
                  8, "from 1 to 3600000");
  expect_error_at(std::string(kMinimal) + "tcp:\n  maxConnection: 5\n", "tcp.maxConnection", 8,
                  "unknown field");
}

TEST(ConfigErrors, TcpListenerOnTheUpstreamAddressWouldLoop) {
  expect_error_at(R"(listen: {tcp: 127.0.0.1:5300}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "dnsAuthority.resolvers[0].address", 4, "listen.tcp");
}

TEST(ConfigErrors, MissingListen) {
  expect_error_at(R"(dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "listen", 1, "required field is missing");
}

TEST(ConfigErrors, ListenWithoutAnyListener) {
  expect_error_at(R"(cell: x
listen: {}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "listen", 2, "needs udp, tcp or both");
}

TEST(ConfigErrors, MissingDnsAuthorityAndAllowlist) {
  expect_error_at("listen: {udp: 127.0.0.1:5353}\n", "dnsAuthority", 1,
                  "required field is missing");
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "dnsAuthority.hostnameAllowlist", 2, "required field is missing");
}

TEST(ConfigErrors, BadEndpoints) {
  expect_error_at(R"(listen:
  udp: localhost:5353
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "listen.udp", 2, "host names are not accepted");
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - address: 127.0.0.1
)",
                  "dnsAuthority.resolvers[0].address", 5, "not an address and port");
}

TEST(ConfigErrors, UpstreamEqualToListenerWouldLoop) {
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5353
)",
                  "dnsAuthority.resolvers[0].address", 6, "loop");
}

TEST(ConfigErrors, SinkFileWithoutPath) {
  expect_error_at(std::string(kMinimal) + "events:\n  sink: file\n", "events.path", 7,
                  "required when sink is file");
}

TEST(ConfigErrors, PathWithSinkStdout) {
  expect_error_at(std::string(kMinimal) + "events:\n  path: /tmp/e.jsonl\n", "events.path", 8,
                  "is not used with sink: stdout");
}

TEST(ConfigErrors, UnknownSink) {
  expect_error_at(std::string(kMinimal) + "events:\n  sink: syslog\n", "events.sink", 8,
                  "valid sinks: stdout, file, nats, http");
}

TEST(ConfigParse, NatsSinkWithSeveralUrlsAndASpool) {
  const DnsProxyConfig config = expect_valid(std::string(kMinimal) + R"(cell: web
events:
  sink: nats
  nats:
    url: "nats://127.0.0.1:4222, nats://10.0.0.2:4222,tls://nats.example:4443"
    subject: "audit.{cell}.dns"
    stream: DNSGATE
  spool:
    dir: "/var/spool/dnsgate/{cell}"
    maxBytes: 2097152
)");
  EXPECT_EQ(config.events.sink, EventSinkKind::nats);
  EXPECT_EQ(config.events.nats.urls,
            (std::vector<std::string>{"nats://127.0.0.1:4222", "nats://10.0.0.2:4222",
                                      "tls://nats.example:4443"}));
  EXPECT_EQ(expand_cell(config.events.nats.subject, config.cell), "audit.web.dns");
  EXPECT_EQ(config.events.nats.stream, "DNSGATE");
  EXPECT_EQ(expand_cell(config.events.spool.dir, config.cell), "/var/spool/dnsgate/web");
  EXPECT_EQ(config.events.spool.max_bytes, 2097152u);
}

TEST(ConfigParse, HttpSinkDefaultsItsSpoolAndBatch) {
  const DnsProxyConfig config = expect_valid(std::string(kMinimal) +
                                             "events:\n  sink: http\n  http:\n    url: "
                                             "https://collector.example/events\n");
  EXPECT_EQ(config.events.sink, EventSinkKind::http);
  EXPECT_EQ(config.events.http.url, "https://collector.example/events");
  EXPECT_EQ(config.events.http.batch_max, 500u);
  EXPECT_EQ(expand_cell(config.events.spool.dir, "default"), "/var/lib/dnsgate/spool/default");
  EXPECT_EQ(config.events.spool.max_bytes, 1ULL << 30);
}

TEST(ConfigErrors, DeliveringSinks) {
  const std::string events = std::string(kMinimal) + "events:\n";
  expect_error_at(events + "  sink: nats\n", "events.nats", 7, "required when sink is nats");
  expect_error_at(events + "  sink: http\n", "events.http", 7, "required when sink is http");
  expect_error_at(events + "  sink: nats\n  nats:\n    subject: a.b\n", "events.nats.url", 9,
                  "required");
  expect_error_at(events + "  sink: nats\n  nats:\n    url: http://127.0.0.1:4222\n",
                  "events.nats.url", 10, "is not a NATS server URL");
  expect_error_at(events + "  sink: nats\n  nats:\n    url: nats://a:1\n    subject: a.*\n",
                  "events.nats.subject", 11, "no * or >");
  expect_error_at(events + "  sink: nats\n  nats:\n    url: nats://a:1\n    subject: a..b\n",
                  "events.nats.subject", 11, "dot-separated");
  expect_error_at(events + "  sink: nats\n  nats:\n    url: nats://a:1\n    stream: A.B\n",
                  "events.nats.stream", 11, "not a JetStream stream name");
  expect_error_at(events + "  sink: http\n  http:\n    url: ftp://x/\n", "events.http.url", 10,
                  "not an http:// or https:// URL");
  expect_error_at(events + "  sink: http\n  http:\n    url: http://x/\n    batchMax: 10001\n",
                  "events.http.batchMax", 11, "from 1 to 10000");
  expect_error_at(
      events + "  sink: http\n  http:\n    url: http://x/\n  spool:\n    maxBytes: 1000\n",
      "events.spool.maxBytes", 12, "from 1048576");
  expect_error_at(events + "  sink: http\n  http:\n    url: http://x/\n  spool:\n    dir: \"\"\n",
                  "events.spool.dir", 12, "must not be empty");
  // A block the sink does not use is an error, not silently ignored.
  expect_error_at(events + "  sink: file\n  path: /tmp/e\n  spool:\n    dir: /tmp/s\n",
                  "events.spool", 10, "is not used with sink: file");
  expect_error_at(
      events + "  sink: http\n  http:\n    url: http://x/\n  nats:\n    url: nats://a:1\n",
      "events.nats", 11, "is not used with sink: http");
}

TEST(ConfigErrors, BadCell) {
  expect_error_at(std::string(kMinimal) + "cell: my cell\n", "cell", 7, "may contain only");
  expect_error_at(std::string(kMinimal) + "cell: \"a/b\"\n", "cell", 7, "may contain only");
  expect_error_at(std::string(kMinimal) + "cell: \"\"\n", "cell", 7, "1 to 128");
  expect_error_at(std::string(kMinimal) + "cell: " + std::string(129, 'a') + "\n", "cell", 7,
                  "1 to 128");
  EXPECT_EQ(expect_valid(std::string(kMinimal) + "cell: " + std::string(128, 'a') + "\n").cell,
            std::string(128, 'a'));
}

TEST(ConfigErrors, WrongTypeForAMap) {
  expect_error_at(std::string(kMinimal) + "events: stdout\n", "events", 7,
                  "expected a map of fields, found a single value");
  expect_error_at(R"(listen:
  - 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "listen", 1, "found a list");
}

TEST(ConfigErrors, YamlSyntaxErrorReportsItsLine) {
  const ConfigError error = expect_error("listen:\n  udp: 127.0.0.1:5353\ndnsAuthority: [a,\n");
  EXPECT_EQ(error.field, "");
  EXPECT_GT(error.line, 2);
  EXPECT_NE(error.message.find("YAML syntax error"), std::string::npos) << error.message;

  const ConfigError tab = expect_error("listen:\n  udp: 127.0.0.1:5353\n\tcell: x\n");
  EXPECT_EQ(tab.line, 3) << tab.message;
}

TEST(ConfigErrors, UnquotedWildcardGetsAHint) {
  expect_error_at(R"(listen: {udp: 127.0.0.1:5353}
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - *.example.org
  resolvers: [{address: 127.0.0.1:5300}]
)",
                  "", 5, "quote wildcard entries");
}

TEST(ConfigErrors, EmptyOrNonMapDocument) {
  EXPECT_NE(expect_error("").message.find("empty"), std::string::npos);
  EXPECT_NE(expect_error("# only a comment\n").message.find("empty"), std::string::npos);
  expect_error_at("- a\n- b\n", "", 1, "top level must be a map");
}

TEST(ConfigErrors, SecondDocumentIsRejected) {
  expect_error_at(std::string(kMinimal) + "---\ncell: other\n", "", 8, "second YAML document");
}

TEST(ConfigError, DescribeFormats) {
  EXPECT_EQ((ConfigError{"dnsAuthority.hostnameAllowlist[2]", 7, "bad"}).describe("c.yaml"),
            "c.yaml:7: dnsAuthority.hostnameAllowlist[2]: bad");
  EXPECT_EQ((ConfigError{"", 3, "YAML syntax error: x"}).describe("c.yaml"),
            "c.yaml:3: YAML syntax error: x");
  EXPECT_EQ(
      (ConfigError{"", 0, "cannot read c.yaml: No such file or directory"}).describe("c.yaml"),
      "c.yaml: cannot read c.yaml: No such file or directory");
}

TEST(ConfigFile, LoadsAFile) {
  char path[] = "/tmp/dnsgate-config-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = kDesignExample;
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  auto result = load_config_file(path);
  unlink(path);
  ASSERT_TRUE(std::holds_alternative<DnsProxyConfig>(result))
      << std::get<ConfigError>(result).describe(path);
  EXPECT_EQ(std::get<DnsProxyConfig>(result).cell, "demo");
}

TEST(ConfigFile, UnreadableFileSaysWhy) {
  const auto result = load_config_file("/nonexistent/dnsgate.yaml");
  ASSERT_TRUE(std::holds_alternative<ConfigError>(result));
  const ConfigError& error = std::get<ConfigError>(result);
  EXPECT_EQ(error.line, 0);
  EXPECT_EQ(error.field, "");
  EXPECT_NE(error.message.find("cannot read /nonexistent/dnsgate.yaml"), std::string::npos);
  EXPECT_NE(error.message.find("No such file or directory"), std::string::npos);

  const auto directory = load_config_file("/tmp");
  ASSERT_TRUE(std::holds_alternative<ConfigError>(directory));
  EXPECT_NE(std::get<ConfigError>(directory).message.find("cannot read"), std::string::npos);
}

}  // namespace
}  // namespace dnsgate

namespace {

// yaml-cpp 0.7's LoadAll never returns on these (found by fuzz/config_fuzz);
// the loader must answer with an error instead of hanging.
TEST(ConfigErrors, InputThatHangsYamlCppLoadAllIsAnError) {
  for (const char* text : {"{},", ",", "[],", "a: 1\n,"}) {
    const auto result = dnsgate::parse_config(text);
    EXPECT_TRUE(std::holds_alternative<dnsgate::ConfigError>(result)) << text;
  }
}

}  // namespace

// ------------------------------------------------------------- dnssec (DESIGN §9)

namespace dnsgate {
namespace {

constexpr const char* kAnchorDs =
    "example.com. DS 31589 13 2 "
    "2AE9B8B2D1E3C0A4B3C1F0E9D8C7B6A5F4E3D2C1B0A9F8E7D6C5B4A3F2E1D0C9";

TEST(ConfigDnssec, OffByDefault) {
  const DnsProxyConfig config = expect_valid(kMinimal);
  EXPECT_EQ(config.dnssec.mode, DnssecMode::off);
  EXPECT_TRUE(config.dnssec.trust_anchors.empty());
  EXPECT_EQ(config.dnssec.key_cache_entries, 10000u);
}

TEST(ConfigDnssec, ValidateWithAnchorsAndCacheSize) {
  const DnsProxyConfig config = expect_valid(
      std::string(kMinimal) + "dnssec:\n  mode: validate\n  trustAnchors:\n    - \"" + kAnchorDs +
      "\"\n    - \"example.org. 3600 IN DNSKEY 257 3 13 "
      "mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\"\n"
      "  keyCacheEntries: 500\n");
  EXPECT_EQ(config.dnssec.mode, DnssecMode::validate);
  ASSERT_EQ(config.dnssec.trust_anchors.size(), 2u);
  EXPECT_EQ(config.dnssec.trust_anchors[0], kAnchorDs);
  EXPECT_EQ(config.dnssec.key_cache_entries, 500u);
}

TEST(ConfigDnssec, BadAnchorIsNamedWithItsLine) {
  expect_error_at(std::string(kMinimal) + "dnssec:\n  mode: validate\n  trustAnchors:\n    - \"" +
                      kAnchorDs + "\"\n    - \"example.net. DS 1 13 2 XYZ\"\n",
                  "dnssec.trustAnchors[1]", 11, "not hex");
  expect_error_at(
      std::string(kMinimal) + "dnssec:\n  trustAnchors:\n    - \"example.net. DS 1 13 2 ABCD\"\n",
      "dnssec.trustAnchors[0]", 9, "needs 32 octets");
  expect_error_at(
      std::string(kMinimal) + "dnssec:\n  trustAnchors:\n    - \"example.net. A 192.0.2.1\"\n",
      "dnssec.trustAnchors[0]", 9, "is not DS or DNSKEY");
  expect_error_at(std::string(kMinimal) + "dnssec:\n  trustAnchors: []\n", "dnssec.trustAnchors", 8,
                  "non-empty list");
}

TEST(ConfigDnssec, UnknownModeAndFieldsAreErrors) {
  expect_error_at(std::string(kMinimal) + "dnssec:\n  mode: strict\n", "dnssec.mode", 8,
                  "valid: off, validate");
  expect_error_at(std::string(kMinimal) + "dnssec:\n  trustAnchor: []\n", "dnssec.trustAnchor", 8,
                  "unknown field");
  expect_error_at(std::string(kMinimal) + "dnssec:\n  keyCacheEntries: 0\n",
                  "dnssec.keyCacheEntries", 8, "from 1 to 1000000");
}

TEST(ConfigDnssec, SummaryNamesTheMode) {
  EXPECT_NE(summarize(expect_valid(kMinimal)).find("dnssec off"), std::string::npos);
  const DnsProxyConfig config =
      expect_valid(std::string(kMinimal) + "dnssec:\n  mode: validate\n  trustAnchors:\n    - \"" +
                   kAnchorDs + "\"\n");
  EXPECT_NE(summarize(config).find("dnssec validate (1 trust anchor record"), std::string::npos)
      << summarize(config);
}

}  // namespace
}  // namespace dnsgate

// ------------------------------------------------------------- supervise (DESIGN §10)

namespace dnsgate {
namespace {

TEST(ConfigCell, NetnsAndUserAreRead) {
  const DnsProxyConfig config =
      expect_valid(std::string(kMinimal) + "netns: cell-a\nuser: dnsgate\n");
  EXPECT_EQ(config.netns, "cell-a");
  EXPECT_EQ(config.user, "dnsgate");
  EXPECT_NE(summarize(config).find("netns cell-a, user dnsgate"), std::string::npos);
  EXPECT_EQ(expect_valid(std::string(kMinimal) + "netns: /proc/1/ns/net\n").netns,
            "/proc/1/ns/net");
}

TEST(ConfigCell, DefaultsAreNoNamespaceAndNobody) {
  const DnsProxyConfig config = expect_valid(kMinimal);
  EXPECT_TRUE(config.netns.empty());
  EXPECT_EQ(config.user, "nobody");
}

TEST(ConfigCell, BadNamespaceOrUserIsNamedWithItsLine) {
  expect_error_at(std::string(kMinimal) + "netns: a/b\n", "netns", 7, "neither a name");
  expect_error_at(std::string(kMinimal) + "netns: \"\"\n", "netns", 7, "namespace name");
  expect_error_at(std::string(kMinimal) + "user: \"root user\"\n", "user", 7, "not a user name");
}

}  // namespace
}  // namespace dnsgate
