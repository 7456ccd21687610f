#include "dnsgate/allowlist.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "dnsgate/name.hpp"
#include "policy/name_hash.hpp"

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

TEST(Allowlist, LiteralAndWildcardOfOneNameCountOnceEach) {
  const Allowlist allowlist =
      build_ok({"example.com", "*.example.com", "EXAMPLE.com.", "*.example.COM", "*.com"});
  EXPECT_EQ(allowlist.literal_count(), 1u);
  EXPECT_EQ(allowlist.wildcard_count(), 2u);
  EXPECT_TRUE(allowlist.allows(name_of("example.com")));
  EXPECT_TRUE(allowlist.allows(name_of("a.example.com")));
  EXPECT_FALSE(allowlist.allows(name_of("com")));

  const Allowlist wildcard_only = build_ok({"*.example.com", "other.com"});
  EXPECT_FALSE(wildcard_only.allows(name_of("example.com")));
  const Allowlist literal_only = build_ok({"example.com", "*.other.com"});
  EXPECT_FALSE(literal_only.allows(name_of("a.example.com")));
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

bool is_hostname_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// allows() screens query labels many octets at a time; every byte value, at
// every position of labels long enough to span several of those words, must
// get the answer a byte-by-byte check gives.
TEST(Allowlist, EveryByteValueAtEveryPositionIsScreenedAlike) {
  const Allowlist allowlist = build_ok({"*.example.com"});
  for (unsigned value = 0; value < 256; ++value) {
    const auto byte = static_cast<char>(value);
    for (std::size_t length = 1; length <= 40; ++length) {
      for (std::size_t position = 0; position < length; ++position) {
        std::string label(length, 'a');
        label[position] = byte;
        ASSERT_EQ(allowlist.allows(name_of_labels({label, "example", "com"})),
                  is_hostname_byte(static_cast<unsigned char>(value)))
            << "byte " << value << " at " << position << " of a " << length << "-octet label";
        // The same byte further in: every label is screened, not just the first.
        ASSERT_EQ(allowlist.allows(name_of_labels({"www", label, "example", "com"})),
                  is_hostname_byte(static_cast<unsigned char>(value)));
      }
    }
  }
}

TEST(Allowlist, CaseIsFoldedAtEveryPositionOfLongLabels) {
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_";
  std::vector<std::string> entries;
  std::vector<std::string> labels;
  for (std::size_t length = 1; length <= kMaxLabelOctets; ++length) {
    std::string label;
    for (std::size_t i = 0; i < length; ++i) label += alphabet[(i + length) % alphabet.size()];
    labels.push_back(label);
    entries.push_back(label + ".x" + std::to_string(length) + ".example");
  }
  const Allowlist allowlist = build_ok(entries);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    std::string upper = labels[i];
    for (char& c : upper) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    const std::string zone = ".X" + std::to_string(i + 1) + ".Example";
    EXPECT_TRUE(allowlist.allows(name_of(upper + zone))) << upper;
    std::string changed = labels[i];
    changed.back() = changed.back() == 'q' ? 'r' : 'q';
    EXPECT_FALSE(allowlist.allows(name_of(changed + zone))) << changed;
  }
}

// What allows_batch() answers must be what allows() answers, name by name,
// whatever the batch size and wherever a name sits in it.
void expect_batches_agree(const Allowlist& allowlist, const std::vector<QueryName>& names) {
  std::vector<char> expected;
  for (const QueryName& name : names) expected.push_back(allowlist.allows(name) ? 1 : 0);
  std::vector<const QueryName*> pointers;
  for (const QueryName& name : names) pointers.push_back(&name);
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{31},
                                 std::size_t{32}, std::size_t{33}, std::size_t{65}, names.size()}) {
    if (size > names.size()) continue;
    for (std::size_t first = 0; first + size <= names.size(); first += size == 0 ? 1 : size) {
      // One more answer than names: the last must be left as it is.
      const std::unique_ptr<bool[]> allowed(new bool[size + 1]);
      for (std::size_t i = 0; i <= size; ++i) allowed[i] = (i % 2) == 0;
      const bool past_the_end = allowed[size];
      allowlist.allows_batch(std::span(pointers).subspan(first, size),
                             std::span(allowed.get(), size + 1));
      for (std::size_t i = 0; i < size; ++i) {
        ASSERT_EQ(allowed[i], expected[first + i] != 0)
            << names[first + i].to_string() << " at " << i << " of a batch of " << size;
      }
      ASSERT_EQ(allowed[size], past_the_end);
      if (size == 0) break;
    }
  }
  // Fewer answers than names: only as many names are matched.
  if (names.size() >= 2) {
    std::array<bool, 1> one{!expected[0]};
    allowlist.allows_batch(pointers, one);
    EXPECT_EQ(one[0], expected[0] != 0);
  }
}

std::vector<QueryName> names_around(const std::vector<std::string>& dotted) {
  std::vector<QueryName> names;
  for (const std::string& name : dotted) {
    names.push_back(name_of(name));
    names.push_back(name_of("www." + name));
    names.push_back(name_of("a.b." + name));
    std::string upper = name;
    for (char& c : upper) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    names.push_back(name_of(upper));
    names.push_back(name_of("X." + upper));
    const std::size_t dot = name.find('.');
    if (dot != std::string::npos) names.push_back(name_of(name.substr(dot + 1)));
    names.push_back(name_of(name + ".evil"));
    // Hostile front labels over the same labels.
    std::vector<std::string> labels = {"www.x"};
    for (std::size_t start = 0; start <= name.size();) {
      const std::size_t end = std::min(name.find('.', start), name.size());
      labels.push_back(name.substr(start, end - start));
      start = end + 1;
    }
    names.push_back(name_of_labels(labels));
    labels.front() = "a*";
    names.push_back(name_of_labels(labels));
  }
  names.push_back(QueryName{});
  return names;
}

