// CloudEvents 1.0 structured-mode JSON for one query record (the ids: event_id.cpp).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "dnsgate/events.hpp"

namespace dnsgate {

std::string_view to_string(QueryAction action) noexcept {
  switch (action) {
    case QueryAction::forward:
      return "forward";
    case QueryAction::refuse:
      return "refuse";
    case QueryAction::drop:
      return "drop";
    case QueryAction::servfail:
      return "servfail";
  }
  return "unknown";
}

std::string_view to_string(ReasonCode reason) noexcept {
  switch (reason) {
    case ReasonCode::allowed:
      return "allowed";
    case ReasonCode::not_allowlisted:
      return "not_allowlisted";
    case ReasonCode::malformed_query:
      return "malformed_query";
    case ReasonCode::unsupported_opcode:
      return "unsupported_opcode";
    case ReasonCode::upstream_timeout:
      return "upstream_timeout";
    case ReasonCode::upstream_error:
      return "upstream_error";
    case ReasonCode::overloaded:
      return "overloaded";
    case ReasonCode::shutdown:
      return "shutdown";
    case ReasonCode::client_gone:
      return "client_gone";
    case ReasonCode::dnssec_bogus:
      return "dnssec_bogus";
    case ReasonCode::dnssec_indeterminate:
      return "dnssec_indeterminate";
  }
  return "unknown";
}

std::string_view to_string(Transport transport) noexcept {
  switch (transport) {
    case Transport::udp:
      return "udp";
    case Transport::tcp:
      return "tcp";
  }
  return "unknown";
}

std::string_view to_string(DnssecState state) noexcept {
  switch (state) {
    case DnssecState::unchecked:
      return "unchecked";
    case DnssecState::secure:
      return "secure";
    case DnssecState::insecure:
      return "insecure";
    case DnssecState::bogus:
      return "bogus";
    case DnssecState::indeterminate:
      return "indeterminate";
  }
  return "unknown";
}

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

// ASCII octets a JSON string carries as they are. DEL (0x7F) is one of them:
// RFC 8259 requires escaping below 0x20 only.
constexpr std::array<bool, 256> kJsonPlain = [] {
  std::array<bool, 256> plain{};
  for (std::size_t c = 0x20; c < 0x80; ++c) {
    plain[c] = c != '"' && c != '\\';
  }
  return plain;
}();

// The most write_json_escaped writes per octet of its input (`\u00XX`).
constexpr std::size_t kJsonEscapedPerOctet = 6;

// The body of a JSON string (RFC 8259 section 7), without the quotes, at
// `at`, which has room for kJsonEscapedPerOctet octets per octet of `text`.
// Invalid UTF-8 becomes U+FFFD rather than an error: one odd byte in a config
// value must never cost the audit trail an event, nor make a line a reader
// rejects. Octets that need nothing are copied a run at a time.
char* write_json_escaped(char* at, std::string_view text) noexcept {
  static constexpr std::string_view kHex = "0123456789abcdef";
  const char* const data = text.data();
  std::size_t run = 0;  // the first octet of the unchanged run not yet written
  std::size_t i = 0;
  const auto flush_run = [&] {
    if (i > run) {
      std::memcpy(at, data + run, i - run);
      at += i - run;
    }
  };
  while (i < text.size()) {
    const auto octet = static_cast<std::uint8_t>(data[i]);
    if (kJsonPlain[octet]) {
      ++i;
      continue;
    }
    if (octet >= 0x80) {
      const std::size_t length = utf8_sequence_length(text, i);
      if (length != 0) {
        i += length;
        continue;
      }
    }
    flush_run();
    switch (octet) {
      case '"':
        at = std::copy_n("\\\"", 2, at);
        break;
      case '\\':
        at = std::copy_n("\\\\", 2, at);
        break;
      case '\n':
        at = std::copy_n("\\n", 2, at);
        break;
      case '\r':
        at = std::copy_n("\\r", 2, at);
        break;
      case '\t':
        at = std::copy_n("\\t", 2, at);
        break;
      default:
        if (octet < 0x20) {
          at = std::copy_n("\\u00", 4, at);
          *at++ = kHex[octet >> 4];
          *at++ = kHex[octet & 0x0F];
        } else {
          at = std::copy_n("\xEF\xBF\xBD", 3, at);
        }
    }
    ++i;
    run = i;
  }
  flush_run();
  return at;
}

std::string json_escaped(std::string_view text) {
  std::string escaped(text.size() * kJsonEscapedPerOctet, '\0');
  escaped.resize(
      static_cast<std::size_t>(write_json_escaped(escaped.data(), text) - escaped.data()));
  return escaped;
}

// A name another module defines (an action, an RR type, an rcode...), already
// escaped for JSON, in a fixed slot: the hot path copies it without calling
// the module's function, which for RR types searches a list and builds a
// std::string.
struct JsonName {
  static constexpr std::uint8_t kMissing = 0xFF;
  std::array<char, 23> text{};
  std::uint8_t size = kMissing;  // kMissing: longer than the slot, ask name_of
};

template <std::size_t Codes, class NameOf>
std::array<JsonName, Codes> json_names(NameOf name_of) {
  std::array<JsonName, Codes> table{};
  for (std::size_t code = 0; code < Codes; ++code) {
    const std::string escaped = json_escaped(name_of(code));
    if (escaped.size() <= table[code].text.size()) {
      std::copy(escaped.begin(), escaped.end(), table[code].text.begin());
      table[code].size = static_cast<std::uint8_t>(escaped.size());
    }
  }
  return table;
}

// Codes beyond the table, or names too long for a slot, take the slow path
// through `spill`; the result is exactly the escaped name either way.
template <std::size_t Codes, class NameOf>
std::string_view json_name(const std::array<JsonName, Codes>& table, std::size_t code,
                           NameOf name_of, std::string& spill) {
  if (code < Codes && table[code].size != JsonName::kMissing) {
    return {table[code].text.data(), table[code].size};
  }
  spill = json_escaped(name_of(code));
  return spill;
}

// The tables are the same for every formatter; built on first use, then
// only read. The enums have a handful of values, 32 leaves room to grow;
// every named RR type is below 512.
constexpr std::size_t kEnumCodes = 32;
constexpr std::size_t kTypeCodes = 512;
constexpr std::size_t kClassCodes = 256;
constexpr std::size_t kRcodeCodes = 256;
constexpr std::size_t kOpcodeCodes = 256;

std::string_view transport_name(std::size_t code) {
  return to_string(static_cast<Transport>(code));
}
std::string_view action_name(std::size_t code) {
  return to_string(static_cast<QueryAction>(code));
}
std::string_view reason_name(std::size_t code) {
  return to_string(static_cast<ReasonCode>(code));
}
std::string_view parse_error_name(std::size_t code) {
  return to_string(static_cast<ParseError>(code));
}
std::string type_name(std::size_t code) {
  return qtype_to_string(static_cast<std::uint16_t>(code));
}
std::string class_name(std::size_t code) {
  return qclass_to_string(static_cast<std::uint16_t>(code));
}
std::string rcode_name(std::size_t code) {
  return rcode_to_string(static_cast<std::uint8_t>(code));
}
std::string opcode_name(std::size_t code) {
  return opcode_to_string(static_cast<std::uint8_t>(code));
}

struct NameTables {
  std::array<JsonName, kEnumCodes> transports = json_names<kEnumCodes>(transport_name);
  std::array<JsonName, kEnumCodes> actions = json_names<kEnumCodes>(action_name);
  std::array<JsonName, kEnumCodes> reasons = json_names<kEnumCodes>(reason_name);
  std::array<JsonName, kEnumCodes> parse_errors = json_names<kEnumCodes>(parse_error_name);
  std::array<JsonName, kTypeCodes> types = json_names<kTypeCodes>(type_name);
  std::array<JsonName, kClassCodes> classes = json_names<kClassCodes>(class_name);
  std::array<JsonName, kRcodeCodes> rcodes = json_names<kRcodeCodes>(rcode_name);
  std::array<JsonName, kOpcodeCodes> opcodes = json_names<kOpcodeCodes>(opcode_name);
};

const NameTables& name_tables() {
  static const NameTables tables;
  return tables;
}

// One octet of a label as the JSON text of the name's presentation form
// (QueryName::append_to, then JSON escaping), in one step: octets outside
// 0x21-0x7E as `\DDD`, `.\"();@$` with a backslash, and then every backslash
// doubled and `"` escaped for JSON. Octet 7 holds the length: the writer
// copies all 8 and advances by that many, one store and no branch per octet.
constexpr std::array<std::array<char, 8>, 256> kLabelOctetJson = [] {
  std::array<std::array<char, 8>, 256> table{};
  for (std::size_t c = 0; c < 256; ++c) {
    auto& entry = table[c];
    const auto octet = static_cast<char>(c);
    if (c < 0x21 || c > 0x7E) {
      entry = {'\\', '\\', static_cast<char>('0' + c / 100), static_cast<char>('0' + c / 10 % 10),
               static_cast<char>('0' + c % 10)};
      entry[7] = 5;
    } else if (c == '"' || c == '\\') {
      entry = {'\\', '\\', '\\', octet};
      entry[7] = 4;
    } else if (c == '.' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$') {
      entry = {'\\', '\\', octet};
      entry[7] = 3;
    } else {
      entry = {octet};
      entry[7] = 1;
    }
  }
  return table;
}();

// The most one wire octet of a name becomes: `\\DDD`.
constexpr std::size_t kNameJsonPerOctet = 5;

char* write_name_json(char* at, const QueryName& name) noexcept {
  if (name.is_root()) {
    *at++ = '.';
    return at;
  }
  const auto wire = name.wire();
  std::size_t i = 0;
  while (i < wire.size() && wire[i] != 0) {
    if (i != 0) {
      *at++ = '.';
    }
    const std::size_t end = std::min(wire.size(), i + 1 + wire[i]);
    for (++i; i < end; ++i) {
      const auto& json = kLabelOctetJson[wire[i]];
      std::memcpy(at, json.data(), json.size());
      at += json[7];
    }
  }
  return at;
}

// "0".."255", length in octet 3; written like kLabelOctetJson.
constexpr std::array<std::array<char, 4>, 256> kDecimalOctet = [] {
  std::array<std::array<char, 4>, 256> table{};
  for (std::size_t n = 0; n < 256; ++n) {
    std::size_t size = 0;
    if (n >= 100) table[n][size++] = static_cast<char>('0' + n / 100);
    if (n >= 10) table[n][size++] = static_cast<char>('0' + n / 10 % 10);
    table[n][size++] = static_cast<char>('0' + n % 10);
    table[n][3] = static_cast<char>(size);
  }
  return table;
}();

constexpr std::array<char, 200> kTwoDigits = [] {
  std::array<char, 200> digits{};
  for (std::size_t n = 0; n < 100; ++n) {
    digits[2 * n] = static_cast<char>('0' + n / 10);
    digits[2 * n + 1] = static_cast<char>('0' + n % 10);
  }
  return digits;
}();

char* write_two_digits(char* at, std::uint32_t value) noexcept {
  std::memcpy(at, kTwoDigits.data() + 2 * value, 2);
  return at + 2;
}

char* write_number(char* at, std::uint32_t value) noexcept {
  // Room for any uint32_t is part of the caller's bound.
  return std::to_chars(at, at + 10, value).ptr;
}

template <std::size_t N>
char* write_literal(char* at, const char (&text)[N]) noexcept {
  std::memcpy(at, text, N - 1);
  return at + (N - 1);
}

char* write_text(char* at, std::string_view text) noexcept {
  std::memcpy(at, text.data(), text.size());
  return at + text.size();
}

}  // namespace

