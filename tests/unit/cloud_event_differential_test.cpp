// CloudEventFormatter against the formatter it replaced (cloud_event_reference):
// the same record, cell, id and time must give the same bytes, for records
// drawn at random and for the edges picked out below (every octet in a name,
// every code of every named field, IPv6 forms, time boundaries, odd cells and
// ids). One formatter is reused across many records, as the writer does, so
// what it caches between events (the second, IPv6 texts, the upstream) is
// exercised as it changes, not only when it is fresh.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cloud_event_reference.hpp"
#include "dnsgate/events.hpp"

namespace dnsgate {
namespace {

using namespace std::chrono;

// splitmix64: reproducible, so a failure names a record that can be rebuilt.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t bound) { return next() % bound; }
  bool chance(unsigned percent) { return below(100) < percent; }

 private:
  std::uint64_t state_;
};

Endpoint ipv4(std::array<std::uint8_t, 4> address, std::uint16_t port) {
  sockaddr_in in4{};
  in4.sin_family = AF_INET;
  std::memcpy(&in4.sin_addr, address.data(), 4);
  in4.sin_port = htons(port);
  auto endpoint = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&in4), sizeof in4);
  EXPECT_TRUE(endpoint.has_value());
  return endpoint.value_or(Endpoint{});
}

Endpoint ipv6(std::array<std::uint8_t, 16> address, std::uint16_t port) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  std::memcpy(&in6.sin6_addr, address.data(), 16);
  in6.sin6_port = htons(port);
  auto endpoint = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
  EXPECT_TRUE(endpoint.has_value());
  return endpoint.value_or(Endpoint{});
}

Endpoint ipv6_text(const char* text, std::uint16_t port) {
  std::array<std::uint8_t, 16> address{};
  EXPECT_EQ(inet_pton(AF_INET6, text, address.data()), 1) << text;
  return ipv6(address, port);
}

// IPv6 addresses whose RFC 5952 text is easy to get wrong: zero runs of every
// length and place, two runs of equal length, a lone zero group (never `::`),
// IPv4-mapped and -compatible forms, all ones.
const std::vector<const char*>& tricky_ipv6() {
  static const std::vector<const char*> addresses = {
      "::",
      "::1",
      "1::",
      "2001:db8::53",
      "2001:db8:0:1:1:1:1:1",
      "2001:0:0:1::1",
      "2001:db8::1:0:0:1",
      "1:0:0:2:0:0:3:4",
      "0:0:1::",
      "fe80::1:2:3:4",
      "::ffff:192.0.2.1",
      "::ffff:0.0.0.0",
      "::192.0.2.1",
      "::1:2:3:4",
      "64:ff9b::192.0.2.33",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
      "1:2:3:4:5:6:7:8",
      "abcd:ef01:2345:6789:abcd:ef01:2345:6789",
      "0:1:0:1:0:1:0:1",
      "1:0:1:0:1:0:1:0",
  };
  return addresses;
}

Endpoint random_endpoint(Random& random) {
  const auto port =
      static_cast<std::uint16_t>(random.chance(10) ? random.below(3) * 32767 : random.below(65536));
  switch (random.below(6)) {
    case 0:
      return ipv6_text(tricky_ipv6()[random.below(tricky_ipv6().size())], port);
    case 1: {
      std::array<std::uint8_t, 16> address{};
      for (auto& octet : address) {
        // Mostly zeros, so zero runs of all lengths come up.
        octet = random.chance(60) ? 0 : static_cast<std::uint8_t>(random.next());
      }
      return ipv6(address, port);
    }
    default: {
      std::array<std::uint8_t, 4> address{};
      for (auto& octet : address) {
        const std::uint64_t kind = random.below(4);
        octet = static_cast<std::uint8_t>(kind == 0   ? random.below(10)
                                          : kind == 1 ? 10 + random.below(90)
                                                      : random.next());
      }
      return ipv4(address, port);
    }
  }
}

