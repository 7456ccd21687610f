#include "dnsgate/allowlist.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dnsgate/name.hpp"

namespace dnsgate {
namespace {

using namespace std::string_literals;

// Wire form of the given labels, taken byte for byte: a label may hold a
// `.`, a NUL or any other byte, which text in presentation format can't say
// without escapes.
std::vector<std::uint8_t> wire_of_labels(const std::vector<std::string>& labels) {
  std::vector<std::uint8_t> wire;
  for (const std::string& label : labels) {
    wire.push_back(static_cast<std::uint8_t>(label.size()));
    wire.insert(wire.end(), label.begin(), label.end());
  }
  wire.push_back(0);
  return wire;
}

QueryName name_of_labels(const std::vector<std::string>& labels) {
  const std::vector<std::uint8_t> wire = wire_of_labels(labels);
  const std::optional<QueryName> name = QueryName::from_wire(wire);
  EXPECT_TRUE(name.has_value()) << "test name is not a valid wire name";
  return name.value_or(QueryName{});
}

// "a.b.c" as three labels; "" is the root. No escapes: hostile labels go
// through name_of_labels.
QueryName name_of(std::string_view dotted) {
  std::vector<std::string> labels;
  while (!dotted.empty()) {
    const std::size_t dot = dotted.find('.');
    labels.emplace_back(dotted.substr(0, dot));
    if (dot == std::string_view::npos) break;
    dotted.remove_prefix(dot + 1);
  }
  return name_of_labels(labels);
}

Allowlist build_ok(const std::vector<std::string>& entries) {
  auto built = Allowlist::build(entries);
  if (const auto* error = std::get_if<AllowlistError>(&built)) {
    ADD_FAILURE() << "entry " << error->index << " \"" << error->entry
                  << "\" rejected: " << error->message;
    return Allowlist{};
  }
  return std::get<Allowlist>(std::move(built));
}

AllowlistError build_error(const std::vector<std::string>& entries) {
  auto built = Allowlist::build(entries);
  if (!std::holds_alternative<AllowlistError>(built)) {
    ADD_FAILURE() << "allowlist was accepted";
    return AllowlistError{};
  }
  return std::get<AllowlistError>(std::move(built));
}

std::string label_of(std::size_t octets, char fill = 'a') {
  return std::string(octets, fill);
}

TEST(Allowlist, LiteralMatchesOnlyTheExactName) {
  const Allowlist allowlist = build_ok({"api.example.com"});
  EXPECT_TRUE(allowlist.allows(name_of("api.example.com")));
  EXPECT_FALSE(allowlist.allows(name_of("example.com")));
  EXPECT_FALSE(allowlist.allows(name_of("www.api.example.com")));
  EXPECT_FALSE(allowlist.allows(name_of("api.example.org")));
  EXPECT_FALSE(allowlist.allows(name_of("api.example.co")));
  EXPECT_FALSE(allowlist.allows(name_of("api.example.comm")));
  EXPECT_FALSE(allowlist.allows(name_of("xapi.example.com")));
}

TEST(Allowlist, MatchingIgnoresAsciiCaseBothWays) {
  const Allowlist upper_entry = build_ok({"API.Example.COM", "*.Wild.ORG"});
  EXPECT_TRUE(upper_entry.allows(name_of("api.example.com")));
  EXPECT_TRUE(upper_entry.allows(name_of("a.wild.org")));

  const Allowlist lower_entry = build_ok({"api.example.com", "*.wild.org"});
  EXPECT_TRUE(lower_entry.allows(name_of("API.EXAMPLE.COM")));
  EXPECT_TRUE(lower_entry.allows(name_of("aPi.ExAmPlE.cOm")));
  EXPECT_TRUE(lower_entry.allows(name_of("X.WILD.ORG")));
}

TEST(Allowlist, OneTrailingDotOnAnEntryIsIgnored) {
  const Allowlist allowlist = build_ok({"example.com.", "*.example.org."});
  EXPECT_TRUE(allowlist.allows(name_of("example.com")));
  EXPECT_TRUE(allowlist.allows(name_of("www.example.org")));
  EXPECT_FALSE(allowlist.allows(name_of("example.org")));
}

TEST(Allowlist, UnderscoreAndHyphenAreHostnameBytes) {
  const Allowlist allowlist = build_ok({"_sip._tcp.example.com", "my-host.example.com"});
  EXPECT_TRUE(allowlist.allows(name_of("_sip._tcp.example.com")));
  EXPECT_TRUE(allowlist.allows(name_of("MY-HOST.example.com")));
}

TEST(Allowlist, WildcardMatchesOneOrMoreLabelsButNeverTheSuffix) {
  const Allowlist allowlist = build_ok({"*.example.com"});
  EXPECT_TRUE(allowlist.allows(name_of("www.example.com")));
  EXPECT_TRUE(allowlist.allows(name_of("a.b.example.com")));
  EXPECT_TRUE(allowlist.allows(name_of("a.b.c.d.e.example.com")));
  EXPECT_FALSE(allowlist.allows(name_of("example.com")));
  EXPECT_FALSE(allowlist.allows(name_of("com")));
  // A suffix of the text is not a suffix of the labels.
  EXPECT_FALSE(allowlist.allows(name_of("badexample.com")));
  EXPECT_FALSE(allowlist.allows(name_of("www.example.com.evil")));
  EXPECT_FALSE(allowlist.allows(name_of("www.example.org")));
}

TEST(Allowlist, WildcardAndLiteralForTheSameSuffixCoverBoth) {
  const Allowlist allowlist = build_ok({"example.com", "*.example.com"});
  EXPECT_TRUE(allowlist.allows(name_of("example.com")));
  EXPECT_TRUE(allowlist.allows(name_of("www.example.com")));
  EXPECT_FALSE(allowlist.allows(name_of("com")));
}

TEST(Allowlist, TopLevelWildcardMatchesEveryNameUnderItButNotTheTld) {
  const Allowlist allowlist = build_ok({"*.com"});
  EXPECT_TRUE(allowlist.allows(name_of("a.com")));
  EXPECT_TRUE(allowlist.allows(name_of("x.y.com")));
  EXPECT_FALSE(allowlist.allows(name_of("com")));
  EXPECT_FALSE(allowlist.allows(name_of("a.org")));
  EXPECT_FALSE(allowlist.allows(name_of("a.com.org")));
}

// The hostile names: label sequences that print like an allowed name, or
// that a wildcard would take if it looked only at the suffix.
TEST(Allowlist, LabelHoldingADotMatchesNothing) {
  const Allowlist allowlist =
      build_ok({"www.example.com", "example.com", "*.example.com", "*.com"});
  // One label "www.example" under "com": prints as www\.example.com.
  EXPECT_FALSE(allowlist.allows(name_of_labels({"www.example", "com"})));
  // "www" under one label "example.com".
  EXPECT_FALSE(allowlist.allows(name_of_labels({"www", "example.com"})));
  // A single label spelling the whole name.
  EXPECT_FALSE(allowlist.allows(name_of_labels({"www.example.com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"example.com"})));
  // The wildcard takes any front label, but not one holding a dot.
  EXPECT_FALSE(allowlist.allows(name_of_labels({"a.b", "example", "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({".", "example", "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"a", "b.", "example", "com"})));
  // Same names spelled with real labels are allowed: the test names are fine.
  EXPECT_TRUE(allowlist.allows(name_of_labels({"www", "example", "com"})));
  EXPECT_TRUE(allowlist.allows(name_of_labels({"a", "b", "example", "com"})));
}

TEST(Allowlist, LabelHoldingNulMatchesNothing) {
  const Allowlist allowlist = build_ok({"www.example.com", "*.example.com"});
  EXPECT_FALSE(allowlist.allows(name_of_labels({"www\0"s, "example", "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"\0www"s, "example", "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"\0"s, "example", "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"www", "example\0"s, "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"www", "example", "com\0"s})));
}

TEST(Allowlist, AsteriskInAQueryIsNotAWildcard) {
  const Allowlist allowlist = build_ok({"*.example.com", "a.example.org"});
  EXPECT_FALSE(allowlist.allows(name_of_labels({"*", "example", "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"*", "example", "org"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"a*", "example", "com"})));
  EXPECT_FALSE(allowlist.allows(name_of_labels({"www", "*", "example", "com"})));
}

TEST(Allowlist, NonHostnameBytesMatchNothing) {
  const Allowlist allowlist = build_ok({"*.example.com", "bücher.example"});
  for (const std::string& hostile : {"b\xC3\xBC"
                                     "cher"s,
                                     "\xC3"s, "caf\xE9"s, "\xFF"s, "\x80"s, "a b"s, "a\tb"s, "a/b"s,
                                     "a\\b"s, "a@b"s, "\x7F"s, "a+b"s, "a:b"s}) {
    EXPECT_FALSE(allowlist.allows(name_of_labels({hostile, "example", "com"})))
        << "front label " << QueryName::from_wire(wire_of_labels({hostile}))->to_string();
  }
  // The raw UTF-8 of a Unicode entry is not its A-label.
  EXPECT_FALSE(
      allowlist.allows(name_of_labels({"b\xC3\xBC"
                                       "cher"s,
                                       "example"})));
  EXPECT_TRUE(allowlist.allows(name_of("xn--bcher-kva.example")));
}

TEST(Allowlist, RootNeverMatches) {
  const Allowlist allowlist = build_ok({"*.com", "example.com"});
  EXPECT_FALSE(allowlist.allows(QueryName{}));
  EXPECT_FALSE(allowlist.allows(name_of("")));
}

TEST(Allowlist, EmptyAllowlistAllowsNothing) {
  const Allowlist built = build_ok({});
  const Allowlist default_constructed;
  for (const Allowlist* allowlist : {&built, &default_constructed}) {
    EXPECT_EQ(allowlist->literal_count(), 0u);
    EXPECT_EQ(allowlist->wildcard_count(), 0u);
    EXPECT_FALSE(allowlist->allows(name_of("example.com")));
    EXPECT_FALSE(allowlist->allows(name_of("com")));
    EXPECT_FALSE(allowlist->allows(QueryName{}));
  }
}

TEST(Allowlist, CountsDeduplicateEquivalentEntries) {
  const Allowlist allowlist = build_ok({"a.com", "A.COM.", "a.com", "*.b.com", "*.B.com.", "c.com",
                                        "bücher.example", "xn--bcher-kva.example", "*.com"});
  EXPECT_EQ(allowlist.literal_count(), 3u);   // a.com, c.com, xn--bcher-kva.example
  EXPECT_EQ(allowlist.wildcard_count(), 2u);  // *.b.com, *.com
}

struct BadEntryCase {
  std::string entry;
  std::string message_part;  // expected somewhere in the message
};

void PrintTo(const BadEntryCase& bad, std::ostream* out) {
  *out << ::testing::PrintToString(bad.entry);
}

class AllowlistBadEntry : public ::testing::TestWithParam<BadEntryCase> {};

TEST_P(AllowlistBadEntry, IsRejectedNamingItsIndexAndText) {
  const BadEntryCase& bad = GetParam();
  const AllowlistError error =
      build_error({"ok.example", "*.ok.example", bad.entry, "fine.example"});
  EXPECT_EQ(error.index, 2u);
  EXPECT_EQ(error.entry, bad.entry);
  EXPECT_NE(error.message.find(bad.message_part), std::string::npos) << error.message;
}

INSTANTIATE_TEST_SUITE_P(
    Forms, AllowlistBadEntry,
    ::testing::Values(BadEntryCase{"", "empty entry"}, BadEntryCase{"*", "bare '*'"},
                      BadEntryCase{"*.", "bare '*'"}, BadEntryCase{"*..", "no suffix"},
                      BadEntryCase{"a.*.com", "'*'"}, BadEntryCase{"*foo.com", "'*'"},
                      BadEntryCase{"foo*.com", "'*'"}, BadEntryCase{"**.a.com", "'*'"},
                      BadEntryCase{"*.*.a.com", "'*'"}, BadEntryCase{"a.com.*", "'*'"},
                      BadEntryCase{"a..com", "empty label"}, BadEntryCase{".a.com", "empty label"},
                      BadEntryCase{"a.com..", "empty label"},
                      BadEntryCase{"*..a.com", "empty label"}, BadEntryCase{".", "root"},
                      BadEntryCase{"a b.com", "0x20"}, BadEntryCase{" a.com", "0x20"},
                      BadEntryCase{"a.com ", "0x20"}, BadEntryCase{"a/b.com", "'/'"},
                      BadEntryCase{"a\\.b.com", "'\\'"}, BadEntryCase{"a\tb.com", "0x09"},
                      BadEntryCase{"a\0b.com"s, "0x00"}, BadEntryCase{"a@b.com", "'@'"}));

TEST(Allowlist, LabelOf63OctetsIsAcceptedAnd64Rejected) {
  const std::string label63 = label_of(63);
  const Allowlist allowlist = build_ok({label63 + ".example", "*." + label63 + ".example"});
  EXPECT_TRUE(allowlist.allows(name_of(label63 + ".example")));
  EXPECT_TRUE(allowlist.allows(name_of("x." + label63 + ".example")));

  const std::string label64 = label_of(64);
  for (const std::string& entry : {label64 + ".example", "a." + label64, "*." + label64 + ".com"}) {
    const AllowlistError error = build_error({"ok.example", entry});
    EXPECT_EQ(error.index, 1u);
    EXPECT_EQ(error.entry, entry);
    EXPECT_NE(error.message.find("64 octets"), std::string::npos) << error.message;
  }
}

// Three labels of 63 and one of `last` octets: 3 * 64 + (1 + last) + 1 wire
// octets, so last = 61 gives exactly 255.
std::string name_with_wire_octets(std::size_t wire_octets) {
  const std::size_t last = wire_octets - 3 * 64 - 2;
  return label_of(63, 'a') + "." + label_of(63, 'b') + "." + label_of(63, 'c') + "." +
         label_of(last, 'd');
}

TEST(Allowlist, NameOf255WireOctetsIsAcceptedAnd256Rejected) {
  const std::string longest = name_with_wire_octets(255);
  ASSERT_EQ(longest.size(), 253u);
  const Allowlist allowlist = build_ok({longest, longest + "."});
  EXPECT_EQ(allowlist.literal_count(), 1u);
  EXPECT_TRUE(allowlist.allows(name_of(longest)));

  const std::string too_long = name_with_wire_octets(256);
  const AllowlistError error = build_error({too_long});
  EXPECT_EQ(error.index, 0u);
  EXPECT_NE(error.message.find("256 octets"), std::string::npos) << error.message;
}

TEST(Allowlist, WildcardCountsTheShortestLabelItCanMatch) {
  // The suffix leaves room for exactly one octet of label in front.
  const std::string suffix = name_with_wire_octets(253);
  const Allowlist allowlist = build_ok({"*." + suffix});
  EXPECT_TRUE(allowlist.allows(name_of("x." + suffix)));
  EXPECT_FALSE(allowlist.allows(name_of(suffix)));

  const AllowlistError error = build_error({"*." + name_with_wire_octets(254)});
  EXPECT_NE(error.message.find("256 octets"), std::string::npos) << error.message;
}

TEST(Allowlist, UnicodeEntriesAreStoredAsALabels) {
  const Allowlist allowlist = build_ok({"bücher.example", "*.bücher.test", "BÜCHER.Upper"});
  EXPECT_TRUE(allowlist.allows(name_of("xn--bcher-kva.example")));
  EXPECT_TRUE(allowlist.allows(name_of("XN--BCHER-KVA.EXAMPLE")));
  EXPECT_TRUE(allowlist.allows(name_of("www.xn--bcher-kva.test")));
  EXPECT_TRUE(allowlist.allows(name_of("a.b.xn--bcher-kva.test")));
  EXPECT_FALSE(allowlist.allows(name_of("xn--bcher-kva.test")));
  EXPECT_TRUE(allowlist.allows(name_of("xn--bcher-kva.upper")));
  EXPECT_EQ(allowlist.literal_count(), 2u);
  EXPECT_EQ(allowlist.wildcard_count(), 1u);
}

TEST(Allowlist, UnicodeDecomposedInputIsNormalized) {
  // "bu" + COMBINING DIAERESIS is the same name as "bü".
  const Allowlist allowlist =
      build_ok({"bu\xCC\x88"
                "cher.example"});
  EXPECT_TRUE(allowlist.allows(name_of("xn--bcher-kva.example")));
}

TEST(Allowlist, UnicodeUsesNonTransitionalProcessing) {
  // IDNA 2008 keeps the sharp s; the transitional mapping to "fass" would
  // allow a different domain.
  const Allowlist allowlist = build_ok({"faß.de"});
  EXPECT_TRUE(allowlist.allows(name_of("xn--fa-hia.de")));
  EXPECT_FALSE(allowlist.allows(name_of("fass.de")));
}

TEST(Allowlist, UnicodeTrailingFullStopCountsAsTheTrailingDot) {
  // U+3002 IDEOGRAPHIC FULL STOP is a label separator in UTS #46.
  const Allowlist allowlist = build_ok({"bücher.example\xE3\x80\x82"});
  EXPECT_TRUE(allowlist.allows(name_of("xn--bcher-kva.example")));
}

TEST(Allowlist, InvalidUnicodeEntriesAreRejectedWithTheConverterMessage) {
  const std::vector<std::string> bad_entries = {
      "\xF0\x9F\x98\x80.com",  // an emoji: disallowed in IDNA 2008
      "-bücher.example",       // leading hyphen
      "a\xE2\x80\x8D.com",     // ZERO WIDTH JOINER outside its allowed context
      "\xFF\xFE.com",          // not UTF-8
  };
  for (const std::string& entry : bad_entries) {
    const AllowlistError error = build_error({"ok.example", entry});
    EXPECT_EQ(error.index, 1u);
    EXPECT_EQ(error.entry, entry);
    EXPECT_NE(error.message.find("A-label"), std::string::npos) << error.message;
  }
}

TEST(Allowlist, UnicodeThatConvertsToANonHostnameIsRejected) {
  // Conversion keeps the space and maps FULLWIDTH ASTERISK to `*`; neither
  // may reach the sets.
  for (const std::string& entry : {"a b.bücher"s, "\xEF\xBC\x8A.bücher.example"s,
                                   "a.\xEF\xBC\x8A.bücher.example"s, "a..bücher"s}) {
    const AllowlistError error = build_error({entry});
    EXPECT_EQ(error.index, 0u);
    EXPECT_EQ(error.entry, entry);
    EXPECT_NE(error.message.find("after IDN conversion"), std::string::npos) << error.message;
  }
}

TEST(Allowlist, HundredThousandEntriesBuildAndMatch) {
  constexpr int kEntries = 100'000;
  std::vector<std::string> entries;
  entries.reserve(kEntries);
  for (int i = 0; i < kEntries; ++i) {
    const std::string id = std::to_string(i);
    entries.push_back(i % 2 == 0 ? "host" + id + ".zone" + std::to_string(i % 97) + ".example"
                                 : "*.w" + id + ".example");
  }
  const Allowlist allowlist = build_ok(entries);
  EXPECT_EQ(allowlist.literal_count(), static_cast<std::size_t>(kEntries / 2));
  EXPECT_EQ(allowlist.wildcard_count(), static_cast<std::size_t>(kEntries / 2));

  for (int i = 0; i < kEntries; i += 997) {
    const std::string id = std::to_string(i);
    if (i % 2 == 0) {
      const std::string zone = ".zone" + std::to_string(i % 97) + ".example";
      EXPECT_TRUE(allowlist.allows(name_of("HOST" + id + zone))) << i;
      EXPECT_FALSE(allowlist.allows(name_of("a.host" + id + zone))) << i;
      EXPECT_FALSE(allowlist.allows(
          name_of("host" + id + ".zone" + std::to_string(i % 97 + 1) + ".example")))
          << i;
    } else {
      EXPECT_TRUE(allowlist.allows(name_of("a.w" + id + ".example"))) << i;
      EXPECT_TRUE(allowlist.allows(name_of("a.b.W" + id + ".example"))) << i;
      EXPECT_FALSE(allowlist.allows(name_of("w" + id + ".example"))) << i;
    }
  }
  EXPECT_FALSE(allowlist.allows(name_of("host1.zone1.example")));  // odd ids are wildcards
  EXPECT_FALSE(allowlist.allows(name_of("a.w0.example")));         // even ids are literals
  EXPECT_FALSE(allowlist.allows(name_of("example")));
}

}  // namespace
}  // namespace dnsgate
