// Tests of the trust anchor reader (src/dnssec/trust_anchor.cpp): DS and
// DNSKEY records in presentation form, as dnssec.trustAnchors and Debian's
// dns-root-data hold them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dnssec/crypto.hpp"
#include "dnssec/dname.hpp"
#include "dnssec/trust_anchor.hpp"
#include "dnssec_test_vectors.hpp"

namespace dnsgate::dnssec {
namespace {

constexpr std::string_view kRootDs =
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";

Dname N(std::string_view text) {
  const auto name = from_text(text);
  EXPECT_TRUE(name.has_value()) << text;
  return name.value_or(Dname(1, '\0'));
}

AnchorRecord Good(std::string_view text) {
  auto parsed = parse_anchor_record(text);
  EXPECT_TRUE(std::holds_alternative<AnchorRecord>(parsed))
      << text << ": " << std::get<std::string>(parsed);
  return std::holds_alternative<AnchorRecord>(parsed) ? std::get<AnchorRecord>(parsed)
                                                      : AnchorRecord{};
}

std::string Bad(std::string_view text) {
  auto parsed = parse_anchor_record(text);
  EXPECT_TRUE(std::holds_alternative<std::string>(parsed)) << text << " was accepted";
  return std::holds_alternative<std::string>(parsed) ? std::get<std::string>(parsed) : "";
}

std::string Hex(std::string_view octets) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const char c : octets) {
    out.push_back(kDigits[static_cast<unsigned char>(c) >> 4]);
    out.push_back(kDigits[static_cast<unsigned char>(c) & 0x0F]);
  }
  return out;
}

TEST(TrustAnchorTest, ParsesTheRootDs) {
  const AnchorRecord record = Good(kRootDs);
  EXPECT_EQ(record.zone, Dname(1, '\0'));
  EXPECT_EQ(record.type, 43);
  ASSERT_EQ(record.rdata.size(), 4U + 32U);
  EXPECT_EQ(static_cast<unsigned char>(record.rdata[0]), 20326 >> 8);
  EXPECT_EQ(static_cast<unsigned char>(record.rdata[1]), 20326 & 0xFF);
  EXPECT_EQ(record.rdata[2], 8);
  EXPECT_EQ(record.rdata[3], 2);
  EXPECT_EQ(Hex(record.rdata.substr(4)),
            "e06d44b80b8f1d39a95c0b0d7c65d08458e880409bbc683457104237c7f8ec8d");
}

TEST(TrustAnchorTest, TtlAndClassAreOptionalAndCaseDoesNotMatter) {
  const AnchorRecord full = Good("Example.COM. 3600 IN DS 1 13 2 " + std::string(64, 'A'));
  EXPECT_EQ(full.zone, N("example.com"));
  EXPECT_EQ(Good("example.com 86400 DS 1 13 2 " + std::string(64, 'a')).rdata, full.rdata);
  EXPECT_EQ(Good("example.com in ds 1 13 2 " + std::string(64, 'a')).rdata, full.rdata);
  EXPECT_EQ(Good("example.com. DS 1 13 2 " + std::string(64, 'a')).rdata, full.rdata);
  // The digest may be split by spaces, as dig prints it.
  EXPECT_EQ(
      Good("example.com. DS 1 13 2 " + std::string(32, 'a') + " " + std::string(32, 'a')).rdata,
      full.rdata);
}

TEST(TrustAnchorTest, ParsesADnskeyMatchingItsDs) {
  const AnchorRecord key = Good(vectors::kAnchorDnskey);
  EXPECT_EQ(key.zone, N("fuzz.test"));
  EXPECT_EQ(key.type, 48);
  ASSERT_GT(key.rdata.size(), 4U);
  EXPECT_EQ(static_cast<unsigned char>(key.rdata[0]), 1);  // flags 257
  EXPECT_EQ(static_cast<unsigned char>(key.rdata[1]), 1);
  EXPECT_EQ(key.rdata[2], 3);
  EXPECT_EQ(key.rdata[3], 13);
  EXPECT_EQ(key.rdata.size(), 4U + 64U);  // a P-256 public key
  const AnchorRecord ds = Good(vectors::kAnchorDs);
  const auto parsed = PublicKey::from_dnskey(key.zone, bytes_of(key.rdata));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_TRUE(parsed->matches_ds(bytes_of(ds.rdata)));
}

TEST(TrustAnchorTest, UnknownDigestTypesTakeAnyLength) {
  // SHA-1 (1) and unassigned types are read (the validator calls them
  // unsupported); only SHA-256 and SHA-384 have a length to check.
  EXPECT_EQ(Good("a. DS 1 8 1 " + std::string(40, '0')).rdata.size(), 4U + 20U);
  EXPECT_EQ(Good("a. DS 1 8 99 00ff").rdata.size(), 4U + 2U);
  EXPECT_EQ(Good("a. DS 1 8 4 " + std::string(96, 'f')).rdata.size(), 4U + 48U);
}

TEST(TrustAnchorTest, RefusesBadDs) {
  EXPECT_EQ(Bad("a. DS 1 8 2 " + std::string(63, 'a')), "DS digest is not hex");  // odd
  EXPECT_EQ(Bad("a. DS 1 8 2 " + std::string(62, 'a') + "zz"), "DS digest is not hex");
  EXPECT_EQ(Bad("a. DS 1 8 2 " + std::string(62, 'a')), "DS digest type 2 needs 32 octets, got 31");
  EXPECT_EQ(Bad("a. DS 1 8 4 " + std::string(64, 'a')), "DS digest type 4 needs 48 octets, got 32");
  EXPECT_NE(Bad("a. DS 1 8 2").find("KEYTAG ALGORITHM DIGESTTYPE DIGEST"), std::string::npos);
  EXPECT_FALSE(Bad("a. DS 65536 8 2 " + std::string(64, 'a')).empty());  // tag too big
  EXPECT_FALSE(Bad("a. DS 1 256 2 " + std::string(64, 'a')).empty());    // algorithm too big
  EXPECT_FALSE(Bad("a. DS 1 8 -2 " + std::string(64, 'a')).empty());
  EXPECT_FALSE(Bad("a. DS x 8 2 " + std::string(64, 'a')).empty());
}