QueryName name_from_wire(const std::vector<std::uint8_t>& wire) {
  auto name = QueryName::from_wire(wire);
  EXPECT_TRUE(name.has_value());
  return name.value_or(QueryName{});
}

// A name from labels of the given octets, up to 63 per label and 255 octets
// in all (what does not fit is left out).
QueryName name_of_octets(const std::vector<std::uint8_t>& octets, std::size_t label_size = 63) {
  std::vector<std::uint8_t> wire;
  for (std::size_t at = 0; at < octets.size() && wire.size() + 2 < kMaxNameOctets;) {
    const std::size_t size =
        std::min({label_size, octets.size() - at, kMaxNameOctets - 2 - wire.size()});
    wire.push_back(static_cast<std::uint8_t>(size));
    wire.insert(wire.end(), octets.begin() + static_cast<std::ptrdiff_t>(at),
                octets.begin() + static_cast<std::ptrdiff_t>(at + size));
    at += size;
  }
  wire.push_back(0);
  return name_from_wire(wire);
}

QueryName random_name(Random& random) {
  static constexpr std::string_view kHostOctets =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
  static constexpr std::string_view kSpecial = ".\\\"();@$ \x7f\x00";
  if (random.chance(3)) {
    return QueryName{};
  }
  std::vector<std::uint8_t> wire;
  const std::size_t labels = 1 + random.below(random.chance(10) ? 127 : 5);
  for (std::size_t label = 0; label < labels; ++label) {
    std::size_t size = 1 + random.below(random.chance(20) ? 63 : 12);
    if (wire.size() + 1 + size + 1 > kMaxNameOctets) {
      size = kMaxNameOctets - 2 - wire.size();
      if (size == 0 || size > 63) break;
    }
    wire.push_back(static_cast<std::uint8_t>(size));
    for (std::size_t i = 0; i < size; ++i) {
      const std::uint64_t kind = random.below(10);
      wire.push_back(static_cast<std::uint8_t>(kind < 7
                                                   ? kHostOctets[random.below(kHostOctets.size())]
                                               : kind < 9 ? kSpecial[random.below(kSpecial.size())]
                                                          : random.next()));
    }
  }
  wire.push_back(0);
  return name_from_wire(wire);
}

