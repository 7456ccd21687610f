#include <string>

#include "dnsgate/proxy.hpp"

namespace dnsgate {

std::string DnsProxyStats::to_json() const {
  // Plain counters with fixed keys: no escaping needed, so no JSON library.
  const std::pair<const char*, std::uint64_t> counters[] = {
      {"received", received},
      {"forwarded", forwarded},
      {"relayed", relayed},
      {"refused", refused},
      {"notimp", notimp},
      {"malformed", malformed},
      {"servfailTimeout", servfail_timeout},
      {"servfailError", servfail_error},
      {"overloaded", overloaded},
      {"unsolicitedUpstream", unsolicited_upstream},
      {"eventsDropped", events_dropped},
      {"eventBacklogWaits", event_backlog_waits},
      {"droppedAtShutdown", dropped_at_shutdown},
      {"sendFailed", send_failed},
      {"clientGone", client_gone},
      {"tcpAccepted", tcp_accepted},
      {"tcpRejected", tcp_rejected},
      {"tcpFramesAbandoned", tcp_frames_abandoned},
      {"tcpIdleClosed", tcp_idle_closed},
      {"upstreamTcpConnects", upstream_tcp_connects},
      {"dnssecSecure", dnssec_secure},
      {"dnssecInsecure", dnssec_insecure},
      {"dnssecBogus", dnssec_bogus},
      {"dnssecIndeterminate", dnssec_indeterminate},
      {"dnssecFetches", dnssec_fetches},
      {"dnssecKeyCache", dnssec_key_cache},
  };
  std::string json = "{";
  for (const auto& [key, value] : counters) {
    if (json.size() > 1) json += ',';
    json += '"';
    json += key;
    json += "\":";
    json += std::to_string(value);
  }
  json += ",\"resolvers\":[";
  for (std::size_t i = 0; i < resolvers.size(); ++i) {
    const ResolverStats& r = resolvers[i];
    if (i > 0) json += ',';
    // The URI is the operator's own config text: escape what JSON needs.
    json += "{\"uri\":\"";
    for (const char c : r.uri) {
      if (c == '"' || c == '\\') json += '\\';
      if (static_cast<unsigned char>(c) < 0x20) continue;
      json += c;
    }
    json += '"';
    const std::pair<const char*, std::uint64_t> fields[] = {
        {"queries", r.queries},         {"answers", r.answers},       {"failures", r.failures},
        {"connects", r.connects},       {"handshakes", r.handshakes}, {"resumed", r.resumed},
        {"unsolicited", r.unsolicited}, {"timesDown", r.times_down},
    };
    for (const auto& [key, value] : fields) {
      json += ",\"";
      json += key;
      json += "\":";
      json += std::to_string(value);
    }
    json += '}';
  }
  json += "]}";
  return json;
}

}  // namespace dnsgate
