// `dnsgate report` (DESIGN.md §12 "Audit report", docs/cli.md "report"):
// the pure part. A ReportBuilder takes the lines of events files one at a
// time and keeps only bounded state: counters, a fixed-size latency
// histogram per upstream and a Space-Saving table of refused names. Reading
// the files is the command's business (src/cli/report_command.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dnsgate::report {

// Microseconds since the Unix epoch of an RFC 3339 date-time
// ("2026-11-26T09:00:00.123456Z", "2026-11-26T10:00:00+01:00"; digits past
// the microsecond are truncated). nullopt if `text` is not one.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);

// The form events use: "2026-11-26T09:00:00.123456Z".
std::string format_rfc3339(std::int64_t unix_us);

// "127.0.0.1:40312" -> "127.0.0.1", "[::1]:40312" -> "::1"; anything else
// as it is.
std::string client_host(std::string_view client);

// Latencies in a fixed array of log-linear buckets: values below 16 µs
// exactly, above that 16 buckets per power of two, so a bucket's width is at
// most 1/16 of its lower bound. A percentile is the upper bound of its
// bucket (capped at the largest value seen): never below the exact
// nearest-rank value, at most 6.25 % above it. Values past 2^40 µs (12 days)
// share the last bucket.
class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;
  static constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBits;
  static constexpr int kMaxExponent = 40;
  static constexpr std::size_t kBuckets = kSubBuckets + (kMaxExponent - kSubBits + 1) * kSubBuckets;

  void add(std::uint64_t value_us);
  // Nearest rank: the smallest value with at least ceil(p/100 * n) values at
  // or below it. 0 when empty.
  [[nodiscard]] std::uint64_t percentile(double p) const;
  [[nodiscard]] std::uint64_t count() const { return count_; }

  static std::size_t bucket_of(std::uint64_t value_us);
  static std::uint64_t bucket_upper(std::size_t bucket);

 private:
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

struct ReportOptions {
  std::string cell;                   // empty: every cell
  std::optional<std::int64_t> since;  // µs since the epoch: older events are skipped
  std::size_t top = 10;               // rows of topRefused
  // Names the refused table tracks (Space-Saving counters); exact while the
  // file has no more distinct refused names than this.
  std::size_t refused_capacity = 10000;
  // Distinct keys of byAction, byReason, upstreams and each upstream's
  // errors; further keys are counted under "(other)".
  std::size_t key_capacity = 64;
  std::size_t upstream_capacity = 256;
};

struct RefusedName {
  std::string qname;            // as first seen
  std::uint64_t count = 0;      // exact, or (overcount > 0) a lower bound
  std::uint64_t overcount = 0;  // Space-Saving: the truth is at most count + overcount
  std::string first_seen;
  std::string last_seen;
  std::vector<std::string> clients;  // distinct, without the port, at most kMaxClients
};

struct UpstreamSummary {
  std::string upstream;
  std::uint64_t count = 0;
  std::uint64_t p50_us = 0;
  std::uint64_t p99_us = 0;
  std::map<std::string, std::uint64_t> errors;  // upstreamError -> events
};

struct Report {
  std::uint64_t events = 0;     // events counted (after --cell and --since)
  std::uint64_t bad_lines = 0;  // lines that are not a dev.dnsgate.dns_query CloudEvent
  std::uint64_t filtered = 0;   // good events left out by --cell or --since
  std::optional<std::string> first_time;
  std::optional<std::string> last_time;
  std::map<std::string, std::uint64_t> by_action;
  std::map<std::string, std::uint64_t> by_reason;
  std::vector<RefusedName> top_refused;    // by count, then name
  std::vector<UpstreamSummary> upstreams;  // by count, then name
  std::uint64_t refused_events = 0;        // events with reasonCode not_allowlisted and a qname
  std::uint64_t refused_distinct_capacity = 0;
  bool refused_approximate = false;  // more distinct names than the table holds
  std::string cell_filter;
  std::optional<std::string> since_filter;
};

inline constexpr std::size_t kMaxClients = 10;
inline constexpr std::string_view kOtherKey = "(other)";

class ReportBuilder {
 public:
  explicit ReportBuilder(ReportOptions options);

  // One line of an events file, without its newline. A blank line is
  // skipped; any other line that is not a dev.dnsgate.dns_query CloudEvent
  // (bad JSON, another type, no data object, no action or reasonCode, no
  // RFC 3339 time) counts in badLines.
  void add_line(std::string_view line);
  // A line the reader could not hold (longer than it buffers).
  void add_bad_line() { ++bad_lines_; }

  [[nodiscard]] Report result() const;

 private:
  struct RefusedEntry {
    std::string key;  // the name in lower case
    std::string qname;
    std::uint64_t count = 0;
    std::uint64_t overcount = 0;
    std::int64_t first_us = 0;
    std::int64_t last_us = 0;
    std::vector<std::string> clients;
  };
  struct UpstreamEntry {
    std::uint64_t count = 0;
    LatencyHistogram latency;
    std::map<std::string, std::uint64_t> errors;
  };

  void count_key(std::map<std::string, std::uint64_t>& counts, const std::string& key) const;
  void add_refused(const std::string& qname, std::int64_t time_us, const std::string* client);
  void heap_sift_down(std::size_t position);
  void heap_swap(std::size_t a, std::size_t b);

  ReportOptions options_;
  std::uint64_t events_ = 0;
  std::uint64_t bad_lines_ = 0;
  std::uint64_t filtered_ = 0;
  std::optional<std::int64_t> first_us_;
  std::optional<std::int64_t> last_us_;
  std::map<std::string, std::uint64_t> by_action_;
  std::map<std::string, std::uint64_t> by_reason_;
  std::map<std::string, UpstreamEntry> upstreams_;

  // Space-Saving (Metwally et al. 2005): at most refused_capacity entries; a
  // new name when the table is full takes the place of the entry with the
  // smallest count and inherits that count (+1) as its overcount. refused_heap_
  // is a min-heap of entry indexes by count; refused_position_ its inverse.
  std::vector<RefusedEntry> refused_;
  std::unordered_map<std::string, std::size_t> refused_index_;
  std::vector<std::size_t> refused_heap_;
  std::vector<std::size_t> refused_position_;
  std::uint64_t refused_events_ = 0;
  bool refused_evicted_ = false;
};

// What a person reads: totals and time range, actions and reasons, the top
// refused names, the upstreams.
std::string render_text(const Report& report);
// One JSON object with exactly the keys of DESIGN.md §12, and a newline.
std::string render_json(const Report& report);

}  // namespace dnsgate::report
