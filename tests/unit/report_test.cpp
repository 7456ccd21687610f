// `dnsgate report`'s counting and rendering (src/report/report.hpp):
// counts, the refused table (order, case, clients, Space-Saving past its
// capacity), percentiles, the filters, bad lines, the JSON's keys.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/report.hpp"

namespace dnsgate::report {
namespace {

using Json = nlohmann::json;

struct Event {
  std::string time = "2026-11-26T09:00:00.000000Z";
  std::string cell = "demo";
  std::string client = "127.0.0.1:40312";
  std::string qname = "www.example.com";
  std::string action = "forward";
  std::string reason = "allowed";
  std::string upstream = "127.0.0.1:5300";  // empty: none
  std::string upstream_error;               // empty: none
  std::uint64_t latency = 312;
};

std::string line(const Event& e) {
  Json data{
      {"cell", e.cell},         {"transport", "udp"}, {"client", e.client}, {"size", 44},
      {"qname", e.qname},       {"qtype", "A"},       {"qclass", "IN"},     {"action", e.action},
      {"reasonCode", e.reason}, {"rcode", "NOERROR"}, {"answerCount", 1},   {"dnssec", "unchecked"},
      {"latencyUs", e.latency}};
  if (!e.upstream.empty()) data["upstream"] = e.upstream;
  if (!e.upstream_error.empty()) data["upstreamError"] = e.upstream_error;
  Json event{{"specversion", "1.0"},
             {"id", "4b1c2d7e-9a0f-4c1e-8d2b-6f7a8e9b0c1d"},
             {"source", "dnsgate/cells/" + e.cell},
             {"type", "dev.dnsgate.dns_query"},
             {"time", e.time},
             {"datacontenttype", "application/json"},
             {"subject", e.qname},
             {"data", data}};
  return event.dump();
}

Event refused(const std::string& qname, const std::string& time = "2026-11-26T09:00:00.000000Z",
              const std::string& client = "127.0.0.1:40312") {
  Event e;
  e.qname = qname;
  e.time = time;
  e.client = client;
  e.action = "refuse";
  e.reason = "not_allowlisted";
  e.upstream.clear();
  e.latency = 5;
  return e;
}

Report run(const std::vector<std::string>& lines, ReportOptions options = {}) {
  ReportBuilder builder(std::move(options));
  for (const std::string& l : lines) builder.add_line(l);
  return builder.result();
}

TEST(ReportTime, ParsesRfc3339) {
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:01.5Z"), 1500000);
  EXPECT_EQ(parse_rfc3339("2026-11-26T09:00:00.123456Z"),
            parse_rfc3339("2026-11-26T10:00:00.123456789+01:00"));
  EXPECT_EQ(parse_rfc3339("2026-11-26t09:00:00z"), parse_rfc3339("2026-11-26T09:00:00Z"));
  EXPECT_EQ(format_rfc3339(*parse_rfc3339("2026-11-26T09:00:00.123456Z")),
            "2026-11-26T09:00:00.123456Z");
  EXPECT_EQ(format_rfc3339(*parse_rfc3339("2024-02-29T23:59:59-00:30")),
            "2024-03-01T00:29:59.000000Z");
  for (const char* bad : {"", "2026-11-26", "2026-11-26T09:00:00", "2026-13-01T00:00:00Z",
                          "2025-02-29T00:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26T09:00:00.Z",
                          "2026-11-26T09:00:00Zjunk", "2026-11-26T09:00:00+0100", "yesterday"}) {
    EXPECT_FALSE(parse_rfc3339(bad).has_value()) << bad;
  }
}

TEST(ReportClients, PortRemoved) {
  EXPECT_EQ(client_host("127.0.0.1:40312"), "127.0.0.1");
  EXPECT_EQ(client_host("[::1]:40312"), "::1");
  EXPECT_EQ(client_host("[2001:db8::1]:53"), "2001:db8::1");
  EXPECT_EQ(client_host("2001:db8::1"), "2001:db8::1");
  EXPECT_EQ(client_host("host"), "host");
}

TEST(ReportCounts, ActionsReasonsTimesAndUpstreams) {
  std::vector<std::string> lines;
  Event a;
  a.time = "2026-11-26T09:00:05.000000Z";
  lines.push_back(line(a));
  a.time = "2026-11-26T09:00:01.000000Z";  // completion order is not arrival order
  lines.push_back(line(a));
  Event fail;
  fail.action = "servfail";
  fail.reason = "upstream_error";
  fail.upstream_error = "connect_refused";
  fail.time = "2026-11-26T09:00:09.000000Z";
  lines.push_back(line(fail));
  Event timeout = fail;
  timeout.reason = "upstream_timeout";
  timeout.upstream_error.clear();
  timeout.upstream = "dot://192.0.2.1:853";
  lines.push_back(line(timeout));
  lines.push_back(line(refused("blocked.example.net")));
  Event malformed;
  malformed.action = "drop";
  malformed.reason = "malformed_query";
  malformed.upstream.clear();
  lines.push_back(line(malformed));

  const Report r = run(lines);
  EXPECT_EQ(r.events, 6u);
  EXPECT_EQ(r.bad_lines, 0u);
  EXPECT_EQ(r.first_time, "2026-11-26T09:00:00.000000Z");
  EXPECT_EQ(r.last_time, "2026-11-26T09:00:09.000000Z");
  EXPECT_EQ(r.by_action, (std::map<std::string, std::uint64_t>{
                             {"forward", 2}, {"servfail", 2}, {"refuse", 1}, {"drop", 1}}));
  EXPECT_EQ(r.by_reason, (std::map<std::string, std::uint64_t>{{"allowed", 2},
                                                               {"upstream_error", 1},
                                                               {"upstream_timeout", 1},
                                                               {"not_allowlisted", 1},
                                                               {"malformed_query", 1}}));
  ASSERT_EQ(r.upstreams.size(), 2u);
  EXPECT_EQ(r.upstreams[0].upstream, "127.0.0.1:5300");
  EXPECT_EQ(r.upstreams[0].count, 3u);
  EXPECT_EQ(r.upstreams[0].errors, (std::map<std::string, std::uint64_t>{{"connect_refused", 1}}));
  EXPECT_EQ(r.upstreams[0].p50_us, 312u);
  EXPECT_EQ(r.upstreams[1].upstream, "dot://192.0.2.1:853");
  EXPECT_EQ(r.upstreams[1].count, 1u);
  EXPECT_TRUE(r.upstreams[1].errors.empty());
}

TEST(ReportRefused, OrderedByCountThenNameAndCapped) {
  std::vector<std::string> lines;
  lines.reserve(12);
  for (int i = 0; i < 3; ++i) lines.push_back(line(refused("c.example")));
  for (int i = 0; i < 3; ++i) lines.push_back(line(refused("b.example")));
  for (int i = 0; i < 5; ++i) lines.push_back(line(refused("z.example")));
  lines.push_back(line(refused("a.example")));
  ReportOptions options;
  options.top = 3;
  const Report r = run(lines, options);
  ASSERT_EQ(r.top_refused.size(), 3u);
  EXPECT_EQ(r.top_refused[0].qname, "z.example");
  EXPECT_EQ(r.top_refused[0].count, 5u);
  EXPECT_EQ(r.top_refused[1].qname, "b.example");
  EXPECT_EQ(r.top_refused[2].qname, "c.example");
  EXPECT_EQ(r.top_refused[2].count, 3u);
  EXPECT_EQ(r.refused_events, 12u);
  EXPECT_FALSE(r.refused_approximate);
}

TEST(ReportRefused, CaseInsensitiveReportedAsFirstSeen) {
  const Report r = run({line(refused("Evil.Example.NET", "2026-11-26T09:00:02Z")),
                        line(refused("evil.example.net", "2026-11-26T09:00:01Z")),
                        line(refused("EVIL.EXAMPLE.NET", "2026-11-26T09:00:03Z"))});
  ASSERT_EQ(r.top_refused.size(), 1u);
  EXPECT_EQ(r.top_refused[0].qname, "Evil.Example.NET");
  EXPECT_EQ(r.top_refused[0].count, 3u);
  EXPECT_EQ(r.top_refused[0].first_seen, "2026-11-26T09:00:01.000000Z");
  EXPECT_EQ(r.top_refused[0].last_seen, "2026-11-26T09:00:03.000000Z");
}

TEST(ReportRefused, AtMostTenDistinctClientsWithoutPorts) {
  std::vector<std::string> lines;
  for (int i = 0; i < 15; ++i) {
    // Each address twice, with different ports: counted once.
    lines.push_back(line(
        refused("x.example", "2026-11-26T09:00:00Z", "10.0.0." + std::to_string(i) + ":1000")));
    lines.push_back(line(
        refused("x.example", "2026-11-26T09:00:00Z", "10.0.0." + std::to_string(i) + ":2000")));
  }
  lines.push_back(line(refused("y.example", "2026-11-26T09:00:00Z", "[::1]:53")));
  const Report r = run(lines);
  ASSERT_EQ(r.top_refused.size(), 2u);
  EXPECT_EQ(r.top_refused[0].count, 30u);
  ASSERT_EQ(r.top_refused[0].clients.size(), 10u);
  EXPECT_EQ(r.top_refused[0].clients.front(), "10.0.0.0");
  EXPECT_EQ(r.top_refused[0].clients.back(), "10.0.0.9");
  EXPECT_EQ(r.top_refused[1].clients, std::vector<std::string>{"::1"});
}

TEST(ReportRefused, OnlyNotAllowlistedWithAName) {
  Event notimp = refused("x.example");
  notimp.reason = "unsupported_opcode";
  Event allowed;
  const Report r = run({line(notimp), line(allowed)});
  EXPECT_TRUE(r.top_refused.empty());
  EXPECT_EQ(r.refused_events, 0u);
}

TEST(ReportRefused, SpaceSavingKeepsHeavyHittersPastCapacity) {
  ReportOptions options;
  options.refused_capacity = 4;
  options.top = 2;
  std::vector<std::string> lines;
  // Two heavy names among many one-off names: 10 + 10 + 40 = 60 refused,
  // so any count above 60 / 4 = 15 is guaranteed in the table.
  for (int i = 0; i < 40; ++i) {
    if (i % 4 == 0) lines.push_back(line(refused("heavy.example")));
    if (i % 4 == 1) lines.push_back(line(refused("second.example")));
    lines.push_back(line(refused("once" + std::to_string(i) + ".example")));
  }
  for (int i = 0; i < 10; ++i) lines.push_back(line(refused("HEAVY.example")));
  for (int i = 0; i < 10; ++i) lines.push_back(line(refused("second.example")));
  const Report r = run(lines, options);
  EXPECT_TRUE(r.refused_approximate);
  ASSERT_EQ(r.top_refused.size(), 2u);
  // A name evicted and seen again is reported as seen again: HEAVY or heavy.
  std::set<std::string> names;
  for (const RefusedName& name : r.top_refused) {
    std::string lower = name.qname;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    names.insert(lower);
  }
  EXPECT_EQ(names, (std::set<std::string>{"heavy.example", "second.example"}));
  for (const RefusedName& name : r.top_refused) {
    // True count 20: reported at most that, and at most N / capacity less.
    EXPECT_LE(name.count, 20u);
    EXPECT_GE(name.count + name.overcount, 20u);
    EXPECT_GE(name.count, 20u - 60u / 4u);
  }
}

TEST(ReportRefused, SpaceSavingBoundedMemory) {
  ReportOptions options;
  options.refused_capacity = 100;
  ReportBuilder builder(options);
  for (int i = 0; i < 3000; ++i) {
    builder.add_line(line(refused("n" + std::to_string(i) + ".example")));
  }
  const Report r = builder.result();
  EXPECT_EQ(r.refused_events, 3000u);
  ASSERT_EQ(r.top_refused.size(), 10u);
  for (const RefusedName& name : r.top_refused) EXPECT_EQ(name.count, 1u);  // never overstated
}

TEST(ReportLatency, ExactBelowSixteenAndNearestRank) {
  LatencyHistogram h;
  EXPECT_EQ(h.percentile(50), 0u);
  for (std::uint64_t v = 1; v <= 10; ++v) h.add(v);
  EXPECT_EQ(h.percentile(50), 5u);
  EXPECT_EQ(h.percentile(99), 10u);
  EXPECT_EQ(h.percentile(100), 10u);
  EXPECT_EQ(h.percentile(0), 1u);
}

TEST(ReportLatency, KnownInputsWithinDocumentedPrecision) {
  LatencyHistogram h;
  // 1..1000 µs: exact p50 = 500, p99 = 990.
  for (std::uint64_t v = 1; v <= 1000; ++v) h.add(v);
  EXPECT_GE(h.percentile(50), 500u);
  EXPECT_LE(h.percentile(50), 500u + 500u / 16u);
  EXPECT_GE(h.percentile(99), 990u);
  EXPECT_LE(h.percentile(99), 990u + 990u / 16u);
  EXPECT_EQ(h.count(), 1000u);
}

TEST(ReportLatency, OneValueIsItsOwnPercentiles) {
  LatencyHistogram h;
  for (int i = 0; i < 99; ++i) h.add(300);
  h.add(2000000);
  EXPECT_EQ(h.percentile(50), 303u);  // the bucket 288..303
  EXPECT_LE(h.percentile(50), 300u + 300u / 16u);
  EXPECT_LE(h.percentile(99), 300u + 300u / 16u);
  EXPECT_EQ(h.percentile(100), 2000000u);  // capped at the largest value seen
}

TEST(ReportLatency, BucketsCoverEveryValue) {
  std::uint64_t previous_upper = 0;
  for (std::size_t b = 0; b < LatencyHistogram::kBuckets; ++b) {
    const std::uint64_t upper = LatencyHistogram::bucket_upper(b);
    if (b > 0) {
      EXPECT_EQ(LatencyHistogram::bucket_of(previous_upper + 1), b);
    }
    EXPECT_EQ(LatencyHistogram::bucket_of(upper), b);
    previous_upper = upper;
  }
  EXPECT_EQ(LatencyHistogram::bucket_of(UINT64_MAX), LatencyHistogram::kBuckets - 1);
  LatencyHistogram h;
  h.add(UINT64_MAX);
  EXPECT_EQ(h.percentile(50), UINT64_MAX);
}

TEST(ReportLatency, PerUpstreamPercentiles) {
  std::vector<std::string> lines;
  for (std::uint64_t v = 1; v <= 100; ++v) {
    Event e;
    e.latency = v < 16 ? v : 10;  // 1..15 once each, 85 more at 10 µs
    lines.push_back(line(e));
  }
  const Report r = run(lines);
  ASSERT_EQ(r.upstreams.size(), 1u);
  EXPECT_EQ(r.upstreams[0].count, 100u);
  EXPECT_EQ(r.upstreams[0].p50_us, 10u);
  EXPECT_EQ(r.upstreams[0].p99_us, 14u);
}

TEST(ReportFilters, CellAndSince) {
  Event mine = refused("mine.example", "2026-11-26T09:00:10Z");
  Event old = mine;
  old.time = "2026-11-26T08:59:59.999999Z";
  Event other = mine;
  other.cell = "other";
  ReportOptions options;
  options.cell = "demo";
  options.since = parse_rfc3339("2026-11-26T10:00:00+01:00");
  const Report r = run({line(mine), line(old), line(other), line(mine)}, options);
  EXPECT_EQ(r.events, 2u);
  EXPECT_EQ(r.filtered, 2u);
  EXPECT_EQ(r.first_time, "2026-11-26T09:00:10.000000Z");
  ASSERT_EQ(r.top_refused.size(), 1u);
  EXPECT_EQ(r.top_refused[0].count, 2u);

  ReportOptions since_only;
  since_only.since = parse_rfc3339("2026-11-26T09:00:00Z");
  EXPECT_EQ(run({line(mine), line(old), line(other)}, since_only).events, 2u);
}

TEST(ReportBadLines, CountedNeverFatal) {
  Json wrong_type = Json::parse(line(Event{}));
  wrong_type["type"] = "dev.dnsgate.other";
  Json no_data = Json::parse(line(Event{}));
  no_data.erase("data");
  Json data_string = Json::parse(line(Event{}));
  data_string["data"] = "x";
  Json no_action = Json::parse(line(Event{}));
  no_action["data"].erase("action");
  Json bad_time = Json::parse(line(Event{}));
  bad_time["time"] = "yesterday";
  const Report r = run({
      "not json",
      "{\"type\":\"dev.dnsgate.dns_query\"",  // cut short
      "[1,2,3]",
      "42",
      wrong_type.dump(),
      no_data.dump(),
      data_string.dump(),
      no_action.dump(),
      bad_time.dump(),
      std::string("\xff\xfe", 2),
      "",  // blank lines are skipped, not bad
      "  \r",
      line(Event{}),
  });
  EXPECT_EQ(r.bad_lines, 10u);
  EXPECT_EQ(r.events, 1u);
}

TEST(ReportKeys, DistinctKeysBounded) {
  ReportOptions options;
  options.key_capacity = 3;
  options.upstream_capacity = 2;
  std::vector<std::string> lines;
  for (int i = 0; i < 10; ++i) {
    Event e;
    e.action = "a" + std::to_string(i);
    e.upstream = "u" + std::to_string(i);
    lines.push_back(line(e));
  }
  const Report r = run(lines, options);
  EXPECT_EQ(r.by_action.size(), 4u);
  EXPECT_EQ(r.by_action.at("(other)"), 7u);
  EXPECT_EQ(r.upstreams.size(), 3u);
  EXPECT_EQ(r.upstreams[0].upstream, "(other)");
  EXPECT_EQ(r.upstreams[0].count, 8u);
}

TEST(ReportRender, JsonHasExactlyTheDesignKeys) {
  Event fail;
  fail.action = "servfail";
  fail.reason = "upstream_error";
  fail.upstream_error = "connect_refused";
  const Json j = Json::parse(render_json(run(
      {line(refused("Blocked.example", "2026-11-26T09:00:00Z", "[::1]:5")), line(fail), "junk"})));
  std::set<std::string> keys;
  for (const auto& [key, value] : j.items()) keys.insert(key);
  EXPECT_EQ(keys, (std::set<std::string>{"events", "badLines", "firstTime", "lastTime", "byAction",
                                         "byReason", "topRefused", "upstreams"}));
  EXPECT_EQ(j["events"], 2);
  EXPECT_EQ(j["badLines"], 1);
  EXPECT_EQ(j["byAction"], (Json{{"refuse", 1}, {"servfail", 1}}));
  ASSERT_EQ(j["topRefused"].size(), 1u);
  const Json& top = j["topRefused"][0];
  std::set<std::string> top_keys;
  for (const auto& [key, value] : top.items()) top_keys.insert(key);
  EXPECT_EQ(top_keys,
            (std::set<std::string>{"qname", "count", "firstSeen", "lastSeen", "clients"}));
  EXPECT_EQ(top["qname"], "Blocked.example");
  EXPECT_EQ(top["clients"], Json::array({"::1"}));
  ASSERT_EQ(j["upstreams"].size(), 1u);
  const Json& up = j["upstreams"][0];
  std::set<std::string> up_keys;
  for (const auto& [key, value] : up.items()) up_keys.insert(key);
  EXPECT_EQ(up_keys, (std::set<std::string>{"upstream", "count", "p50Us", "p99Us", "errors"}));
  EXPECT_EQ(up["errors"], (Json{{"connect_refused", 1}}));
  EXPECT_EQ(up["p50Us"], 312);

  const Json empty = Json::parse(render_json(run({})));
  EXPECT_TRUE(empty["firstTime"].is_null());
  EXPECT_EQ(empty["byAction"], Json::object());
  EXPECT_EQ(empty["topRefused"], Json::array());
}

TEST(ReportRender, TextHasEverySection) {
  Event fail;
  fail.action = "servfail";
  fail.reason = "upstream_error";
  fail.upstream_error = "connect_refused";
  const std::string text =
      render_text(run({line(refused("blocked.example")), line(fail), line(Event{}), "junk"}));
  for (const char* part :
       {"3 events, 1 bad line", "2026-11-26T09:00:00.000000Z .. 2026-11-26T09:00:00.000000Z",
        "actions:", "forward 1 (33.3%)", "reasons:", "not_allowlisted 1", "top refused names",
        "blocked.example", "127.0.0.1", "upstreams:", "127.0.0.1:5300", "312us",
        "connect_refused 1"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  }
}

TEST(ReportRender, TextEscapesControlCharacters) {
  const std::string text = render_text(run({line(refused("a\x1b[31m.example"))}));
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_NE(text.find("a\\027[31m.example"), std::string::npos) << text;
}

}  // namespace
}  // namespace dnsgate::report