TEST(TrustAnchorTest, RefusesBadDnskey) {
  EXPECT_EQ(Bad("a. DNSKEY 257 2 13 AwEAAQ=="), "DNSKEY protocol must be 3");
  EXPECT_EQ(Bad("a. DNSKEY 257 3 13 !!!!"), "DNSKEY public key is not base64");
  EXPECT_NE(Bad("a. DNSKEY 257 3 13").find("FLAGS PROTOCOL ALGORITHM PUBLICKEY"),
            std::string::npos);
  EXPECT_FALSE(Bad("a. DNSKEY 65536 3 13 AwEAAQ==").empty());
}

TEST(TrustAnchorTest, RefusesOtherTypesAndBadNames) {
  EXPECT_EQ(Bad("a. IN A 192.0.2.1"), "record type 'A' is not DS or DNSKEY");
  EXPECT_EQ(Bad("a. 3600 IN"), "missing record type (DS or DNSKEY)");
  EXPECT_EQ(Bad(""), "empty trust anchor");
  EXPECT_EQ(Bad("   \t "), "empty trust anchor");
  EXPECT_NE(Bad(std::string(64, 'x') + ". DS 1 8 2 " + std::string(64, 'a')).find("bad owner name"),
            std::string::npos);
  // The class, if given, is IN: CH is taken for the type.
  EXPECT_EQ(Bad("a. CH DS 1 8 2 " + std::string(64, 'a')), "record type 'CH' is not DS or DNSKEY");
}

TEST(TrustAnchorTest, GroupsRecordsByZone) {
  const std::vector<TrustAnchor> anchors = group_anchors({
      Good("b. DS 1 13 2 " + std::string(64, 'a')),
      Good(vectors::kAnchorDnskey),
      Good("B. DS 2 13 2 " + std::string(64, 'b')),
      Good(vectors::kAnchorDs),
  });
  ASSERT_EQ(anchors.size(), 2U);
  EXPECT_EQ(anchors[0].zone, N("b"));
  EXPECT_EQ(anchors[0].ds.size(), 2U);
  EXPECT_TRUE(anchors[0].dnskeys.empty());
  EXPECT_EQ(anchors[1].zone, N("fuzz.test"));
  EXPECT_EQ(anchors[1].ds.size(), 1U);
  EXPECT_EQ(anchors[1].dnskeys.size(), 1U);
}

class TrustAnchorFileTest : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove(path_); }
  std::string Write(std::string_view text) {
    std::ofstream(path_) << text;
    return path_;
  }
  std::string path_ = (std::filesystem::temp_directory_path() /
                       ("dnsgate-anchor-test-" + std::to_string(::getpid()) + ".ds"))
                          .string();
};

TEST_F(TrustAnchorFileTest, ReadsDsLinesSkippingCommentsAndBlanks) {
  const std::string path =
      Write("; the root\n\n" + std::string(kRootDs) + " ; KSK-2017\n   \n" +
            ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16\n");
  const auto records = read_anchor_file(path);
  ASSERT_TRUE(std::holds_alternative<std::vector<AnchorRecord>>(records))
      << std::get<std::string>(records);
  const auto& list = std::get<std::vector<AnchorRecord>>(records);
  ASSERT_EQ(list.size(), 2U);
  EXPECT_EQ(list[0].rdata, Good(kRootDs).rdata);
}

TEST_F(TrustAnchorFileTest, AnErrorNamesItsLine) {
  const std::string path = Write(std::string(kRootDs) + "\n; fine\n. IN DS 1 8 2 abc\n");
  const auto records = read_anchor_file(path);
  ASSERT_TRUE(std::holds_alternative<std::string>(records));
  EXPECT_EQ(std::get<std::string>(records), path + ":3: DS digest is not hex");
}

TEST_F(TrustAnchorFileTest, AnEmptyOrMissingFileIsAnError) {
  const std::string path = Write("; nothing\n\n");
  const auto empty = read_anchor_file(path);
  ASSERT_TRUE(std::holds_alternative<std::string>(empty));
  EXPECT_EQ(std::get<std::string>(empty), path + ": no trust anchor in it");
  const auto missing = read_anchor_file(path + ".missing");
  ASSERT_TRUE(std::holds_alternative<std::string>(missing));
  EXPECT_EQ(std::get<std::string>(missing), "cannot read " + path + ".missing");
}

TEST(TrustAnchorTest, DebiansRootAnchorFileReads) {
  if (!std::filesystem::exists(kRootAnchorFile)) GTEST_SKIP() << "no dns-root-data";
  const auto records = read_anchor_file(std::string(kRootAnchorFile));
  ASSERT_TRUE(std::holds_alternative<std::vector<AnchorRecord>>(records))
      << std::get<std::string>(records);
  for (const AnchorRecord& record : std::get<std::vector<AnchorRecord>>(records)) {
    EXPECT_EQ(record.zone, Dname(1, '\0'));
    EXPECT_EQ(record.type, 43);
  }
}

}  // namespace
}  // namespace dnsgate::dnssec
