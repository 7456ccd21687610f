// The audit report's counting and rendering (report.hpp).
#include "report/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <nlohmann/json.hpp>
#include <utility>

namespace dnsgate::report {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kEventType = "dev.dnsgate.dns_query";
constexpr std::string_view kRefusedReason = "not_allowlisted";

bool parse_digits(std::string_view text, std::size_t at, std::size_t count, int& value) {
  if (at + count > text.size()) return false;
  value = 0;
  for (std::size_t i = at; i < at + count; ++i) {
    const char c = text[i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool leap_year(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int days_in_month(int y, int m) {
  static constexpr std::array<int, 12> kDays{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap_year(y) ? 29 : kDays[static_cast<std::size_t>(m - 1)];
}

// The fields a report reads from one line. A SAX handler fills them as the
// line is parsed, with no document built: a line costs its parse and a few
// short strings.
struct EventFields {
  bool top_object = false;
  bool data_object = false;
  std::optional<std::string> type;
  std::optional<std::string> time;
  std::optional<std::string> cell;
  std::optional<std::string> client;
  std::optional<std::string> qname;
  std::optional<std::string> action;
  std::optional<std::string> reason;
  std::optional<std::string> upstream;
  std::optional<std::string> upstream_error;
  std::optional<std::uint64_t> latency_us;
};

class EventSax final : public nlohmann::json_sax<Json> {
 public:
  explicit EventSax(EventFields& fields) : fields_(fields) {}

  bool null() override { return value(); }
  bool boolean(bool /*value*/) override { return value(); }
  bool number_integer(number_integer_t number) override {
    if (slot_ == Slot::latency && number >= 0) {
      fields_.latency_us = static_cast<std::uint64_t>(number);
    }
    return value();
  }
  bool number_unsigned(number_unsigned_t number) override {
    if (slot_ == Slot::latency) fields_.latency_us = number;
    return value();
  }
  bool number_float(number_float_t number, const string_t& /*text*/) override {
    if (slot_ == Slot::latency && number >= 0.0 && number < 1.8e19) {
      fields_.latency_us = static_cast<std::uint64_t>(number);
    }
    return value();
  }
  bool string(string_t& text) override {
    if (std::optional<std::string>* target = target_of(slot_)) *target = std::move(text);
    return value();
  }
  bool binary(binary_t& /*bytes*/) override { return value(); }
  bool start_object(std::size_t /*elements*/) override {
    if (depth_ == 0) fields_.top_object = true;
    if (depth_ == 1 && slot_ == Slot::data) {
      fields_.data_object = true;
      in_data_ = true;
    }
    ++depth_;
    slot_ = Slot::none;
    return true;
  }
  bool end_object() override {
    --depth_;
    if (depth_ == 1) in_data_ = false;
    slot_ = Slot::none;
    return true;
  }
  bool start_array(std::size_t /*elements*/) override {
    ++depth_;
    slot_ = Slot::none;
    return true;
  }
  bool end_array() override {
    --depth_;
    slot_ = Slot::none;
    return true;
  }
  bool key(string_t& name) override {
    slot_ = Slot::none;
    if (depth_ == 1) {
      if (name == "type") {
        slot_ = Slot::type;
        fields_.type.reset();
      } else if (name == "time") {
        slot_ = Slot::time;
        fields_.time.reset();
      } else if (name == "data") {
        // A later "data" replaces an earlier one, as in a parsed document.
        slot_ = Slot::data;
        const EventFields envelope = fields_;
        fields_ = EventFields{};
        fields_.top_object = envelope.top_object;
        fields_.type = envelope.type;
        fields_.time = envelope.time;
      }
    } else if (depth_ == 2 && in_data_) {
      slot_ = data_slot(name);
      if (std::optional<std::string>* target = target_of(slot_)) target->reset();
      if (slot_ == Slot::latency) fields_.latency_us.reset();
    }
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const nlohmann::detail::exception& /*error*/) override {
    return false;
  }

 private:
  enum class Slot {
    none,
    type,
    time,
    data,
    cell,
    client,
    qname,
    action,
    reason,
    upstream,
    upstream_error,
    latency
  };

  static Slot data_slot(const std::string& name) {
    if (name == "cell") return Slot::cell;
    if (name == "client") return Slot::client;
    if (name == "qname") return Slot::qname;
    if (name == "action") return Slot::action;
    if (name == "reasonCode") return Slot::reason;
    if (name == "upstream") return Slot::upstream;
    if (name == "upstreamError") return Slot::upstream_error;
    if (name == "latencyUs") return Slot::latency;
    return Slot::none;
  }

  std::optional<std::string>* target_of(Slot slot) {
    switch (slot) {
      case Slot::type:
        return &fields_.type;
      case Slot::time:
        return &fields_.time;
      case Slot::cell:
        return &fields_.cell;
      case Slot::client:
        return &fields_.client;
      case Slot::qname:
        return &fields_.qname;
      case Slot::action:
        return &fields_.action;
      case Slot::reason:
        return &fields_.reason;
      case Slot::upstream:
        return &fields_.upstream;
      case Slot::upstream_error:
        return &fields_.upstream_error;
      default:
        return nullptr;
    }
  }

  // A scalar ends the value of the key before it.
  bool value() {
    slot_ = Slot::none;
    return true;
  }

  EventFields& fields_;
  int depth_ = 0;
  bool in_data_ = false;
  Slot slot_ = Slot::none;
};

std::string lower_ascii(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return lower;
}

// Text for a terminal: control octets (an escape sequence smuggled into a
// crafted events file) as \DDD, the way qnames write them.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto octet = static_cast<unsigned char>(c);
    if (octet < 0x20 || octet == 0x7f) {
      out += fmt::format("\\{:03d}", octet);
    } else {
      out += c;
    }
  }
  return out;
}

std::string latency_text(std::uint64_t us) {
  if (us < 1000) return fmt::format("{}us", us);
  if (us < 1000000) return fmt::format("{:.2f}ms", static_cast<double>(us) / 1e3);
  return fmt::format("{:.2f}s", static_cast<double>(us) / 1e6);
}

std::string counts_line(const std::map<std::string, std::uint64_t>& counts, std::uint64_t total) {
  std::vector<std::pair<std::string, std::uint64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string line;
  for (const auto& [key, count] : sorted) {
    if (!line.empty()) line += ", ";
    const double percent =
        total == 0 ? 0.0 : 100.0 * static_cast<double>(count) / static_cast<double>(total);
    line += fmt::format("{} {} ({:.1f}%)", printable(key), count, percent);
  }
  return line.empty() ? std::string("none") : line;
}

}  // namespace

std::optional<std::int64_t> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  if (!parse_digits(text, 0, 4, year) || text.size() < 20 || text[4] != '-' ||
      !parse_digits(text, 5, 2, month) || text[7] != '-' || !parse_digits(text, 8, 2, day) ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || !parse_digits(text, 11, 2, hour) ||
      text[13] != ':' || !parse_digits(text, 14, 2, minute) || text[16] != ':' ||
      !parse_digits(text, 17, 2, second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
      minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::size_t at = 19;
  std::int64_t micros = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    const std::size_t start = at;
    int digits = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      if (digits < 6) micros = micros * 10 + (text[at] - '0');
      ++digits;
      ++at;
    }
    if (at == start) return std::nullopt;
    for (; digits < 6; ++digits) micros *= 10;
  }
  std::int64_t offset_minutes = 0;
  if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
    ++at;
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    int offset_hours = 0;
    int offset_mins = 0;
    if (!parse_digits(text, at + 1, 2, offset_hours) || at + 3 >= text.size() ||
        text[at + 3] != ':' || !parse_digits(text, at + 4, 2, offset_mins) || offset_hours > 23 ||
        offset_mins > 59) {
      return std::nullopt;
    }
    offset_minutes = offset_hours * 60 + offset_mins;
    if (text[at] == '-') offset_minutes = -offset_minutes;
    at += 6;
  } else {
    return std::nullopt;
  }
  if (at != text.size()) return std::nullopt;
  const std::int64_t days =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const std::int64_t seconds = days * 86400 + std::int64_t{hour} * 3600 +
                               std::int64_t{minute} * 60 + second - offset_minutes * 60;
  return seconds * 1000000 + micros;
}

std::string format_rfc3339(std::int64_t unix_us) {
  std::int64_t seconds = unix_us / 1000000;
  std::int64_t micros = unix_us % 1000000;
  if (micros < 0) {
    micros += 1000000;
    --seconds;
  }
  std::int64_t days = seconds / 86400;
  std::int64_t rest = seconds % 86400;
  if (rest < 0) {
    rest += 86400;
    --days;
  }
  // civil_from_days (H. Hinnant).
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:06d}Z", y, m, d, rest / 3600,
                     rest % 3600 / 60, rest % 60, micros);
}