namespace {

// 12 lower-case hex digits: the 48 bits of policy_version_of().
char* write_policy_version(char* at, std::uint64_t version) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  for (int shift = 44; shift >= 0; shift -= 4) {
    *at++ = kDigits[(version >> shift) & 0xF];
  }
  return at;
}

}  // namespace

CloudEventFormatter::CloudEventFormatter(std::string_view cell) {
  const std::string escaped_cell = json_escaped(cell);
  after_id_.append(R"(","source":"dnsgate/cells/)");
  after_id_.append(escaped_cell);
  after_id_.append(R"(","type":")");
  after_id_.append(json_escaped(kEventType));
  after_id_.append(R"(","time":")");
  before_transport_.append(R"(,"data":{"cell":")");
  before_transport_.append(escaped_cell);
  before_transport_.append(R"(","transport":")");
}

// RFC 3339 in UTC with exactly six fractional digits ("...T09:00:00.123456Z"):
// a fixed width keeps the lines sortable as text, and microseconds are what
// the latencies are measured in. Events come in bursts within one second, so
// the date and clock are formatted once per second, the fraction per event.
char* CloudEventFormatter::write_time(char* at,
                                      std::chrono::system_clock::time_point time) noexcept {
  using namespace std::chrono;
  // floor, not duration_cast: a time before 1970 must not round towards it.
  const auto micros = floor<microseconds>(time);
  const auto second = floor<seconds>(micros);
  if (!has_second_ || second != second_) {
    const auto day = floor<days>(second);
    const year_month_day date{day};
    const hh_mm_ss clock{second - day};
    const int length = std::snprintf(
        second_text_.data(), second_text_.size(), "%04d-%02u-%02uT%02d:%02d:%02d",
        static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
        static_cast<unsigned>(date.day()), static_cast<int>(clock.hours().count()),
        static_cast<int>(clock.minutes().count()), static_cast<int>(clock.seconds().count()));
    second_size_ =
        length > 0 ? std::min(static_cast<std::size_t>(length), second_text_.size() - 1) : 0;
    second_ = second;
    has_second_ = true;
  }
  at = write_text(at, {second_text_.data(), second_size_});
  const auto fraction = static_cast<std::uint32_t>((micros - second).count());  // 0-999999
  *at++ = '.';
  at = write_two_digits(at, fraction / 10000);
  at = write_two_digits(at, fraction / 100 % 100);
  at = write_two_digits(at, fraction % 100);
  *at++ = 'Z';
  return at;
}

