// format_cloud_event field by field, the enum names, the event ids and the
// formatter the writer uses (byte-for-byte checks against the old formatter
// are in cloud_event_differential_test.cpp).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "dnsgate/events.hpp"

namespace dnsgate {
namespace {

using Json = nlohmann::json;
using namespace std::chrono;

// 2026-11-26T09:00:00.123456Z
system_clock::time_point example_time() {
  return sys_days{year{2026} / November / 26} + hours{9} + microseconds{123456};
}

Endpoint endpoint(std::string_view text) {
  auto parsed = Endpoint::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(Endpoint{});
}

QueryName name_from_wire(const std::vector<std::uint8_t>& wire) {
  auto name = QueryName::from_wire(wire);
  EXPECT_TRUE(name.has_value());
  return name.value_or(QueryName{});
}

// www.example.com A IN, forwarded and answered.
QueryRecord forwarded_record() {
  QueryRecord record;
  record.received_at = example_time();
  record.latency_us = 312;
  record.policy_version = 0xa1b2c3d;
  record.transport = Transport::udp;
  record.client = endpoint("127.0.0.1:40312");
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
  record.rcode = 0;
  record.answer_count = 1;
  record.has_upstream = true;
  record.upstream = endpoint("127.0.0.1:5300");
  return record;
}

// A single octet arrived: no id, no question, nothing sent back.
QueryRecord malformed_record() {
  QueryRecord record;
  record.received_at = example_time();
  record.latency_us = 4;
  record.client = endpoint("127.0.0.1:40000");
  record.size = 1;
  record.has_transaction_id = false;
  record.has_question = false;
  record.action = QueryAction::drop;
  record.reason = ReasonCode::malformed_query;
  record.parse_error = ParseError::pointer_into_header;
  record.has_rcode = false;
  record.has_upstream = false;
  return record;
}

// True when `text` has the shape of `pattern`: `9` a decimal digit, `f` a
// lower-case hex digit, `v` an RFC 4122 variant digit (8, 9, a, b), anything
// else itself. (No std::regex: GCC 12's warns under sanitizers with -Werror.)
bool has_shape(std::string_view text, std::string_view pattern) {
  if (text.size() != pattern.size()) {
    return false;
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool digit = c >= '0' && c <= '9';
    const bool hex = digit || (c >= 'a' && c <= 'f');
    switch (pattern[i]) {
      case '9':
        if (!digit) return false;
        break;
      case 'f':
        if (!hex) return false;
        break;
      case 'v':
        if (c != '8' && c != '9' && c != 'a' && c != 'b') return false;
        break;
      default:
        if (c != pattern[i]) return false;
    }
  }
  return true;
}

constexpr std::string_view kRfc3339Micros = "9999-99-99T99:99:99.999999Z";
constexpr std::string_view kUuidV4 = "ffffffff-ffff-4fff-vfff-ffffffffffff";

constexpr std::string_view kEventId = "4b1c2d7e-0000-4000-8000-000000000001";

TEST(CloudEvent, ForwardedQueryCarriesEveryField) {
  const std::string line = format_cloud_event(forwarded_record(), "demo", kEventId);
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one event is one line";
  const Json event = Json::parse(line);

  EXPECT_EQ(event["specversion"], "1.0");
  EXPECT_EQ(event["id"], kEventId);
  EXPECT_EQ(event["source"], "dnsgate/cells/demo");
  EXPECT_EQ(event["type"], "dev.dnsgate.dns_query");
  EXPECT_EQ(event["time"], "2026-11-26T09:00:00.123456Z");
  EXPECT_EQ(event["datacontenttype"], "application/json");
  EXPECT_EQ(event["subject"], "www.example.com");
  EXPECT_EQ(event.size(), 8u);

  const Json& data = event["data"];
  EXPECT_EQ(data["cell"], "demo");
  EXPECT_EQ(data["transport"], "udp");
  EXPECT_EQ(data["client"], "127.0.0.1:40312");
  EXPECT_EQ(data["size"], 33);
  EXPECT_EQ(data["transactionId"], 4660);
  EXPECT_EQ(data["qname"], "www.example.com");
  EXPECT_EQ(data["qtype"], "A");
  EXPECT_EQ(data["qclass"], "IN");
  EXPECT_EQ(data["action"], "forward");
  EXPECT_EQ(data["reasonCode"], "allowed");
  EXPECT_FALSE(data.contains("malformedReason"));
  EXPECT_EQ(data["rcode"], "NOERROR");
  EXPECT_EQ(data["answerCount"], 1);
  EXPECT_EQ(data["upstream"], "127.0.0.1:5300");
  EXPECT_EQ(data["dnssec"], "unchecked");
  EXPECT_EQ(data["policyVersion"], "00000a1b2c3d");
  EXPECT_EQ(data["latencyUs"], 312);
  EXPECT_EQ(data.size(), 16u);
}

TEST(CloudEvent, CarriesTheDnssecVerdictAndItsReasons) {
  QueryRecord record = forwarded_record();
  record.dnssec = DnssecState::secure;
  auto data = nlohmann::json::parse(format_cloud_event(record, "demo", kEventId))["data"];
  EXPECT_EQ(data["dnssec"], "secure");
  record.action = QueryAction::servfail;
  record.reason = ReasonCode::dnssec_bogus;
  record.dnssec = DnssecState::bogus;
  data = nlohmann::json::parse(format_cloud_event(record, "demo", kEventId))["data"];
  EXPECT_EQ(data["reasonCode"], "dnssec_bogus");
  EXPECT_EQ(data["dnssec"], "bogus");
  record.reason = ReasonCode::dnssec_indeterminate;
  record.dnssec = DnssecState::indeterminate;
  data = nlohmann::json::parse(format_cloud_event(record, "demo", kEventId))["data"];
  EXPECT_EQ(data["reasonCode"], "dnssec_indeterminate");
  EXPECT_EQ(data["dnssec"], "indeterminate");
}

TEST(CloudEvent, KeysComeInTheDocumentedOrder) {
  const std::string line = format_cloud_event(forwarded_record(), "demo", kEventId);
  const std::vector<std::string> keys = {
      "\"specversion\"",     "\"id\"",      "\"source\"",        "\"type\"",     "\"time\"",
      "\"datacontenttype\"", "\"subject\"", "\"data\"",          "\"cell\"",     "\"transport\"",
      "\"client\"",          "\"size\"",    "\"transactionId\"", "\"qname\"",    "\"qtype\"",
      "\"qclass\"",          "\"action\"",  "\"reasonCode\"",    "\"rcode\"",    "\"answerCount\"",
      "\"upstream\"",        "\"dnssec\"",  "\"policyVersion\"", "\"latencyUs\""};
  std::size_t previous = 0;
  for (const auto& key : keys) {
    const std::size_t at = line.find(key + ":");
    ASSERT_NE(at, std::string::npos) << key;
    EXPECT_GE(at, previous) << key << " out of order in " << line;
    previous = at;
  }
}

TEST(CloudEvent, MalformedQueryCarriesOnlyWhatIsKnown) {
  const Json event = Json::parse(format_cloud_event(malformed_record(), "demo", kEventId));

  EXPECT_FALSE(event.contains("subject")) << "no qname, no subject";
  const Json& data = event["data"];
  EXPECT_EQ(data["transport"], "udp");
  EXPECT_EQ(data["client"], "127.0.0.1:40000");
  EXPECT_EQ(data["size"], 1);
  EXPECT_FALSE(data.contains("transactionId"));
  EXPECT_FALSE(data.contains("qname"));
  EXPECT_FALSE(data.contains("qtype"));
  EXPECT_FALSE(data.contains("qclass"));
  EXPECT_EQ(data["action"], "drop");
  EXPECT_EQ(data["reasonCode"], "malformed_query");
  EXPECT_EQ(data["malformedReason"], "pointer_into_header");
  ASSERT_TRUE(data.contains("rcode")) << "rcode is present as null when nothing was sent";
  EXPECT_TRUE(data["rcode"].is_null());
  EXPECT_EQ(data["answerCount"], 0);
  EXPECT_FALSE(data.contains("upstream"));
  EXPECT_EQ(data["latencyUs"], 4);
}

TEST(CloudEvent, TransactionIdZeroIsStillATransactionId) {
  QueryRecord record = malformed_record();
  record.size = 2;
  record.has_transaction_id = true;
  record.transaction_id = 0;
  const Json event = Json::parse(format_cloud_event(record, "demo", kEventId));
  ASSERT_TRUE(event["data"].contains("transactionId"));
  EXPECT_EQ(event["data"]["transactionId"], 0);
}

TEST(CloudEvent, RefusedQueryHasRcodeButNoUpstream) {
  QueryRecord record = forwarded_record();
  record.action = QueryAction::refuse;
  record.reason = ReasonCode::not_allowlisted;
  record.rcode = 5;
  record.answer_count = 0;
  record.has_upstream = false;
  const Json data = Json::parse(format_cloud_event(record, "demo", kEventId))["data"];
  EXPECT_EQ(data["action"], "refuse");
  EXPECT_EQ(data["reasonCode"], "not_allowlisted");
  EXPECT_EQ(data["rcode"], "REFUSED");
  EXPECT_FALSE(data.contains("upstream"));
  EXPECT_FALSE(data.contains("malformedReason"));
}

TEST(CloudEvent, UnsupportedOpcodeSaysWhichOpcode) {
  QueryRecord record = forwarded_record();
  record.action = QueryAction::refuse;
  record.reason = ReasonCode::unsupported_opcode;
  record.opcode = 4;
  record.rcode = 4;
  record.answer_count = 0;
  record.has_upstream = false;
  const Json data = Json::parse(format_cloud_event(record, "demo", kEventId))["data"];
  EXPECT_EQ(data["reasonCode"], "unsupported_opcode");
  EXPECT_EQ(data["opcode"], "NOTIFY");
  EXPECT_EQ(data["rcode"], "NOTIMP");
  EXPECT_EQ(data["qname"], "www.example.com");
  // Only unsupported_opcode events say the opcode.
  EXPECT_FALSE(
      Json::parse(format_cloud_event(forwarded_record(), "demo", kEventId))["data"].contains(
          "opcode"));
}

TEST(CloudEvent, UnsupportedOpcodeWithoutQuestionAndBadvers) {
  // `dig +header-only +opcode=15 +edns=1`: no question, BADVERS sent.
  QueryRecord record = forwarded_record();
  record.size = 23;
  record.has_question = false;
  record.action = QueryAction::refuse;
  record.reason = ReasonCode::unsupported_opcode;
  record.opcode = 15;
  record.rcode = 16;
  record.answer_count = 0;
  record.has_upstream = false;
  const Json event = Json::parse(format_cloud_event(record, "demo", kEventId));
  EXPECT_FALSE(event.contains("subject"));
  const Json& data = event["data"];
  EXPECT_FALSE(data.contains("qname"));
  EXPECT_FALSE(data.contains("qtype"));
  EXPECT_EQ(data["opcode"], "OPCODE15");
  EXPECT_EQ(data["rcode"], "BADVERS");
  EXPECT_EQ(data["transactionId"], 4660);
}

TEST(CloudEvent, EscapedQnameSurvivesJsonExactly) {
  QueryRecord record = forwarded_record();
  // Two labels: "a.b" and "\0x". As text they must not read as three labels.
  record.qname = name_from_wire({3, 'a', '.', 'b', 2, 0x00, 'x', 0});
  record.qtype = 65280;
  const std::string line = format_cloud_event(record, "demo", kEventId);
  const Json event = Json::parse(line);

  const std::string presentation = R"(a\.b.\000x)";
  EXPECT_EQ(event["subject"], presentation);
  EXPECT_EQ(event["data"]["qname"], presentation);
  EXPECT_EQ(event["data"]["qtype"], "TYPE65280");
  // On the wire of the JSON each backslash is itself escaped.
  EXPECT_NE(line.find(R"("qname":"a\\.b.\\000x")"), std::string::npos) << line;
}

TEST(CloudEvent, RootNameIsADot) {
  QueryRecord record = forwarded_record();
  record.qname = QueryName{};
  const Json event = Json::parse(format_cloud_event(record, "demo", kEventId));
  EXPECT_EQ(event["subject"], ".");
  EXPECT_EQ(event["data"]["qname"], ".");
}

TEST(CloudEvent, Ipv6ClientAndUpstreamAreBracketed) {
  QueryRecord record = forwarded_record();
  record.client = endpoint("[::1]:40312");
  record.upstream = endpoint("[2001:db8::53]:53");
  const Json data = Json::parse(format_cloud_event(record, "demo", kEventId))["data"];
  EXPECT_EQ(data["client"], "[::1]:40312");
  EXPECT_EQ(data["upstream"], "[2001:db8::53]:53");
}

TEST(CloudEvent, TcpTransportIsNamed) {
  QueryRecord record = forwarded_record();
  record.transport = Transport::tcp;
  const Json data = Json::parse(format_cloud_event(record, "demo", kEventId))["data"];
  EXPECT_EQ(data["transport"], "tcp");
}

TEST(CloudEvent, TimeIsRfc3339UtcWithMicroseconds) {
  QueryRecord record = forwarded_record();

  record.received_at = system_clock::now();
  std::string time = Json::parse(format_cloud_event(record, "demo", kEventId))["time"];
  EXPECT_TRUE(has_shape(time, kRfc3339Micros)) << time;

  // Whole seconds still carry six zero digits.
  record.received_at = sys_days{year{2026} / January / 2} + hours{3} + minutes{4} + seconds{5};
  time = Json::parse(format_cloud_event(record, "demo", kEventId))["time"];
  EXPECT_EQ(time, "2026-01-02T03:04:05.000000Z");

  // Sub-microsecond parts are cut, never rounded up into the next second.
  record.received_at = sys_days{year{2026} / December / 31} + hours{23} + minutes{59} +
                       seconds{59} + nanoseconds{999'999'999};
  time = Json::parse(format_cloud_event(record, "demo", kEventId))["time"];
  EXPECT_EQ(time, "2026-12-31T23:59:59.999999Z");

  // Before the epoch the fraction still counts forwards from the second.
  record.received_at = system_clock::time_point{} - microseconds{1};
  time = Json::parse(format_cloud_event(record, "demo", kEventId))["time"];
  EXPECT_EQ(time, "1969-12-31T23:59:59.999999Z");
}

TEST(CloudEvent, CellIsEscapedForJson) {
  // Quotes, backslashes and control characters are escaped; well-formed
  // UTF-8 passes through; the source attribute carries the same text.
  const std::string cell = "a\"b\\c\n\t\x01\x7f-z\xC3\xBCrich-\xE5\x8C\x97-\xF0\x9F\x98\x80";
  const std::string line = format_cloud_event(forwarded_record(), cell, kEventId);
  const Json event = Json::parse(line);
  EXPECT_EQ(event["data"]["cell"], cell);
  EXPECT_EQ(event["source"], "dnsgate/cells/" + cell);
  EXPECT_NE(line.find(R"(a\"b\\c\n\t\u0001)"), std::string::npos) << line;
}

TEST(CloudEvent, InvalidUtf8InCellBecomesReplacementCharacters) {
  const std::string replacement = "\xEF\xBF\xBD";
  struct Case {
    std::string input;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"x\xff", "x" + replacement},                               // never a UTF-8 octet
      {"\xC0\x80", replacement + replacement},                    // overlong NUL
      {"\xED\xA0\x80", replacement + replacement + replacement},  // a UTF-16 surrogate
      {"\xF4\x90\x80\x80", replacement + replacement + replacement + replacement},  // > U+10FFFF
      {"\xE2\x82", replacement + replacement},         // cut short at the end
      {"\xE2\x82x", replacement + replacement + "x"},  // cut short before ASCII
  };
  for (const auto& c : cases) {
    std::string line;
    ASSERT_NO_THROW(line = format_cloud_event(forwarded_record(), c.input, kEventId));
    Json event;
    ASSERT_NO_THROW(event = Json::parse(line)) << line;
    EXPECT_EQ(event["data"]["cell"], c.expected) << line;
  }
}

TEST(CloudEvent, AppendAddsExactlyTheFormattedLine) {
  std::string out = "earlier\n";
  append_cloud_event(out, forwarded_record(), "demo", kEventId);
  EXPECT_EQ(out, "earlier\n" + format_cloud_event(forwarded_record(), "demo", kEventId));
}

TEST(EventNames, EveryEnumeratorHasItsContractName) {
  EXPECT_EQ(to_string(QueryAction::forward), "forward");
  EXPECT_EQ(to_string(QueryAction::refuse), "refuse");
  EXPECT_EQ(to_string(QueryAction::drop), "drop");
  EXPECT_EQ(to_string(QueryAction::servfail), "servfail");

  EXPECT_EQ(to_string(ReasonCode::allowed), "allowed");
  EXPECT_EQ(to_string(ReasonCode::not_allowlisted), "not_allowlisted");
  EXPECT_EQ(to_string(ReasonCode::malformed_query), "malformed_query");
  EXPECT_EQ(to_string(ReasonCode::unsupported_opcode), "unsupported_opcode");
  EXPECT_EQ(to_string(ReasonCode::upstream_timeout), "upstream_timeout");
  EXPECT_EQ(to_string(ReasonCode::upstream_error), "upstream_error");
  EXPECT_EQ(to_string(ReasonCode::overloaded), "overloaded");
  EXPECT_EQ(to_string(ReasonCode::shutdown), "shutdown");

  EXPECT_EQ(to_string(Transport::udp), "udp");
  EXPECT_EQ(to_string(Transport::tcp), "tcp");
}

TEST(EventId, IsAVersion4Uuid) {
  EXPECT_TRUE(has_shape("4b1c2d7e-0000-4000-8000-000000000001", kUuidV4));
  EXPECT_FALSE(has_shape("4b1c2d7e-0000-1000-8000-000000000001", kUuidV4)) << "version 1";
  EXPECT_FALSE(has_shape("4b1c2d7e-0000-4000-c000-000000000001", kUuidV4)) << "variant 110";
  EXPECT_FALSE(has_shape("4B1C2D7E-0000-4000-8000-000000000001", kUuidV4)) << "upper case";
  for (int i = 0; i < 1000; ++i) {
    const std::string id = random_uuid_v4();
    ASSERT_TRUE(has_shape(id, kUuidV4)) << id;
  }
}

TEST(EventId, TenThousandAreAllDistinct) {
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(seen.insert(random_uuid_v4()).second) << "duplicate after " << i;
  }
}