std::string client_host(std::string_view client) {
  if (client.size() > 2 && client.front() == '[') {
    const std::size_t close = client.find(']');
    if (close != std::string_view::npos) return std::string(client.substr(1, close - 1));
    return std::string(client);
  }
  const std::size_t colon = client.rfind(':');
  // One colon: IPv4 with its port. More: a bare IPv6 address, kept whole.
  if (colon != std::string_view::npos && client.find(':') == colon) {
    return std::string(client.substr(0, colon));
  }
  return std::string(client);
}

// ------------------------------------------------------------ LatencyHistogram

std::size_t LatencyHistogram::bucket_of(std::uint64_t value_us) {
  if (value_us < kSubBuckets) return static_cast<std::size_t>(value_us);
  int exponent = static_cast<int>(std::bit_width(value_us)) - 1;
  if (exponent > kMaxExponent) return kBuckets - 1;
  const std::uint64_t sub = (value_us >> (exponent - kSubBits)) & (kSubBuckets - 1);
  return static_cast<std::size_t>(
      kSubBuckets + static_cast<std::uint64_t>(exponent - kSubBits) * kSubBuckets + sub);
}

std::uint64_t LatencyHistogram::bucket_upper(std::size_t bucket) {
  if (bucket < kSubBuckets) return bucket;
  const std::size_t above = bucket - kSubBuckets;
  const int shift = static_cast<int>(above / kSubBuckets);  // exponent - kSubBits
  const std::uint64_t sub = above % kSubBuckets;
  return ((kSubBuckets + sub + 1) << shift) - 1;
}

