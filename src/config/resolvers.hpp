// dnsAuthority.resolvers and resolverPolicy (DESIGN.md §8).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/yaml_fields.hpp"
#include "dnsgate/config.hpp"

namespace dnsgate::config_reader {

// Fills config.resolvers; returns each resolver's line, for errors found
// later (a resolver that is the proxy's own listener).
std::vector<int> read_resolvers(const Field& field, DnsProxyConfig& config);

ResolverPolicy read_resolver_policy(const Field& field);

std::string_view protocol_name(UpstreamProtocol protocol);
std::string_view policy_name(ResolverPolicy policy);

// "dot dot://127.0.0.1:853 (tlsServerName dns.test, caFile ca.pem, 1 pin)"
std::string describe_resolver(const ResolverConfig& resolver);

// The `dnssec:` block (dnssec.cpp in this folder): mode, trustAnchors
// (each record checked), keyCacheEntries.
void read_dnssec(const Field& field, DnsProxyConfig& config);

// "dnssec validate (2 trust anchors, keyCacheEntries 10000)" or "dnssec off".
std::string describe_dnssec(const DnssecConfig& dnssec);

// The `events:` block (events.cpp in this folder): sink, path, nats,
// http, spool; a block the sink does not use is an error.
void read_events(const Field& events, DnsProxyConfig& config);

// "file /var/log/x.jsonl", "nats nats://a:4222 subject s, spool /d", "stdout".
std::string describe_events(const EventsConfig& events, std::string_view cell);

// The `metrics:` block (metrics.cpp in this folder): listen.
void read_metrics(const Field& field, DnsProxyConfig& config);

}  // namespace dnsgate::config_reader
