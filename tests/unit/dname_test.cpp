// Tests of the validator's domain names (src/dnssec/dname.cpp): canonical
// wire form, label arithmetic, RFC 4034 6.1 canonical order, presentation.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dname_literals.hpp"
#include "dnssec/dname.hpp"

namespace dnsgate::dnssec {
namespace {

using namespace std::string_literals;

using testing::N;
constexpr auto Raw = testing::WireAsSent;

const Dname kRoot(1, '\0');

TEST(Dname, FromTextMakesLowerCaseWireForm) {
  EXPECT_EQ(N("example.com."), "\7example\3com\0"s);
  EXPECT_EQ(N("Example.COM"), "\7example\3com\0"s);
  EXPECT_EQ(N("."), kRoot);
  EXPECT_EQ(N("a.b.c."), "\1a\1b\1c\0"s);
}

TEST(Dname, FromTextEscapes) {
  EXPECT_EQ(N("a\\.b.c."), "\3a.b\1c\0"s);
  EXPECT_EQ(N("\\065.c."), "\1a\1c\0"s);  // \065 is 'A', lower-cased
  EXPECT_EQ(N("\\000.c."), "\1\0\1c\0"s);
  EXPECT_EQ(N("\\200.c."), "\1\xc8\1c\0"s);
  EXPECT_EQ(N("\\\\.c."), "\1\\\1c\0"s);
  EXPECT_EQ(N("*.c."), "\1*\1c\0"s);
}

TEST(Dname, FromTextRejects) {
  EXPECT_FALSE(from_text("a..b."));
  EXPECT_FALSE(from_text(".a."));
  EXPECT_FALSE(from_text(".."));
  EXPECT_FALSE(from_text("a\\"));
  EXPECT_FALSE(from_text("a\\25"));
  EXPECT_FALSE(from_text("a\\2x5"));
  EXPECT_FALSE(from_text("\\256.c"));
  EXPECT_FALSE(from_text(std::string(64, 'a') + ".c."));
  EXPECT_TRUE(from_text(std::string(63, 'a') + ".c."));
  // 255 octets at most: 4 x 63-octet labels is 4 x 64 + 1 = 257.
  const std::string label(63, 'a');
  EXPECT_FALSE(from_text(label + "." + label + "." + label + "." + label + "."));
  const std::string longest = label + "." + label + "." + label + "." + std::string(61, 'a') + ".";
  ASSERT_TRUE(from_text(longest));
  EXPECT_EQ(from_text(longest)->size(), 255U);
  EXPECT_FALSE(from_text(label + "." + label + "." + label + "." + std::string(62, 'a') + "."));
}

TEST(Dname, ToTextRoundTrips) {
  EXPECT_EQ(to_text(kRoot), ".");
  EXPECT_EQ(to_text(""), ".");
  EXPECT_EQ(to_text(N("example.com")), "example.com.");
  EXPECT_EQ(to_text("\3a.b\1c\0"s), "a\\.b.c.");
  EXPECT_EQ(to_text("\1\0\1c\0"s), "\\000.c.");
  EXPECT_EQ(to_text("\1 \1c\0"s), "\\032.c.");
  EXPECT_EQ(to_text("\1\xc8\1c\0"s), "\\200.c.");
  EXPECT_EQ(to_text("\1\\\1c\0"s), "\\\\.c.");
  for (const std::string_view text : {"a\\.b.c.", "\\000.c.", "\\200.x.", "\\\\.c.", "*.w.x."}) {
    EXPECT_EQ(to_text(N(text)), text);
  }
  // A label that runs past the end is cut, not read beyond.
  EXPECT_EQ(to_text("\5ab"s), "ab.");
}

TEST(Dname, LowercaseWireNameOnlyTouchesLabelOctets) {
  std::string name = "\3AbC\2XY\0"s;
  lowercase_wire_name({reinterpret_cast<std::uint8_t*>(name.data()), name.size()});
  EXPECT_EQ(name, "\3abc\2xy\0"s);
  // Length octets 'A'..'Z' (65..90) are lengths, not letters.
  std::string long_label = "\x41"s + std::string(65, 'Q') + "\0"s;
  lowercase_wire_name({reinterpret_cast<std::uint8_t*>(long_label.data()), long_label.size()});
  EXPECT_EQ(long_label, "\x41"s + std::string(65, 'q') + "\0"s);
  // Truncated: no write past the end.
  std::string cut = "\5AB"s;
  lowercase_wire_name({reinterpret_cast<std::uint8_t*>(cut.data()), cut.size()});
  EXPECT_EQ(cut, "\5ab"s);
}

TEST(Dname, LabelArithmetic) {
  const Dname name = N("a.b.example.");
  EXPECT_EQ(label_count(kRoot), 0U);
  EXPECT_EQ(label_count(name), 3U);
  EXPECT_EQ(parent_of(name), N("b.example."));
  EXPECT_EQ(parent_of(N("example.")), kRoot);
  EXPECT_EQ(parent_of(kRoot), kRoot);
  EXPECT_EQ(strip_labels(name, 0), name);
  EXPECT_EQ(strip_labels(name, 2), N("example."));
  EXPECT_EQ(strip_labels(name, 3), kRoot);
  EXPECT_EQ(strip_labels(name, 9), kRoot);
  EXPECT_EQ(ancestor_with_labels(name, 1), N("example."));
  EXPECT_EQ(ancestor_with_labels(name, 0), kRoot);
  EXPECT_EQ(ancestor_with_labels(name, 3), name);
  EXPECT_EQ(ancestor_with_labels(name, 7), name);
  EXPECT_EQ(wildcard_of(N("example.")), N("*.example."));
  EXPECT_EQ(wildcard_of(kRoot), N("*."));
  // Malformed input: no read past the end.
  EXPECT_EQ(label_count("\5ab"s), 1U);
  EXPECT_EQ(parent_of("\5ab"s), "");
  EXPECT_EQ(parent_of(""), "");
}

TEST(Dname, IsAtOrBelowWholeLabels) {
  EXPECT_TRUE(is_at_or_below(N("a.example."), N("example.")));
  EXPECT_TRUE(is_at_or_below(N("example."), N("example.")));
  EXPECT_TRUE(is_at_or_below(N("example."), kRoot));
  EXPECT_TRUE(is_at_or_below(kRoot, kRoot));
  EXPECT_FALSE(is_at_or_below(N("example."), N("a.example.")));
  EXPECT_FALSE(is_at_or_below(N("aexample."), N("example.")));
  EXPECT_FALSE(is_at_or_below(N("ab.example."), N("b.example.")));
  EXPECT_FALSE(is_at_or_below(N("a.example.org."), N("example.")));
}

TEST(Dname, CanonicalOrderOfRfc4034Section61) {
  // RFC 4034 6.1's example, in order, with its mixed case.
  const std::vector<std::string> ordered = {
      Raw("example"),        Raw("a.example"),      Raw("yljkjljk.a.example"),
      Raw("Z.a.example"),    Raw("zABC.a.EXAMPLE"), Raw("z.example"),
      "\1\1\1z\7example\0"s, Raw("*.z.example"),    "\1\xc8\1z\7example\0"s,
  };
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    EXPECT_EQ(canonical_compare(ordered[i], ordered[i]), 0) << i;
    for (std::size_t j = i + 1; j < ordered.size(); ++j) {
      EXPECT_LT(canonical_compare(ordered[i], ordered[j]), 0) << i << " " << j;
      EXPECT_GT(canonical_compare(ordered[j], ordered[i]), 0) << i << " " << j;
    }
  }
}

TEST(Dname, CanonicalCompareIgnoresCaseAndOrdersByLabels) {
  EXPECT_EQ(canonical_compare(Raw("A.Example"), N("a.example.")), 0);
  EXPECT_LT(canonical_compare(kRoot, N("a.")), 0);
  EXPECT_LT(canonical_compare(N("example."), N("a.example.")), 0);
  // Right to left: b.a < a.b because "a" < "b" is compared first.
  EXPECT_LT(canonical_compare(N("b.a."), N("a.b.")), 0);
  // Octets compare unsigned, and a shorter label first.
  EXPECT_LT(canonical_compare(N("a.x."), N("\\200.x.")), 0);
  EXPECT_LT(canonical_compare(N("a.x."), N("aa.x.")), 0);
  // '[' (0x5B) sorts after 'Z' but, lower-cased, before 'z'.
  EXPECT_LT(canonical_compare(Raw("["), Raw("Z")), 0);
}

TEST(Dname, CanonicalCompareOfTheLongestNames) {
  // 127 one-octet labels: the most a 255-octet name holds.
  std::string a;
  std::string b;
  for (int i = 0; i < 127; ++i) {
    a += "\1a";
    b += i == 0 ? "\1b" : "\1a";
  }
  a.push_back('\0');
  b.push_back('\0');
  ASSERT_EQ(a.size(), 255U);
  EXPECT_LT(canonical_compare(a, b), 0);
  EXPECT_EQ(canonical_compare(a, a), 0);
  EXPECT_LT(canonical_compare(parent_of(a), a), 0);
}

}  // namespace
}  // namespace dnsgate::dnssec