// Any time system_clock can hold (about 1677 to 2262 with nanoseconds),
// mostly near now, with a sub-microsecond part that must be cut, not rounded.
system_clock::time_point random_time(Random& random) {
  using Rep = system_clock::duration::rep;
  if (random.chance(5)) {
    return system_clock::time_point{system_clock::duration{static_cast<Rep>(random.next())}};
  }
  const auto base = sys_days{year{2026} / November / 26};
  const auto offset =
      microseconds{static_cast<std::int64_t>(random.below(2ULL * 86'400'000'000ULL * 400)) -
                   static_cast<std::int64_t>(86'400'000'000ULL * 400)};
  const auto sub = nanoseconds{static_cast<std::int64_t>(random.below(1000))};
  return base + offset + sub;
}

std::string random_text(Random& random, std::size_t max_size) {
  static const std::vector<std::string> kPieces = {"demo",
                                                   "cell-7",
                                                   "\"",
                                                   "\\",
                                                   "\n",
                                                   "\r",
                                                   "\t",
                                                   "\b",
                                                   "\f",
                                                   "\x01",
                                                   "\x1f",
                                                   "\x7f",
                                                   " ",
                                                   "\xC3\xBC",
                                                   "\xE5\x8C\x97",
                                                   "\xF0\x9F\x98\x80",
                                                   "\xEF\xBF\xBD",
                                                   "\xC0\x80",
                                                   "\xED\xA0\x80",
                                                   "\xF4\x90\x80\x80",
                                                   "\xE2\x82",
                                                   "\xff",
                                                   "\x80",
                                                   "\xC2",
                                                   "\xF0\x9F\x98",
                                                   std::string(1, '\0'),
                                                   "/",
                                                   "</script>",
                                                   "\xE0\xA0\x80",
                                                   "\xF4\x8F\xBF\xBF",
                                                   "\xEE\x80\x80"};
  std::string text;
  const std::size_t pieces = random.below(max_size + 1);
  for (std::size_t i = 0; i < pieces; ++i) {
    if (random.chance(20)) {
      text += static_cast<char>(random.next());
    } else {
      text += kPieces[random.below(kPieces.size())];
    }
  }
  return text;
}

QueryRecord random_record(Random& random) {
  QueryRecord record;
  record.received_at = random_time(random);
  record.latency_us =
      static_cast<std::uint32_t>(random.chance(10) ? random.next() : random.below(100000));
  record.policy_version = random.next();
  record.transport = static_cast<Transport>(random.chance(2) ? random.below(256) : random.below(2));
  record.client = random_endpoint(random);
  record.size = static_cast<std::uint32_t>(random.chance(10) ? random.next() : random.below(65536));
  record.has_transaction_id = random.chance(90);
  record.transaction_id = static_cast<std::uint16_t>(random.next());
  record.has_question = random.chance(85);
  record.qname = random_name(random);
  record.qtype = static_cast<std::uint16_t>(random.chance(70) ? random.below(300) : random.next());
  record.qclass = static_cast<std::uint16_t>(random.chance(70) ? random.below(6) : random.next());
  record.action = static_cast<QueryAction>(random.chance(2) ? random.below(256) : random.below(4));
  record.reason = static_cast<ReasonCode>(random.chance(2) ? random.below(256) : random.below(9));
  record.parse_error = static_cast<ParseError>(random.chance(2) ? random.below(256)
                                                                : random.below(kParseErrorCount));
  record.opcode = static_cast<std::uint8_t>(random.chance(70) ? random.below(16) : random.next());
  record.has_rcode = random.chance(80);
  record.rcode = static_cast<std::uint8_t>(random.chance(70) ? random.below(17) : random.next());
  record.answer_count =
      static_cast<std::uint16_t>(random.chance(10) ? random.next() : random.below(5));
  record.has_upstream = random.chance(60);
  record.upstream = random.chance(80) ? ipv4({127, 0, 0, 1}, 5300) : random_endpoint(random);
  return record;
}

// www.example.com A IN, forwarded: the common case, varied one field at a time.
QueryRecord forwarded_record() {
  QueryRecord record;
  record.received_at = sys_days{year{2026} / November / 26} + hours{9} + microseconds{123456};
  record.latency_us = 312;
  record.client = ipv4({127, 0, 0, 1}, 40312);
  record.size = 33;
  record.has_transaction_id = true;
  record.transaction_id = 4660;
  record.has_question = true;
  record.qname =
      name_from_wire({3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0});
  record.qtype = 1;
  record.qclass = 1;
  record.action = QueryAction::forward;
  record.reason = ReasonCode::allowed;
  record.has_rcode = true;
  record.answer_count = 1;
  record.has_upstream = true;
  record.upstream = ipv4({127, 0, 0, 1}, 5300);
  return record;
}

constexpr std::string_view kEventId = "4b1c2d7e-0000-4000-8000-000000000001";

// Formats `record` with `formatter`, which must have been made for `cell`
// (given the id), and through the one-off wrapper, and compares both with the
// reference; false on a difference, so loops can stop at the first one.
bool matches_reference(CloudEventFormatter& formatter, const QueryRecord& record,
                       std::string_view cell, std::string_view id) {
  const std::string expected = reference::format_cloud_event(record, cell, id);
  std::string line;
  formatter.append(line, record, id);
  EXPECT_EQ(line, expected);
  const std::string one_off = format_cloud_event(record, cell, id);
  EXPECT_EQ(one_off, expected);
  return line == expected && one_off == expected;
}

TEST(CloudEventDifferential, RandomRecordsMatchTheOldFormatter) {
  Random random(20261126);
  for (int round = 0; round < 20; ++round) {
    const std::string cell = round == 0 ? "demo" : random_text(random, 12);
    CloudEventFormatter formatter(cell);
    for (int i = 0; i < 2500; ++i) {
      const QueryRecord record = random_record(random);
      const std::string id = random.chance(90) ? std::string(kEventId) : random_text(random, 10);
      ASSERT_TRUE(matches_reference(formatter, record, cell, id))
          << "round " << round << " record " << i;
    }
  }
}

TEST(CloudEventDifferential, GeneratedIdsGiveTheSameLineAsGivenOnes) {
  Random random(7);
  const std::string cell = "demo";
  CloudEventFormatter formatter(cell);
  std::string lines = "earlier\n";
  for (int i = 0; i < 2000; ++i) {
    const QueryRecord record = random_record(random);
    const std::size_t start = lines.size();
    formatter.append(lines, record);
    const std::string_view line = std::string_view(lines).substr(start);
    constexpr std::string_view kBeforeId = R"({"specversion":"1.0","id":")";
    ASSERT_EQ(line.substr(0, kBeforeId.size()), kBeforeId);
    const std::string id(line.substr(kBeforeId.size(), EventIdGenerator::kLength));
    ASSERT_EQ(line, reference::format_cloud_event(record, cell, id));
    lines += '\n';
  }
  EXPECT_EQ(lines.substr(0, 8), "earlier\n") << "what was in the buffer stays";
}

TEST(CloudEventDifferential, EveryOctetInEveryPlaceOfALabel) {
  CloudEventFormatter formatter("demo");
  QueryRecord record = forwarded_record();
  for (unsigned octet = 0; octet < 256; ++octet) {
    const auto o = static_cast<std::uint8_t>(octet);
    for (const std::vector<std::uint8_t>& wire : std::vector<std::vector<std::uint8_t>>{
             {1, o, 0},
             {3, o, 'a', 'b', 0},
             {3, 'a', o, 'b', 0},
             {3, 'a', 'b', o, 0},
             {2, o, o, 1, o, 0},
             {1, 'x', 1, o, 3, 'c', 'o', 'm', 0},
         }) {
      record.qname = name_from_wire(wire);
      ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId)) << "octet " << octet;
    }
  }
  // All 256 octets in a row, in labels of every size.
  std::vector<std::uint8_t> all(256);
  for (unsigned i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
  for (std::size_t label_size = 1; label_size <= 63; ++label_size) {
    for (std::size_t from = 0; from < 256; from += 60) {
      record.qname = name_of_octets(
          std::vector<std::uint8_t>(all.begin() + static_cast<std::ptrdiff_t>(from), all.end()),
          label_size);
      ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId)) << label_size;
    }
  }
}

