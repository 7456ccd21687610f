// Tests of QueryName: what from_wire accepts, presentation escaping,
// label counting and case-insensitive comparison.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dnsgate/name.hpp"
#include "wire_builder.hpp"

namespace dnsgate {
namespace {

using test::Bytes;
using test::Wire;

std::optional<QueryName> FromWire(const Bytes& wire) {
  return QueryName::from_wire(wire);
}

// Parses `wire`, which the test expects to be valid.
QueryName Must(const Bytes& wire) {
  const auto name = FromWire(wire);
  EXPECT_TRUE(name.has_value());
  return name.value_or(QueryName{});
}

QueryName Dotted(std::string_view dotted) {
  return Must(Wire().name(dotted).build());
}

std::string Text(const Bytes& wire) {
  const auto name = FromWire(wire);
  if (!name) return "<rejected>";
  return name->to_string();
}

// ------------------------------------------------------------------ from_wire

TEST(QueryNameFromWire, AcceptsRoot) {
  const auto name = FromWire({0x00});
  ASSERT_TRUE(name.has_value());
  EXPECT_TRUE(name->is_root());
  EXPECT_EQ(name->wire_length(), 1u);
  EXPECT_EQ(name->label_count(), 0u);
}

TEST(QueryNameFromWire, AcceptsAnOrdinaryName) {
  const Bytes wire = {0x03, 'w', 'w', 'w',  0x07, 'e', 'x', 'a', 'm',
                      'p',  'l', 'e', 0x03, 'c',  'o', 'm', 0x00};
  const auto name = FromWire(wire);
  ASSERT_TRUE(name.has_value());
  EXPECT_FALSE(name->is_root());
  EXPECT_EQ(name->wire_length(), 17u);
  const auto out = name->wire();
  EXPECT_EQ(Bytes(out.begin(), out.end()), wire);
}

TEST(QueryNameFromWire, AcceptsALabelOf63) {
  const Bytes wire = Wire().label(std::string(63, 'x')).u8(0).build();
  ASSERT_EQ(wire.size(), 65u);
  EXPECT_TRUE(FromWire(wire).has_value());
}

TEST(QueryNameFromWire, Accepts255Octets) {
  const std::string l63(63, 'a');
  const Bytes wire =
      Wire().label(l63).label(l63).label(l63).label(std::string(61, 'b')).u8(0).build();
  ASSERT_EQ(wire.size(), 255u);
  const auto name = FromWire(wire);
  ASSERT_TRUE(name.has_value());
  EXPECT_EQ(name->wire_length(), 255u);
  EXPECT_EQ(name->label_count(), 4u);
}

TEST(QueryNameFromWire, AcceptsAnyOctetInsideALabel) {
  // NUL, '.', 0xFF, 0xC0 inside labels are data, not structure.
  const Bytes wire = {0x04, 0x00, '.', 0xFF, 0xC0, 0x01, 0x40, 0x00};
  const auto name = FromWire(wire);
  ASSERT_TRUE(name.has_value());
  EXPECT_EQ(name->label_count(), 2u);
}

TEST(QueryNameFromWire, RejectsAnEmptySpan) {
  EXPECT_FALSE(FromWire({}).has_value());
}

TEST(QueryNameFromWire, RejectsAMissingRootLabel) {
  EXPECT_FALSE(FromWire({0x01, 'a'}).has_value());
  EXPECT_FALSE(FromWire({0x03, 'c', 'o', 'm'}).has_value());
}

TEST(QueryNameFromWire, RejectsALabelRunningPastTheEnd) {
  EXPECT_FALSE(FromWire({0x02, 'a', 0x00}).has_value());
  EXPECT_FALSE(FromWire({0x3F, 'a', 0x00}).has_value());
}

TEST(QueryNameFromWire, RejectsOctetsAfterTheRootLabel) {
  EXPECT_FALSE(FromWire({0x00, 0x00}).has_value());
  EXPECT_FALSE(FromWire({0x01, 'a', 0x00, 'x'}).has_value());
  EXPECT_FALSE(FromWire({0x01, 'a', 0x00, 0x01, 'b', 0x00}).has_value());
}

TEST(QueryNameFromWire, RejectsACompressionPointer) {
  EXPECT_FALSE(FromWire({0xC0, 0x0C}).has_value());
  EXPECT_FALSE(FromWire({0x01, 'a', 0xC0, 0x0C}).has_value());
  EXPECT_FALSE(FromWire({0x01, 'a', 0xC0, 0x00, 0x00}).has_value());
}

TEST(QueryNameFromWire, RejectsReservedLabelTypes) {
  EXPECT_FALSE(FromWire({0x41, 'a', 0x00}).has_value());
  EXPECT_FALSE(FromWire({0x81, 'a', 0x00}).has_value());
  EXPECT_FALSE(FromWire({0x01, 'a', 0x40, 0x00}).has_value());
}

TEST(QueryNameFromWire, RejectsALabelOf64) {
  // 64 = 0x40: not a length at all but a reserved label type.
  const Bytes wire = Wire().label(std::string(64, 'x')).u8(0).build();
  EXPECT_FALSE(FromWire(wire).has_value());
}

TEST(QueryNameFromWire, Rejects256Octets) {
  const std::string l63(63, 'a');
  const Bytes wire =
      Wire().label(l63).label(l63).label(l63).label(std::string(62, 'b')).u8(0).build();
  ASSERT_EQ(wire.size(), 256u);
  EXPECT_FALSE(FromWire(wire).has_value());
}

TEST(QueryNameFromWire, Rejects257OctetsOfShortLabels) {
  Wire w;
  for (int i = 0; i < 128; ++i) w.label("a");
  w.u8(0);
  ASSERT_EQ(w.size(), 257u);
  EXPECT_FALSE(FromWire(w.build()).has_value());
}

TEST(QueryNameFromWire, AcceptsAnEmptyLabelOnlyAsTheRoot) {
  // A zero length octet ends the name; anything after it is trailing.
  EXPECT_FALSE(FromWire({0x00, 0x01, 'a', 0x00}).has_value());
}

// ------------------------------------------------------------------ to_string

TEST(QueryNameToString, RootIsADot) {
  EXPECT_EQ(QueryName{}.to_string(), ".");
  EXPECT_EQ(Text({0x00}), ".");
}

TEST(QueryNameToString, DefaultIsTheRoot) {
  const QueryName root;
  EXPECT_TRUE(root.is_root());
  EXPECT_EQ(root.wire_length(), 1u);
  ASSERT_EQ(root.wire().size(), 1u);
  EXPECT_EQ(root.wire()[0], 0x00);
  EXPECT_EQ(root.label_count(), 0u);
}

TEST(QueryNameToString, NoTrailingDot) {
  EXPECT_EQ(Text({0x03, 'c', 'o', 'm', 0x00}), "com");
  EXPECT_EQ(Dotted("www.example.com").to_string(), "www.example.com");
}

TEST(QueryNameToString, MixedCaseIsKept) {
  EXPECT_EQ(Dotted("WwW.ExAmPlE.cOm").to_string(), "WwW.ExAmPlE.cOm");
  EXPECT_EQ(Dotted("ABC").to_string(), "ABC");
}

TEST(QueryNameToString, DotInsideALabel) {
  EXPECT_EQ(Text({0x03, 'a', '.', 'b', 0x00}), "a\\.b");
  EXPECT_EQ(Text({0x01, '.', 0x00}), "\\.");
}

TEST(QueryNameToString, Backslash) {
  EXPECT_EQ(Text({0x01, '\\', 0x00}), "\\\\");
  EXPECT_EQ(Text({0x03, 'a', '\\', 'b', 0x01, 'c', 0x00}), "a\\\\b.c");
}

TEST(QueryNameToString, NulIsDecimalEscaped) {
  EXPECT_EQ(Text({0x01, 0x00, 0x00}), "\\000");
  EXPECT_EQ(Text({0x03, 'a', 0x00, 'b', 0x00}), "a\\000b");
}

TEST(QueryNameToString, SpaceIsDecimalEscaped) {
  EXPECT_EQ(Text({0x03, 'a', ' ', 'b', 0x00}), "a\\032b");
}

TEST(QueryNameToString, HighOctetsAreDecimalEscaped) {
  EXPECT_EQ(Text({0x01, 0xFF, 0x00}), "\\255");
  EXPECT_EQ(Text({0x01, 0x80, 0x00}), "\\128");
  EXPECT_EQ(Text({0x02, 0xC3, 0xA9, 0x00}), "\\195\\169");  // UTF-8 for e-acute
}

TEST(QueryNameToString, ControlAndDelAreDecimalEscaped) {
  EXPECT_EQ(Text({0x01, 0x01, 0x00}), "\\001");
  EXPECT_EQ(Text({0x01, 0x09, 0x00}), "\\009");
  EXPECT_EQ(Text({0x01, 0x0A, 0x00}), "\\010");
  EXPECT_EQ(Text({0x01, 0x1F, 0x00}), "\\031");
  EXPECT_EQ(Text({0x01, 0x7F, 0x00}), "\\127");
}

TEST(QueryNameToString, PrintableEdgesAreNotEscaped) {
  EXPECT_EQ(Text({0x01, '!', 0x00}), "!");  // 0x21
  EXPECT_EQ(Text({0x01, '~', 0x00}), "~");  // 0x7E
  EXPECT_EQ(Text({0x05, '-', '_', '*', '/', '#', 0x00}), "-_*/#");
}

TEST(QueryNameToString, ZoneFileSpecialsAreEscaped) {
  EXPECT_EQ(Text({0x01, '"', 0x00}), "\\\"");
  EXPECT_EQ(Text({0x01, '(', 0x00}), "\\(");
  EXPECT_EQ(Text({0x01, ')', 0x00}), "\\)");
  EXPECT_EQ(Text({0x01, ';', 0x00}), "\\;");
  EXPECT_EQ(Text({0x01, '@', 0x00}), "\\@");
  EXPECT_EQ(Text({0x01, '$', 0x00}), "\\$");
}

TEST(QueryNameToString, EverythingTogether) {
  // "A.b\" + space, then "x;$", then root.
  const Bytes wire = {0x05, 'A', '.', 'b', '\\', ' ', 0x03, 'x', ';', '$', 0x00};
  EXPECT_EQ(Text(wire), "A\\.b\\\\\\032.x\\;\\$");
}

TEST(QueryNameToString, LabelThatLooksLikeTwoLabelsDiffersFromTwoLabels) {
  EXPECT_EQ(Text({0x03, 'a', '.', 'b', 0x00}), "a\\.b");
  EXPECT_EQ(Text({0x01, 'a', 0x01, 'b', 0x00}), "a.b");
}

TEST(QueryNameToString, AppendToAppends) {
  std::string out = "name=";
  Dotted("Example.COM").append_to(out);
  EXPECT_EQ(out, "name=Example.COM");
  std::string root = "[";
  QueryName{}.append_to(root);
  EXPECT_EQ(root, "[.");
}

TEST(QueryNameToString, LongestNameRoundTripsItsLength) {
  const std::string l63(63, 'a');
  const std::string dotted = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  EXPECT_EQ(Dotted(dotted).to_string(), dotted);
}

// ---------------------------------------------------------------- label_count

TEST(QueryNameLabelCount, Counts) {
  EXPECT_EQ(QueryName{}.label_count(), 0u);
  EXPECT_EQ(Dotted("com").label_count(), 1u);
  EXPECT_EQ(Dotted("example.com").label_count(), 2u);
  EXPECT_EQ(Dotted("www.example.com").label_count(), 3u);
  EXPECT_EQ(Must({0x03, 'a', '.', 'b', 0x00}).label_count(), 1u);
}

TEST(QueryNameLabelCount, MaximumNumberOfLabels) {
  // 127 labels "a" + root = 255 octets.
  Wire w;
  for (int i = 0; i < 127; ++i) w.label("a");
  w.u8(0);
  ASSERT_EQ(w.size(), 255u);
  EXPECT_EQ(Must(w.build()).label_count(), 127u);
}

// --------------------------------------------------------- equals_ignore_case

TEST(QueryNameEquals, CaseDifferencesAreEqual) {
  EXPECT_TRUE(Dotted("WWW.Example.COM").equals_ignore_case(Dotted("www.example.com")));
  EXPECT_TRUE(Dotted("www.example.com").equals_ignore_case(Dotted("WWW.EXAMPLE.COM")));
  EXPECT_TRUE(Dotted("AZ").equals_ignore_case(Dotted("az")));  // both ends of the alphabet
}

TEST(QueryNameEquals, IdenticalAndRoot) {
  EXPECT_TRUE(Dotted("example.com").equals_ignore_case(Dotted("example.com")));
  EXPECT_TRUE(QueryName{}.equals_ignore_case(Must({0x00})));
  EXPECT_FALSE(QueryName{}.equals_ignore_case(Dotted("com")));
  EXPECT_FALSE(Dotted("com").equals_ignore_case(QueryName{}));
}

TEST(QueryNameEquals, DifferentLengthsAreNotEqual) {
  EXPECT_FALSE(Dotted("example.com").equals_ignore_case(Dotted("example.co")));
  EXPECT_FALSE(Dotted("example.co").equals_ignore_case(Dotted("example.com")));
  EXPECT_FALSE(Dotted("www.example.com").equals_ignore_case(Dotted("example.com")));
}

TEST(QueryNameEquals, SameLengthDifferentOctetsAreNotEqual) {
  EXPECT_FALSE(Dotted("example.com").equals_ignore_case(Dotted("example.org")));
  EXPECT_FALSE(Dotted("a-b").equals_ignore_case(Dotted("a_b")));
}

TEST(QueryNameEquals, NonAsciiCaseIsNotFolded) {
  // 0xC3 and 0xE3 differ by 0x20 like 'C' and 'c', but are not ASCII letters.
  EXPECT_FALSE(Must({0x01, 0xC3, 0x00}).equals_ignore_case(Must({0x01, 0xE3, 0x00})));
  EXPECT_FALSE(Must({0x01, 0xE3, 0x00}).equals_ignore_case(Must({0x01, 0xC3, 0x00})));
}

TEST(QueryNameEquals, NonLetterAsciiPairsAreNotFolded) {
  // '@' (0x40) / '`' (0x60) and '[' (0x5B) / '{' (0x7B) differ by 0x20 only.
  EXPECT_FALSE(Must({0x01, '@', 0x00}).equals_ignore_case(Must({0x01, '`', 0x00})));
  EXPECT_FALSE(Must({0x01, '[', 0x00}).equals_ignore_case(Must({0x01, '{', 0x00})));
  EXPECT_FALSE(Must({0x01, 0x00, 0x00}).equals_ignore_case(Must({0x01, 0x20, 0x00})));
}

TEST(QueryNameEquals, LabelBoundariesMatter) {
  const QueryName one_label = Must({0x03, 'a', '.', 'b', 0x00});
  const QueryName two_labels = Must({0x01, 'a', 0x01, 'b', 0x00});
  EXPECT_FALSE(one_label.equals_ignore_case(two_labels));
  EXPECT_FALSE(two_labels.equals_ignore_case(one_label));
  // "ab.c" vs "a.bc": same letters, same length, different labels.
  EXPECT_FALSE(Dotted("ab.c").equals_ignore_case(Dotted("a.bc")));
}

TEST(QueryNameEquals, CopiesCompareEqual) {
  const QueryName a = Dotted("Mail.Example.Org");
  const QueryName b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_TRUE(b.equals_ignore_case(a));
  EXPECT_EQ(b.to_string(), "Mail.Example.Org");
}

}  // namespace
}  // namespace dnsgate