TEST(EventId, EveryRandomDigitTakesEveryValue) {
  // A digit stuck at one value, or a hex conversion that skips some, shows
  // up here: 4,000 ids give each of the 16 values of each digit about 250
  // chances. The version digit is always 4, the variant digit one of 8-b.
  EventIdGenerator ids;
  std::array<std::array<int, 256>, EventIdGenerator::kLength> seen{};
  for (int i = 0; i < 4000; ++i) {
    std::array<char, EventIdGenerator::kLength> id{};
    ids.write(id.data());
    ASSERT_TRUE(has_shape({id.data(), id.size()}, kUuidV4)) << std::string(id.data(), id.size());
    for (std::size_t at = 0; at < id.size(); ++at) {
      ++seen[at][static_cast<unsigned char>(id[at])];
    }
  }
  for (std::size_t at = 0; at < EventIdGenerator::kLength; ++at) {
    std::string values;
    for (int c = 0; c < 256; ++c) {
      if (seen[at][c] > 0) values += static_cast<char>(c);
    }
    if (at == 8 || at == 13 || at == 18 || at == 23) {
      EXPECT_EQ(values, "-") << at;
    } else if (at == 14) {
      EXPECT_EQ(values, "4") << at;
    } else if (at == 19) {
      EXPECT_EQ(values, "89ab") << at;
    } else {
      EXPECT_EQ(values, "0123456789abcdef") << at;
    }
  }
}

TEST(EventId, GeneratorsDoNotShareASequence) {
  EventIdGenerator first;
  EventIdGenerator second;
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(seen.insert(first.next()).second);
    ASSERT_TRUE(seen.insert(second.next()).second);
  }
}

TEST(CloudEventFormatter, AppendsTheLineWithAFreshIdEachTime) {
  CloudEventFormatter formatter("demo");
  std::string out = "earlier\n";
  formatter.append(out, forwarded_record());
  out += '\n';
  formatter.append(out, forwarded_record());
  const std::string first = out.substr(8, out.find('\n', 8) - 8);
  const std::string second = out.substr(out.find('\n', 8) + 1);
  const Json one = Json::parse(first);
  const Json two = Json::parse(second);
  EXPECT_TRUE(has_shape(one["id"].get<std::string>(), kUuidV4)) << first;
  EXPECT_NE(one["id"], two["id"]);
  EXPECT_EQ(first, format_cloud_event(forwarded_record(), "demo", one["id"].get<std::string>()));
}

}  // namespace
}  // namespace dnsgate
