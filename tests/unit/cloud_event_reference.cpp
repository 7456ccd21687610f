// The old CloudEvent formatter, copied from src/events/cloud_event.cpp as of
// commit 35c8b8c into its own namespace, unchanged but for one qualified call
// (argument-dependent lookup would otherwise also find dnsgate::'s); see
// cloud_event_reference.hpp.
#include "cloud_event_reference.hpp"

#include "dnsgate/config.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace dnsgate::reference {

namespace {

// The length of the well-formed UTF-8 sequence starting at text[at] (Unicode
// table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF), or 0.
std::size_t utf8_sequence_length(std::string_view text, std::size_t at) noexcept {
  const auto octet = [&](std::size_t i) { return static_cast<std::uint8_t>(text[at + i]); };
  const auto continuation = [&](std::size_t i, std::uint8_t low = 0x80, std::uint8_t high = 0xBF) {
    return at + i < text.size() && octet(i) >= low && octet(i) <= high;
  };
  const std::uint8_t lead = octet(0);
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return continuation(1) ? 2 : 0;
  if (lead >= 0xE0 && lead <= 0xEF) {
    const std::uint8_t low = lead == 0xE0 ? 0xA0 : 0x80;
    const std::uint8_t high = lead == 0xED ? 0x9F : 0xBF;
    return continuation(1, low, high) && continuation(2) ? 3 : 0;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    const std::uint8_t low = lead == 0xF0 ? 0x90 : 0x80;
    const std::uint8_t high = lead == 0xF4 ? 0x8F : 0xBF;
    return continuation(1, low, high) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

// The body of a JSON string (RFC 8259 section 7), without the quotes. Invalid
// UTF-8 becomes U+FFFD rather than an error: one odd byte in a config value
// must never cost the audit trail an event, nor make a line a reader rejects.
void append_json_escaped(std::string& out, std::string_view text) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::size_t at = 0;
  while (at < text.size()) {
    const auto octet = static_cast<std::uint8_t>(text[at]);
    if (octet >= 0x80) {
      const std::size_t length = utf8_sequence_length(text, at);
      if (length == 0) {
        out += "\xEF\xBF\xBD";
        ++at;
      } else {
        out.append(text.substr(at, length));
        at += length;
      }
      continue;
    }
    switch (octet) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (octet < 0x20) {
          out += "\\u00";
          out += kHex[octet >> 4];
          out += kHex[octet & 0x0F];
        } else {
          out += static_cast<char>(octet);
        }
    }
    ++at;
  }
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  append_json_escaped(out, text);
  out += '"';
}

void append_number(std::string& out, std::uint64_t value) {
  std::array<char, 24> digits{};
  const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value);
  out.append(digits.data(), result.ptr);
}

// RFC 3339 in UTC with exactly six fractional digits ("...T09:00:00.123456Z"):
// a fixed width keeps the lines sortable as text, and microseconds are what
// the latencies are measured in.
void append_utc_microseconds(std::string& out, std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  // floor, not duration_cast: a time before 1970 must not round towards it.
  const auto micros = floor<microseconds>(time);
  const auto day = floor<days>(micros);
  const year_month_day date{day};
  const hh_mm_ss clock{micros - day};
  std::array<char, 48> text{};
  const int length = std::snprintf(
      text.data(), text.size(), "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ",
      static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
      static_cast<unsigned>(date.day()), static_cast<int>(clock.hours().count()),
      static_cast<int>(clock.minutes().count()), static_cast<int>(clock.seconds().count()),
      static_cast<long long>(clock.subseconds().count()));
  if (length > 0) {
    out.append(text.data(), std::min(static_cast<std::size_t>(length), text.size() - 1));
  }
}

}  // namespace

// Built by hand rather than through a JSON tree: the writer thread formats
// every query the proxy sees, and a tree of small allocations per event cost
// an order of magnitude more than the DNS work it describes. The escaping
// above is the only part that needs care; the tests parse the output back
// with nlohmann::json.
void append_cloud_event(std::string& out, const QueryRecord& record, std::string_view cell,
                        std::string_view event_id) {
  // Presentation format is printable ASCII, but `"` and `\` appear in it and
  // must be escaped again for JSON.
  std::string qname;
  if (record.has_question) {
    record.qname.append_to(qname);
  }

  out += R"({"specversion":"1.0","id":)";
  append_json_string(out, event_id);
  out += R"(,"source":"dnsgate/cells/)";
  append_json_escaped(out, cell);
  out += R"(","type":)";
  append_json_string(out, kEventType);
  out += R"(,"time":")";
  append_utc_microseconds(out, record.received_at);
  out += R"(","datacontenttype":"application/json")";
  if (record.has_question) {
    out += R"(,"subject":)";
    append_json_string(out, qname);
  }

  out += R"(,"data":{"cell":)";
  append_json_string(out, cell);
  out += R"(,"transport":)";
  append_json_string(out, to_string(record.transport));
  out += R"(,"client":)";
  append_json_string(out, record.client.to_string());
  out += R"(,"size":)";
  append_number(out, record.size);
  if (record.has_transaction_id) {
    out += R"(,"transactionId":)";
    append_number(out, record.transaction_id);
  }
  if (record.has_question) {
    out += R"(,"qname":)";
    append_json_string(out, qname);
    out += R"(,"qtype":)";
    append_json_string(out, qtype_to_string(record.qtype));
    out += R"(,"qclass":)";
    append_json_string(out, qclass_to_string(record.qclass));
  }
  out += R"(,"action":)";
  append_json_string(out, to_string(record.action));
  out += R"(,"reasonCode":)";
  append_json_string(out, to_string(record.reason));
  if (record.reason == ReasonCode::malformed_query) {
    out += R"(,"malformedReason":)";
    append_json_string(out, to_string(record.parse_error));
  }
  if (record.reason == ReasonCode::unsupported_opcode) {
    out += R"(,"opcode":)";
    append_json_string(out, opcode_to_string(record.opcode));
  }
  out += R"(,"rcode":)";
  if (record.has_rcode) {
    append_json_string(out, rcode_to_string(record.rcode));
  } else {
    out += "null";
  }
  out += R"(,"answerCount":)";
  append_number(out, record.answer_count);
  if (record.has_upstream) {
    out += R"(,"upstream":)";
    append_json_string(out, record.upstream_uri.empty() ? record.upstream.to_string()
                                                        : std::string(record.upstream_uri));
  }
  if (record.upstream_error) {
    std::array<char, kMaxUpstreamErrorText> word{};
    out += R"(,"upstreamError":)";
    append_json_string(
        out, std::string(word.data(), write_upstream_error(record.upstream_error, word.data())));
  }
  out += R"(,"dnssec":)";
  append_json_string(out, to_string(record.dnssec));
  out += R"(,"policyVersion":)";
  append_json_string(out, format_policy_version(record.policy_version));
  out += R"(,"latencyUs":)";
  append_number(out, record.latency_us);
  out += "}}";
}

std::string format_cloud_event(const QueryRecord& record, std::string_view cell,
                               std::string_view event_id) {
  std::string out;
  out.reserve(512);
  reference::append_cloud_event(out, record, cell, event_id);  // not dnsgate:: by ADL
  return out;
}

}  // namespace dnsgate::reference
