// The `metrics:` block of the config (DESIGN.md §12, docs/metrics.md).
#include "config/resolvers.hpp"

namespace dnsgate::config_reader {

void read_metrics(const Field& field, DnsProxyConfig& config) {
  const auto fields = read_map(field.value, field.path, field.line, {"listen"});
  for (const Field& item : fields) config.metrics.listen = read_endpoint(item);
  if (!config.metrics.listen) {
    reject(field.path, field.line, "needs listen (e.g. 127.0.0.1:9153), or leave metrics out");
  }
}

}  // namespace dnsgate::config_reader