void LatencyHistogram::add(std::uint64_t value_us) {
  ++buckets_[bucket_of(value_us)];
  ++count_;
  max_ = std::max(max_, value_us);
}

std::uint64_t LatencyHistogram::percentile(double p) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t bucket = 0; bucket < kBuckets; ++bucket) {
    seen += buckets_[bucket];
    if (seen >= rank) {
      return bucket == kBuckets - 1 ? max_ : std::min(bucket_upper(bucket), max_);
    }
  }
  return max_;
}

// ------------------------------------------------------------ ReportBuilder

ReportBuilder::ReportBuilder(ReportOptions options) : options_(std::move(options)) {
  options_.refused_capacity = std::max<std::size_t>(options_.refused_capacity, 1);
  options_.key_capacity = std::max<std::size_t>(options_.key_capacity, 1);
  options_.upstream_capacity = std::max<std::size_t>(options_.upstream_capacity, 1);
}

void ReportBuilder::count_key(std::map<std::string, std::uint64_t>& counts,
                              const std::string& key) const {
  auto it = counts.find(key);
  if (it == counts.end()) {
    const bool has_other = counts.count(std::string(kOtherKey)) != 0;
    const std::size_t distinct = counts.size() - (has_other ? 1 : 0);
    if (distinct >= options_.key_capacity && key != kOtherKey) {
      ++counts[std::string(kOtherKey)];
      return;
    }
    it = counts.emplace(key, 0).first;
  }
  ++it->second;
}