// "127.0.0.1:40312" or "[::1]:40312", as Endpoint::to_string writes it.
char* CloudEventFormatter::write_endpoint(char* at, const Endpoint& endpoint,
                                          Ipv6Text& cache) noexcept {
  sockaddr_storage storage;
  endpoint.to_sockaddr(storage);
  if (endpoint.family() == AF_INET6) {
    sockaddr_in6 in6;
    std::memcpy(&in6, &storage, sizeof in6);
    if (!cache.valid || std::memcmp(cache.address.data(), &in6.sin6_addr, 16) != 0) {
      // RFC 5952's shortest form, exactly as Endpoint::to_string has it.
      std::array<char, INET6_ADDRSTRLEN> text{};
      ::inet_ntop(AF_INET6, &in6.sin6_addr, text.data(), text.size());
      cache.size = std::strlen(text.data());
      std::memcpy(cache.text.data(), text.data(), cache.size);
      std::memcpy(cache.address.data(), &in6.sin6_addr, 16);
      cache.valid = true;
    }
    *at++ = '[';
    at = write_text(at, {cache.text.data(), cache.size});
    *at++ = ']';
  } else {
    sockaddr_in in4;
    std::memcpy(&in4, &storage, sizeof in4);
    std::array<std::uint8_t, 4> octets;
    std::memcpy(octets.data(), &in4.sin_addr, 4);
    for (std::size_t i = 0; i < 4; ++i) {
      if (i != 0) {
        *at++ = '.';
      }
      const auto& decimal = kDecimalOctet[octets[i]];
      std::memcpy(at, decimal.data(), decimal.size());
      at += decimal[3];
    }
  }
  *at++ = ':';
  return write_number(at, endpoint.port());
}