TEST(CloudEventDifferential, LongestNamesOfTheLongestText) {
  CloudEventFormatter formatter("demo");
  QueryRecord record = forwarded_record();
  // 63 + 63 + 63 + 61 octets in labels: 255 on the wire, each octet as long
  // as it gets in JSON (`\\DDD`, `\\\"`, `\\\\`) or as short.
  for (const std::uint8_t octet : {std::uint8_t{0}, std::uint8_t{' '}, std::uint8_t{0xFF},
                                   std::uint8_t{'"'}, std::uint8_t{'\\'}, std::uint8_t{'.'},
                                   std::uint8_t{'a'}, std::uint8_t{0x7F}, std::uint8_t{0x80}}) {
    std::vector<std::uint8_t> wire;
    for (std::size_t size : {63, 63, 63, 61}) {
      wire.push_back(static_cast<std::uint8_t>(size));
      wire.insert(wire.end(), size, octet);
    }
    wire.push_back(0);
    ASSERT_EQ(wire.size(), kMaxNameOctets);
    record.qname = name_from_wire(wire);
    ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId)) << int{octet};
  }
  // 127 one-octet labels: the most dots a name can have.
  std::vector<std::uint8_t> wire;
  for (int i = 0; i < 127; ++i) {
    wire.push_back(1);
    wire.push_back(static_cast<std::uint8_t>(i % 2 == 0 ? '\\' : 0));
  }
  wire.push_back(0);
  record.qname = name_from_wire(wire);
  EXPECT_TRUE(matches_reference(formatter, record, "demo", kEventId));
  // A long cell and a long id on top.
  const std::string cell(300, '\x01');
  CloudEventFormatter long_cell(cell);
  EXPECT_TRUE(matches_reference(long_cell, record, cell, std::string(200, '"')));
}