TEST(Allowlist, BatchesAgreeWithOneNameAtATime) {
  const std::vector<std::string> entries = {
      "example.com", "*.example.com",      "api.example.net", "*.svc.cluster.local",
      "*.com",       "_dmarc.example.org", "x-y.z",           "*.deep.a.b.c.d.e",
      "a.b.c.d.e"};
  const Allowlist allowlist = build_ok(entries);
  expect_batches_agree(
      allowlist, names_around({"example.com", "api.example.net", "example.net", "svc.cluster.local",
                               "pod.svc.cluster.local", "_dmarc.example.org", "x-y.z",
                               "deep.a.b.c.d.e", "a.b.c.d.e", "com", "org", "local"}));
  expect_batches_agree(Allowlist{}, names_around({"example.com", "com"}));
  expect_batches_agree(build_ok({}), names_around({"example.com"}));
}

// A name with more labels than any probe list a batch keeps per name: a
// wildcard at each of many label counts, probed for every suffix.
TEST(Allowlist, WildcardsAtManyLabelCountsWorkInBatches) {
  std::vector<std::string> entries;
  std::string suffix = "top";
  for (int depth = 1; depth <= 12; ++depth) {
    entries.push_back("*." + suffix);
    suffix = "l" + std::to_string(depth) + "." + suffix;
  }
  // A name under none of them, with 125 labels in 255 octets.
  std::string deep = "other";
  for (int i = 0; i < 124; ++i) deep = "a." + deep;
  const Allowlist allowlist = build_ok(entries);
  EXPECT_EQ(allowlist.wildcard_count(), 12u);
  EXPECT_TRUE(allowlist.allows(name_of("x.l11.l10.l9.l8.l7.l6.l5.l4.l3.l2.l1.top")));
  EXPECT_TRUE(allowlist.allows(name_of("x.top")));
  EXPECT_FALSE(allowlist.allows(name_of("top")));
  EXPECT_FALSE(allowlist.allows(name_of(deep)));
  EXPECT_FALSE(allowlist.allows(name_of("x.l11.l10.l9.l8.l7.l6.l5.l4.l3.l2.l1.top.other")));
  expect_batches_agree(allowlist,
                       names_around({"l11.l10.l9.l8.l7.l6.l5.l4.l3.l2.l1.top", "l5.l4.l3.l2.l1.top",
                                     "x.l2.l1.top", "top", "l1.top.other", deep.substr(20)}));
}

// The table keeps only some bits of a name's hash; two names that share
// them must still be told apart by their octets. The names are found here
// by brute force, with the hash and the bits the table keeps (tag: bits 34
// to 63; in a one-line table every name starts at the same slot).
std::uint64_t hash_of(const std::vector<std::string>& labels) {
  std::vector<std::uint8_t> wire = wire_of_labels(labels);
  wire.resize(wire.size() + name_hash::kPadding, 0);
  std::vector<std::size_t> starts;
  for (std::size_t at = 0; wire[at] != 0; at += 1 + wire[at]) starts.push_back(at);
  std::uint64_t hash = name_hash::kRoot;
  for (auto start = starts.rbegin(); start != starts.rend(); ++start) {
    hash = name_hash::extend(hash, wire.data() + *start);
  }
  return hash;
}

TEST(Allowlist, NamesSharingTheStoredHashBitsAreToldApart) {
  std::array<std::string, 2> same;  // two labels whose names under "example" share a tag
  std::unordered_map<std::uint64_t, int> first_with_tag;
  for (int i = 0; same[1].empty() && i < 1'000'000; ++i) {
    const auto [seen, added] =
        first_with_tag.emplace(hash_of({"c" + std::to_string(i), "example"}) >> 34, i);
    if (!added) same = {"c" + std::to_string(seen->second), "c" + std::to_string(i)};
  }
  ASSERT_FALSE(same[1].empty()) << "no two names sharing a tag found";
  ASSERT_EQ(hash_of({same[0], "example"}) >> 34, hash_of({same[1], "example"}) >> 34);

  // The one stored first sits where a probe for the other looks first.
  const Allowlist first_only = build_ok({same[0] + ".example"});
  const Allowlist both = build_ok({same[0] + ".example", same[1] + ".example"});
  const Allowlist wildcard = build_ok({"*." + same[0] + ".example", same[1] + ".example"});
  EXPECT_TRUE(first_only.allows(name_of(same[0] + ".example")));
  EXPECT_FALSE(first_only.allows(name_of(same[1] + ".example")));
  EXPECT_TRUE(both.allows(name_of(same[1] + ".example")));
  EXPECT_TRUE(wildcard.allows(name_of("x." + same[0] + ".example")));
  EXPECT_FALSE(wildcard.allows(name_of("x." + same[1] + ".example")));
  EXPECT_FALSE(wildcard.allows(name_of(same[0] + ".example")));
  EXPECT_TRUE(wildcard.allows(name_of(same[1] + ".example")));
  for (const Allowlist* allowlist : {&first_only, &both, &wildcard}) {
    expect_batches_agree(*allowlist, names_around({same[0] + ".example", same[1] + ".example"}));
  }
}

}  // namespace
}  // namespace dnsgate