void CloudEventFormatter::append(std::string& out, const QueryRecord& record) {
  append_event(out, record, nullptr);
}

void CloudEventFormatter::append(std::string& out, const QueryRecord& record,
                                 std::string_view event_id) {
  append_event(out, record, &event_id);
}

// Built by hand rather than through a JSON tree: the writer thread formats
// every query the proxy sees, and a tree of small allocations per event cost
// an order of magnitude more than the DNS work it describes. The line is
// written through a pointer into room reserved for the longest line this
// record can make, so no write checks for space; the tests compare the output
// byte for byte with the formatter this one replaced.
void CloudEventFormatter::append_event(std::string& out, const QueryRecord& record,
                                       const std::string_view* event_id) {
  const NameTables& names = name_tables();
  // A spill_ string holds a name the tables do not (rare); otherwise it stays
  // empty and allocates nothing.
  std::string spill;
  const std::string_view transport = json_name(
      names.transports, static_cast<std::size_t>(record.transport), transport_name, spill);
  std::string spill_action;
  const std::string_view action =
      json_name(names.actions, static_cast<std::size_t>(record.action), action_name, spill_action);
  std::string spill_reason;
  const std::string_view reason =
      json_name(names.reasons, static_cast<std::size_t>(record.reason), reason_name, spill_reason);
  std::string spill_malformed;
  const bool malformed = record.reason == ReasonCode::malformed_query;
  const std::string_view parse_error =
      malformed ? json_name(names.parse_errors, static_cast<std::size_t>(record.parse_error),
                            parse_error_name, spill_malformed)
                : std::string_view{};
  std::string spill_opcode;
  const bool unsupported = record.reason == ReasonCode::unsupported_opcode;
  const std::string_view opcode =
      unsupported ? json_name(names.opcodes, record.opcode, opcode_name, spill_opcode)
                  : std::string_view{};
  std::string spill_type;
  std::string spill_class;
  std::string_view qtype;
  std::string_view qclass;
  if (record.has_question) {
    qtype = json_name(names.types, record.qtype, type_name, spill_type);
    qclass = json_name(names.classes, record.qclass, class_name, spill_class);
  }
  std::string spill_rcode;
  const std::string_view rcode =
      record.has_rcode ? json_name(names.rcodes, record.rcode, rcode_name, spill_rcode)
                       : std::string_view{};
  const std::string_view dnssec = to_string(record.dnssec);  // plain words, nothing to escape

  // Keys, punctuation, numbers and the time's fraction take about 300 octets
  // of kFixedRoom; the rest is counted at its longest. What is left over
  // covers the table writes, which store up to 7 octets past their text.
  constexpr std::size_t kFixedRoom = 512;
  constexpr std::size_t kEndpointRoom = 64;
  const std::size_t name_room =
      record.has_question ? record.qname.wire_length() * kNameJsonPerOctet : 0;
  const std::size_t room =
      kFixedRoom + after_id_.size() + before_transport_.size() +
      (event_id != nullptr ? event_id->size() * kJsonEscapedPerOctet : EventIdGenerator::kLength) +
      second_text_.size() + 2 * kEndpointRoom + 2 * name_room + transport.size() + action.size() +
      reason.size() + parse_error.size() + opcode.size() + qtype.size() + qclass.size() +
      rcode.size() + record.upstream_uri.size() + kMaxUpstreamErrorText + dnssec.size();

  const std::size_t start = out.size();
  // Nothing below throws: `out` ends up with the whole line or, had this
  // thrown, as it was.
  out.resize(start + room);
  char* at = out.data() + start;

  at = write_literal(at, R"({"specversion":"1.0","id":")");
  if (event_id != nullptr) {
    at = write_json_escaped(at, *event_id);
  } else {
    if (!ids_) {
      ids_.emplace();
    }
    ids_->write(at);
    at += EventIdGenerator::kLength;
  }
  at = write_text(at, after_id_);
  at = write_time(at, record.received_at);
  at = write_literal(at, R"(","datacontenttype":"application/json")");
  // The name's JSON text is made once and copied for data.qname.
  const char* name_json = nullptr;
  std::size_t name_json_size = 0;
  if (record.has_question) {
    at = write_literal(at, R"(,"subject":")");
    name_json = at;
    at = write_name_json(at, record.qname);
    name_json_size = static_cast<std::size_t>(at - name_json);
    *at++ = '"';
  }

  at = write_text(at, before_transport_);
  at = write_text(at, transport);
  at = write_literal(at, R"(","client":")");
  at = write_endpoint(at, record.client, client_ipv6_);
  at = write_literal(at, R"(","size":)");
  at = write_number(at, record.size);
  if (record.has_transaction_id) {
    at = write_literal(at, R"(,"transactionId":)");
    at = write_number(at, record.transaction_id);
  }
  if (record.has_question) {
    at = write_literal(at, R"(,"qname":")");
    at = write_text(at, {name_json, name_json_size});
    at = write_literal(at, R"(","qtype":")");
    at = write_text(at, qtype);
    at = write_literal(at, R"(","qclass":")");
    at = write_text(at, qclass);
    *at++ = '"';
  }
  at = write_literal(at, R"(,"action":")");
  at = write_text(at, action);
  at = write_literal(at, R"(","reasonCode":")");
  at = write_text(at, reason);
  *at++ = '"';
  if (malformed) {
    at = write_literal(at, R"(,"malformedReason":")");
    at = write_text(at, parse_error);
    *at++ = '"';
  }
  if (unsupported) {
    at = write_literal(at, R"(,"opcode":")");
    at = write_text(at, opcode);
    *at++ = '"';
  }
  at = write_literal(at, R"(,"rcode":)");
  if (record.has_rcode) {
    *at++ = '"';
    at = write_text(at, rcode);
    *at++ = '"';
  } else {
    at = write_literal(at, "null");
  }
  at = write_literal(at, R"(,"answerCount":)");
  at = write_number(at, record.answer_count);
  if (record.has_upstream && !record.upstream_uri.empty()) {
    // The config admits no character JSON would have to escape in a URI.
    at = write_literal(at, R"(,"upstream":")");
    at = write_text(at, record.upstream_uri);
    *at++ = '"';
  } else if (record.has_upstream) {
    // The upstream is the same resolver event after event.
    if (!upstream_.valid || !(upstream_.endpoint == record.upstream)) {
      upstream_.size = static_cast<std::size_t>(
          write_endpoint(upstream_.text.data(), record.upstream, upstream_ipv6_) -
          upstream_.text.data());
      upstream_.endpoint = record.upstream;
      upstream_.valid = true;
    }
    at = write_literal(at, R"(,"upstream":")");
    at = write_text(at, {upstream_.text.data(), upstream_.size});
    *at++ = '"';
  }
  if (record.upstream_error) {
    at = write_literal(at, R"(,"upstreamError":")");
    at += write_upstream_error(record.upstream_error, at);
    *at++ = '"';
  }
  at = write_literal(at, R"(,"dnssec":")");
  at = write_text(at, dnssec);
  at = write_literal(at, R"(","policyVersion":")");
  at = write_policy_version(at, record.policy_version);
  *at++ = '"';
  at = write_literal(at, R"(,"latencyUs":)");
  at = write_number(at, record.latency_us);
  at = write_literal(at, "}}");
  out.resize(static_cast<std::size_t>(at - out.data()));
}

void append_cloud_event(std::string& out, const QueryRecord& record, std::string_view cell,
                        std::string_view event_id) {
  CloudEventFormatter(cell).append(out, record, event_id);
}

std::string format_cloud_event(const QueryRecord& record, std::string_view cell,
                               std::string_view event_id) {
  std::string out;
  out.reserve(512);
  append_cloud_event(out, record, cell, event_id);
  return out;
}

}  // namespace dnsgate