TEST(CloudEventDifferential, EveryCodeOfEveryNamedField) {
  CloudEventFormatter formatter("demo");
  QueryRecord record = forwarded_record();
  for (unsigned code = 0; code < 65536; ++code) {
    record.qtype = static_cast<std::uint16_t>(code);
    record.qclass = static_cast<std::uint16_t>(65535 - code);
    ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId)) << code;
  }
  record = forwarded_record();
  for (unsigned code = 0; code < 256; ++code) {
    const auto c = static_cast<std::uint8_t>(code);
    record.rcode = c;
    record.transport = static_cast<Transport>(c);
    record.action = static_cast<QueryAction>(c);
    record.reason = static_cast<ReasonCode>(c);
    ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId)) << code;
    QueryRecord malformed = record;
    malformed.reason = ReasonCode::malformed_query;
    malformed.parse_error = static_cast<ParseError>(c);
    ASSERT_TRUE(matches_reference(formatter, malformed, "demo", kEventId)) << code;
    QueryRecord unsupported = record;
    unsupported.reason = ReasonCode::unsupported_opcode;
    unsupported.opcode = c;
    ASSERT_TRUE(matches_reference(formatter, unsupported, "demo", kEventId)) << code;
  }
}

TEST(CloudEventDifferential, EveryCombinationOfOptionalFields) {
  CloudEventFormatter formatter("demo");
  CloudEventFormatter no_cell("");
  for (unsigned mask = 0; mask < 32; ++mask) {
    QueryRecord record = forwarded_record();
    record.has_transaction_id = (mask & 1) != 0;
    record.has_question = (mask & 2) != 0;
    record.has_rcode = (mask & 4) != 0;
    record.has_upstream = (mask & 8) != 0;
    if ((mask & 16) != 0) record.reason = ReasonCode::malformed_query;
    ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId)) << mask;
    ASSERT_TRUE(matches_reference(no_cell, record, "", "")) << mask;
  }
}

TEST(CloudEventDifferential, Endpoints) {
  CloudEventFormatter formatter("demo");
  QueryRecord record = forwarded_record();
  std::vector<Endpoint> endpoints;
  for (const char* text : tricky_ipv6()) {
    for (std::uint16_t port : {0, 1, 53, 9999, 10000, 65535}) {
      endpoints.push_back(ipv6_text(text, port));
    }
  }
  for (const auto& address : std::vector<std::array<std::uint8_t, 4>>{
           {0, 0, 0, 0}, {127, 0, 0, 1}, {255, 255, 255, 255}, {10, 99, 100, 9}, {1, 22, 203, 0}}) {
    for (std::uint16_t port : {0, 1, 9, 10, 99, 100, 999, 1000, 65535}) {
      endpoints.push_back(ipv4(address, port));
    }
  }
  // Every pair in order: each field's cache sees every change, including an
  // IPv6 address followed by the same address on another port and an IPv4
  // address whose octets begin an IPv6 one.
  for (const Endpoint& client : endpoints) {
    for (std::size_t step = 0; step < endpoints.size(); step += 7) {
      record.client = client;
      record.upstream = endpoints[step];
      ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId))
          << client.to_string() << " " << endpoints[step].to_string();
    }
  }
  record.client = ipv6_text("::102:304", 53);
  record.upstream = ipv4({1, 2, 3, 4}, 53);
  EXPECT_TRUE(matches_reference(formatter, record, "demo", kEventId));
  std::swap(record.client, record.upstream);
  EXPECT_TRUE(matches_reference(formatter, record, "demo", kEventId));
}