void ReportBuilder::add_line(std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
  EventFields fields;
  EventSax sax(fields);
  const bool parsed = Json::sax_parse(line.begin(), line.end(), &sax,
                                      nlohmann::detail::input_format_t::json, /*strict=*/true);
  if (!parsed || !fields.top_object || !fields.type || *fields.type != kEventType || !fields.time ||
      !fields.data_object || !fields.action || !fields.reason) {
    ++bad_lines_;
    return;
  }
  const std::optional<std::int64_t> time_us = parse_rfc3339(*fields.time);
  if (!time_us) {
    ++bad_lines_;
    return;
  }

  if (!options_.cell.empty() && (!fields.cell || *fields.cell != options_.cell)) {
    ++filtered_;
    return;
  }
  if (options_.since && *time_us < *options_.since) {
    ++filtered_;
    return;
  }

  ++events_;
  first_us_ = first_us_ ? std::min(*first_us_, *time_us) : *time_us;
  last_us_ = last_us_ ? std::max(*last_us_, *time_us) : *time_us;
  count_key(by_action_, *fields.action);
  count_key(by_reason_, *fields.reason);

  if (fields.upstream) {
    auto it = upstreams_.find(*fields.upstream);
    if (it == upstreams_.end()) {
      const bool has_other = upstreams_.count(std::string(kOtherKey)) != 0;
      const std::size_t distinct = upstreams_.size() - (has_other ? 1 : 0);
      const std::string key =
          distinct >= options_.upstream_capacity ? std::string(kOtherKey) : *fields.upstream;
      it = upstreams_.try_emplace(key).first;
    }
    UpstreamEntry& entry = it->second;
    ++entry.count;
    if (fields.latency_us) entry.latency.add(*fields.latency_us);
    if (fields.upstream_error) count_key(entry.errors, *fields.upstream_error);
  }

  if (*fields.reason == kRefusedReason && fields.qname) {
    add_refused(*fields.qname, *time_us, fields.client ? &*fields.client : nullptr);
  }
}

void ReportBuilder::heap_swap(std::size_t a, std::size_t b) {
  std::swap(refused_heap_[a], refused_heap_[b]);
  refused_position_[refused_heap_[a]] = a;
  refused_position_[refused_heap_[b]] = b;
}

// The entry at `position` grew: move it down past smaller counts.
void ReportBuilder::heap_sift_down(std::size_t position) {
  const std::size_t size = refused_heap_.size();
  for (;;) {
    const std::size_t left = 2 * position + 1;
    if (left >= size) return;
    std::size_t smallest = left;
    const std::size_t right = left + 1;
    if (right < size &&
        refused_[refused_heap_[right]].count < refused_[refused_heap_[left]].count) {
      smallest = right;
    }
    if (refused_[refused_heap_[smallest]].count >= refused_[refused_heap_[position]].count) return;
    heap_swap(position, smallest);
    position = smallest;
  }
}

void ReportBuilder::add_refused(const std::string& qname, std::int64_t time_us,
                                const std::string* client) {
  ++refused_events_;
  std::string key = lower_ascii(qname);
  std::size_t index = 0;
  const auto found = refused_index_.find(key);
  if (found != refused_index_.end()) {
    index = found->second;
    RefusedEntry& entry = refused_[index];
    ++entry.count;
    entry.first_us = std::min(entry.first_us, time_us);
    entry.last_us = std::max(entry.last_us, time_us);
  } else if (refused_.size() < options_.refused_capacity) {
    // A new entry has count 1, the smallest there is: its place at the end
    // of the heap keeps the heap order.
    index = refused_.size();
    refused_.push_back(RefusedEntry{key, qname, 1, 0, time_us, time_us, {}});
    refused_heap_.push_back(index);
    refused_position_.push_back(refused_heap_.size() - 1);
    refused_index_.emplace(std::move(key), index);
  } else {
    // Space-Saving: the name takes the place of the smallest count.
    refused_evicted_ = true;
    index = refused_heap_.front();
    RefusedEntry& entry = refused_[index];
    refused_index_.erase(entry.key);
    entry.overcount = entry.count;
    ++entry.count;
    entry.key = key;
    entry.qname = qname;
    entry.first_us = time_us;
    entry.last_us = time_us;
    entry.clients.clear();
    refused_index_.emplace(std::move(key), index);
  }
  RefusedEntry& entry = refused_[index];
  if (client != nullptr && entry.clients.size() < kMaxClients) {
    std::string host = client_host(*client);
    if (std::find(entry.clients.begin(), entry.clients.end(), host) == entry.clients.end()) {
      entry.clients.push_back(std::move(host));
    }
  }
  heap_sift_down(refused_position_[index]);
}

