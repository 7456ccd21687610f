// The `events:` block of the config (DESIGN.md §5 and §11,
// docs/configuration.md): the sink, and for nats and http where they
// deliver and the spool that holds what they have not delivered yet.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "config/resolvers.hpp"

namespace dnsgate::config_reader {

namespace {

EventSinkKind read_sink(const Field& field) {
  const std::string sink = read_string(field.value, field.path, field.line);
  if (sink == "stdout") return EventSinkKind::stdout_lines;
  if (sink == "file") return EventSinkKind::file;
  if (sink == "nats") return EventSinkKind::nats;
  if (sink == "http") return EventSinkKind::http;
  reject(field.path, field.line,
         fmt::format("unknown sink \"{}\"; valid sinks: stdout, file, nats, http", sink));
}

std::string_view sink_name(EventSinkKind kind) {
  switch (kind) {
    case EventSinkKind::stdout_lines:
      return "stdout";
    case EventSinkKind::file:
      return "file";
    case EventSinkKind::nats:
      return "nats";
    case EventSinkKind::http:
      return "http";
  }
  return "stdout";
}

// nats://host[:port] or tls://host[:port]; the client accepts user:pass@ too.
bool is_nats_url(std::string_view url) {
  for (const std::string_view scheme : {"nats://", "tls://"}) {
    if (url.starts_with(scheme) && url.size() > scheme.size()) return true;
  }
  return false;
}

void read_nats(const Field& block, NatsSinkConfig& nats) {
  const auto fields = read_map(block.value, block.path, block.line, {"url", "subject", "stream"});
  for (const Field& field : fields) {
    std::string text = read_string(field.value, field.path, field.line);
    if (field.key == "url") {
      std::size_t start = 0;
      while (start <= text.size()) {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        std::string url = text.substr(start, comma - start);
        url.erase(std::remove_if(url.begin(), url.end(),
                                 [](unsigned char c) { return std::isspace(c) != 0; }),
                  url.end());
        if (!is_nats_url(url)) {
          reject(field.path, field.line,
                 fmt::format("\"{}\" is not a NATS server URL (nats://host:port or "
                             "tls://host:port, comma-separated)",
                             url));
        }
        nats.urls.push_back(std::move(url));
        start = comma + 1;
      }
    } else if (field.key == "subject") {
      // A subject is dot-separated tokens; wildcards would publish nowhere.
      const bool bad = text.empty() || text.front() == '.' || text.back() == '.' ||
                       text.find("..") != std::string::npos ||
                       std::any_of(text.begin(), text.end(), [](unsigned char c) {
                         return c <= ' ' || c == '*' || c == '>' || c >= 0x7F;
                       });
      if (bad) {
        reject(field.path, field.line,
               fmt::format("\"{}\" is not a NATS subject to publish to (dot-separated "
                           "tokens, no spaces, no * or >; {{cell}} is replaced)",
                           text));
      }
      nats.subject = std::move(text);
    } else {
      const bool bad = text.empty() || std::any_of(text.begin(), text.end(), [](unsigned char c) {
                         return c <= ' ' || c == '.' || c == '*' || c == '>' || c == '/' ||
                                c == '\\' || c >= 0x7F;
                       });
      if (bad) {
        reject(field.path, field.line, fmt::format("\"{}\" is not a JetStream stream name", text));
      }
      nats.stream = std::move(text);
    }
  }
  if (nats.urls.empty()) reject(child_path(block.path, "url"), block.line, "required");
}

void read_http(const Field& block, HttpSinkConfig& http) {
  const auto fields = read_map(block.value, block.path, block.line, {"url", "batchMax"});
  for (const Field& field : fields) {
    if (field.key == "url") {
      http.url = read_string(field.value, field.path, field.line);
      const bool scheme = http.url.starts_with("http://") || http.url.starts_with("https://");
      const std::size_t host_at = http.url.find("://") + 3;
      if (!scheme || host_at >= http.url.size() || http.url[host_at] == '/' ||
          std::any_of(http.url.begin(), http.url.end(),
                      [](unsigned char c) { return c <= ' ' || c >= 0x7F; })) {
        reject(field.path, field.line,
               fmt::format("\"{}\" is not an http:// or https:// URL", http.url));
      }
    } else {
      http.batch_max = static_cast<std::size_t>(read_integer(
          field.value, field.path, field.line, 1, static_cast<std::int64_t>(kMaxHttpBatch)));
    }
  }
  if (http.url.empty()) reject(child_path(block.path, "url"), block.line, "required");
}

void read_spool(const Field& block, SpoolConfig& spool) {
  const auto fields = read_map(block.value, block.path, block.line, {"dir", "maxBytes"});
  for (const Field& field : fields) {
    if (field.key == "dir") {
      spool.dir = read_string(field.value, field.path, field.line);
      if (spool.dir.empty()) reject(field.path, field.line, "must not be empty");
    } else {
      spool.max_bytes = static_cast<std::uint64_t>(
          read_integer(field.value, field.path, field.line,
                       static_cast<std::int64_t>(kMinSpoolBytes), INT64_MAX));
    }
  }
}

}  // namespace

void read_events(const Field& events, DnsProxyConfig& config) {
  const auto fields =
      read_map(events.value, events.path, events.line, {"sink", "path", "nats", "http", "spool"});
  for (const Field& field : fields) {
    if (field.key == "sink") config.events.sink = read_sink(field);
  }
  const EventSinkKind sink = config.events.sink;
  for (const Field& field : fields) {
    // A block the chosen sink does not use would be silently ignored: the
    // operator believes events go where they never will.
    const auto unused_with = [&](bool used) {
      if (!used) {
        reject(field.path, field.line,
               fmt::format("is not used with sink: {} (remove it, or choose the sink it is for)",
                           sink_name(sink)));
      }
    };
    if (field.key == "path") {
      unused_with(sink == EventSinkKind::file);
      config.events.path = read_string(field.value, field.path, field.line);
      if (config.events.path.empty()) reject(field.path, field.line, "must not be empty");
    } else if (field.key == "nats") {
      unused_with(sink == EventSinkKind::nats);
      read_nats(field, config.events.nats);
    } else if (field.key == "http") {
      unused_with(sink == EventSinkKind::http);
      read_http(field, config.events.http);
    } else if (field.key == "spool") {
      unused_with(sink == EventSinkKind::nats || sink == EventSinkKind::http);
      read_spool(field, config.events.spool);
    }
  }
  const auto required = [&](std::string_view key) {
    if (find_field(fields, key) == nullptr) {
      reject(child_path(events.path, key), events.line,
             fmt::format("required when sink is {}", sink_name(sink)));
    }
  };
  if (sink == EventSinkKind::file) required("path");
  if (sink == EventSinkKind::nats) required("nats");
  if (sink == EventSinkKind::http) required("http");
}

std::string describe_events(const EventsConfig& events, std::string_view cell) {
  switch (events.sink) {
    case EventSinkKind::file:
      return fmt::format("file {}", events.path);
    case EventSinkKind::nats:
      return fmt::format("nats {} subject {}{}, spool {}", fmt::join(events.nats.urls, ","),
                         expand_cell(events.nats.subject, cell),
                         events.nats.stream.empty() ? "" : " stream " + events.nats.stream,
                         expand_cell(events.spool.dir, cell));
    case EventSinkKind::http:
      return fmt::format("http {} (batchMax {}), spool {}", events.http.url, events.http.batch_max,
                         expand_cell(events.spool.dir, cell));
    case EventSinkKind::stdout_lines:
      break;
  }
  return "stdout";
}

}  // namespace dnsgate::config_reader

namespace dnsgate {

std::string expand_cell(std::string_view text, std::string_view cell) {
  std::string out;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = text.find("{cell}", start);
    out.append(text.substr(start, at - start));
    if (at == std::string_view::npos) return out;
    out.append(cell);
    start = at + 6;
  }
}

}  // namespace dnsgate