TEST(CloudEventDifferential, TimesAcrossSecondDayAndYearBoundaries) {
  CloudEventFormatter formatter("demo");
  QueryRecord record = forwarded_record();
  std::vector<system_clock::time_point> times;
  for (const sys_days day :
       {sys_days{year{2026} / November / 26}, sys_days{year{2026} / December / 31},
        sys_days{year{2024} / February / 28}, sys_days{year{2024} / February / 29},
        sys_days{year{2100} / February / 28}, sys_days{year{2000} / February / 29},
        sys_days{year{1970} / January / 1}, sys_days{year{1969} / December / 31},
        sys_days{year{1999} / December / 31}}) {
    for (const auto in_day : {seconds{0}, seconds{1}, seconds{59}, seconds{3599}, seconds{86399}}) {
      for (const auto fraction :
           {nanoseconds{0}, nanoseconds{1}, nanoseconds{999}, nanoseconds{1000},
            nanoseconds{999'999'999}, nanoseconds{999'999'000}, nanoseconds{500'000'000},
            nanoseconds{10'000}}) {
        times.push_back(day + in_day + fraction);
        times.push_back(day + in_day - fraction);
      }
    }
  }
  times.push_back(system_clock::time_point::min());
  times.push_back(system_clock::time_point::max());
  times.push_back(system_clock::time_point{});
  times.push_back(system_clock::time_point{} - nanoseconds{1});
  times.push_back(system_clock::time_point{} - microseconds{1});
  // In the order listed (the cached second jumps back and forth), then a
  // stream 20 µs apart across a midnight that ends a year, as the writer sees
  // it, then the listed ones again in reverse.
  for (const auto time : times) {
    record.received_at = time;
    ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId));
  }
  const auto midnight = sys_days{year{2027} / January / 1};
  for (system_clock::time_point time = midnight - milliseconds{30};
       time < midnight + milliseconds{30}; time += microseconds{20}) {
    record.received_at = time;
    ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId));
  }
  for (auto it = times.rbegin(); it != times.rend(); ++it) {
    record.received_at = *it;
    ASSERT_TRUE(matches_reference(formatter, record, "demo", kEventId));
  }
}

TEST(CloudEventDifferential, CellsAndIdsOfEveryOctet) {
  QueryRecord record = forwarded_record();
  CloudEventFormatter demo("demo");
  for (unsigned octet = 0; octet < 256; ++octet) {
    const std::string one(1, static_cast<char>(octet));
    for (const std::string& text : {one, "a" + one, one + "z", one + one, "\xE2\x82" + one,
                                    "\xC3" + one, "\xF0\x9F" + one + "\x80"}) {
      CloudEventFormatter formatter(text);
      ASSERT_TRUE(matches_reference(formatter, record, text, kEventId)) << octet;
      ASSERT_TRUE(matches_reference(demo, record, "demo", text)) << octet;
    }
  }
  // Every two-octet sequence behind a lead octet: the UTF-8 validation's
  // edges (overlong, surrogates, past U+10FFFF, cut short) are all in here.
  for (unsigned lead = 0xC0; lead < 0x100; ++lead) {
    for (unsigned second = 0; second < 256; ++second) {
      const std::string id = {static_cast<char>(lead), static_cast<char>(second), '\x80', '\x80',
                              'x'};
      std::string expected = reference::format_cloud_event(record, "demo", id);
      CloudEventFormatter formatter("demo");
      std::string line;
      formatter.append(line, record, id);
      ASSERT_EQ(line, expected) << lead << " " << second;
    }
  }
}

}  // namespace
}  // namespace dnsgate