Report ReportBuilder::result() const {
  Report report;
  report.events = events_;
  report.bad_lines = bad_lines_;
  report.filtered = filtered_;
  if (first_us_) report.first_time = format_rfc3339(*first_us_);
  if (last_us_) report.last_time = format_rfc3339(*last_us_);
  report.by_action = by_action_;
  report.by_reason = by_reason_;
  report.refused_events = refused_events_;
  report.refused_distinct_capacity = options_.refused_capacity;
  report.refused_approximate = refused_evicted_;
  report.cell_filter = options_.cell;
  if (options_.since) report.since_filter = format_rfc3339(*options_.since);

  std::vector<const RefusedEntry*> order;
  order.reserve(refused_.size());
  for (const RefusedEntry& entry : refused_) order.push_back(&entry);
  const std::size_t rows = std::min(options_.top, order.size());
  // Ranked by the count the name surely has (Space-Saving's count less what
  // it inherited on taking another name's place): exact while nothing was
  // evicted, never above the truth after.
  const auto by_count_then_name = [](const RefusedEntry* a, const RefusedEntry* b) {
    const std::uint64_t a_count = a->count - a->overcount;
    const std::uint64_t b_count = b->count - b->overcount;
    if (a_count != b_count) return a_count > b_count;
    if (a->key != b->key) return a->key < b->key;
    return a->qname < b->qname;
  };
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(rows), order.end(),
                    by_count_then_name);
  for (std::size_t i = 0; i < rows; ++i) {
    const RefusedEntry& entry = *order[i];
    report.top_refused.push_back(RefusedName{entry.qname, entry.count - entry.overcount,
                                             entry.overcount, format_rfc3339(entry.first_us),
                                             format_rfc3339(entry.last_us), entry.clients});
  }

  for (const auto& [name, entry] : upstreams_) {
    report.upstreams.push_back(UpstreamSummary{name, entry.count, entry.latency.percentile(50),
                                               entry.latency.percentile(99), entry.errors});
  }
  std::stable_sort(report.upstreams.begin(), report.upstreams.end(),
                   [](const UpstreamSummary& a, const UpstreamSummary& b) {
                     return a.count > b.count;  // names already in order
                   });
  return report;
}

// ------------------------------------------------------------ rendering

std::string render_json(const Report& report) {
  // In DESIGN.md's order of keys.
  using Ordered = nlohmann::ordered_json;
  Ordered out = Ordered::object();
  out["events"] = report.events;
  out["badLines"] = report.bad_lines;
  out["firstTime"] = report.first_time ? Ordered(*report.first_time) : Ordered(nullptr);
  out["lastTime"] = report.last_time ? Ordered(*report.last_time) : Ordered(nullptr);
  out["byAction"] = Ordered(report.by_action);
  out["byReason"] = Ordered(report.by_reason);
  Ordered top = Ordered::array();
  for (const RefusedName& name : report.top_refused) {
    top.push_back(Ordered{{"qname", name.qname},
                          {"count", name.count},
                          {"firstSeen", name.first_seen},
                          {"lastSeen", name.last_seen},
                          {"clients", name.clients}});
  }
  out["topRefused"] = std::move(top);
  Ordered upstreams = Ordered::array();
  for (const UpstreamSummary& upstream : report.upstreams) {
    upstreams.push_back(Ordered{{"upstream", upstream.upstream},
                                {"count", upstream.count},
                                {"p50Us", upstream.p50_us},
                                {"p99Us", upstream.p99_us},
                                {"errors", Ordered(upstream.errors)}});
  }
  out["upstreams"] = std::move(upstreams);
  return out.dump(-1, ' ', false, Ordered::error_handler_t::replace) + "\n";
}

std::string render_text(const Report& report) {
  std::string text;
  std::string filters;
  if (!report.cell_filter.empty()) filters += "cell " + printable(report.cell_filter);
  if (report.since_filter) {
    if (!filters.empty()) filters += ", ";
    filters += "since " + *report.since_filter;
  }
  text += fmt::format("dnsgate report: {} event{}, {} bad line{}", report.events,
                      report.events == 1 ? "" : "s", report.bad_lines,
                      report.bad_lines == 1 ? "" : "s");
  if (!filters.empty()) {
    text += fmt::format(" ({}; {} other events left out)", filters, report.filtered);
  }
  text += "\n";
  if (report.first_time && report.last_time) {
    text += fmt::format("time:      {} .. {}\n", *report.first_time, *report.last_time);
  } else {
    text += "time:      no events\n";
  }
  text += "\n";
  text += fmt::format("actions:   {}\n", counts_line(report.by_action, report.events));
  text += fmt::format("reasons:   {}\n", counts_line(report.by_reason, report.events));
  text += "\n";

  if (report.top_refused.empty()) {
    text += "top refused names: none\n";
  } else {
    text += fmt::format("top refused names ({} of {} refused queries{}):\n",
                        report.top_refused.size(), report.refused_events,
                        report.refused_approximate
                            ? fmt::format("; more than {} distinct names: N+ is at least N",
                                          report.refused_distinct_capacity)
                            : std::string());
    std::size_t name_width = 4;
    std::vector<std::string> names;
    for (const RefusedName& name : report.top_refused) {
      names.push_back(printable(name.qname));
      name_width = std::max(name_width, std::min<std::size_t>(names.back().size(), 48));
    }
    text += fmt::format("  {:>9}  {:<{}}  {:<27}  {:<27}  {}\n", "count", "name", name_width,
                        "first seen", "last seen", "clients");
    for (std::size_t i = 0; i < report.top_refused.size(); ++i) {
      const RefusedName& name = report.top_refused[i];
      std::string clients;
      for (const std::string& client : name.clients) {
        if (!clients.empty()) clients += ", ";
        clients += printable(client);
      }
      if (name.clients.size() >= kMaxClients) clients += ", ...";
      const std::string count =
          name.overcount > 0 ? fmt::format("{}+", name.count) : std::to_string(name.count);
      text += fmt::format("  {:>9}  {:<{}}  {:<27}  {:<27}  {}\n", count, names[i], name_width,
                          name.first_seen, name.last_seen, clients);
    }
  }
  text += "\n";

  if (report.upstreams.empty()) {
    text += "upstreams: none\n";
  } else {
    std::size_t width = 8;
    for (const UpstreamSummary& upstream : report.upstreams) {
      width = std::max(width, std::min<std::size_t>(printable(upstream.upstream).size(), 48));
    }
    text += "upstreams:\n";
    text += fmt::format("  {:<{}}  {:>9}  {:>9}  {:>9}  {}\n", "upstream", width, "queries", "p50",
                        "p99", "errors");
    for (const UpstreamSummary& upstream : report.upstreams) {
      std::string errors;
      std::vector<std::pair<std::string, std::uint64_t>> sorted(upstream.errors.begin(),
                                                                upstream.errors.end());
      std::stable_sort(sorted.begin(), sorted.end(),
                       [](const auto& a, const auto& b) { return a.second > b.second; });
      for (const auto& [word, count] : sorted) {
        if (!errors.empty()) errors += ", ";
        errors += fmt::format("{} {}", printable(word), count);
      }
      text += fmt::format("  {:<{}}  {:>9}  {:>9}  {:>9}  {}\n", printable(upstream.upstream),
                          width, upstream.count, latency_text(upstream.p50_us),
                          latency_text(upstream.p99_us), errors.empty() ? "none" : errors);
    }
  }
  return text;
}

}  // namespace dnsgate::report
