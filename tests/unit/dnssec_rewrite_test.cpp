// Tests of the relayed answer of a validating proxy
// (src/dnssec/answer_rewrite.cpp, docs/dnssec.md "What the workload gets
// back"): the upstream's bytes for a DO client but the id, AD and CD; for
// a client without DO, no RRSIG/NSEC/NSEC3 it did not ask for and its OPT
// as it asked; EDE options added.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "dnssec/answer_rewrite.hpp"
#include "dnssec/message.hpp"
#include "dnssec_test_vectors.hpp"
#include "wire_builder.hpp"

namespace dnsgate::dnssec {
namespace {

using test::Bytes;
using test::Wire;

constexpr std::uint16_t kAd = 0x0020;
constexpr std::uint16_t kCd = 0x0010;

std::uint16_t U16(std::span<const std::uint8_t> bytes, std::size_t at) {
  return static_cast<std::uint16_t>(bytes[at] << 8 | bytes[at + 1]);
}

Message Read(std::span<const std::uint8_t> packet) {
  auto parsed = read_message(packet);
  EXPECT_TRUE(std::holds_alternative<Message>(parsed)) << "the shaped answer does not read back";
  return std::holds_alternative<Message>(parsed) ? std::get<Message>(std::move(parsed)) : Message{};
}

Bytes Shape(std::span<const std::uint8_t> packet, const RelayShape& shape) {
  Bytes out;
  EXPECT_TRUE(shape_answer(packet, shape, out));
  return out;
}

RelayShape Client(std::uint16_t id, bool opt, bool dnssec_ok, std::uint16_t ede = 0xFFFF) {
  RelayShape shape;
  shape.client_id = id;
  shape.client_opt = opt;
  shape.client_do = dnssec_ok;
  shape.ede = ede;
  return shape;
}

std::vector<std::uint16_t> Types(const Message& message, Section section) {
  std::vector<std::uint16_t> types;
  for (const Record& record : message.records) {
    if (record.section == section) types.push_back(record.type);
  }
  return types;
}

const Record* Opt(const Message& message) {
  for (const Record& record : message.records) {
    if (record.type == rrtype::kOpt) return &record;
  }
  return nullptr;
}

TEST(DnssecRewriteTest, DoClientGetsTheBytesAsTheyCameButIdAdAndCd) {
  Bytes packet = vectors::kWwwA;
  packet[3] |= kAd;  // the upstream's AD is never passed on
  RelayShape shape = Client(0x1111, true, true);
  shape.checking_disabled = true;
  const Bytes out = Shape(packet, shape);
  ASSERT_EQ(out.size(), packet.size());
  EXPECT_EQ(U16(out, 0), 0x1111);
  EXPECT_EQ(U16(out, 2), (U16(packet, 2) & ~kAd) | kCd);
  EXPECT_TRUE(std::equal(out.begin() + 4, out.end(), packet.begin() + 4));

  shape.authentic = true;
  shape.checking_disabled = false;
  packet[3] = static_cast<std::uint8_t>(packet[3] & ~kAd) | kCd;  // CD is the client's own
  const Bytes secure = Shape(packet, shape);
  EXPECT_EQ(U16(secure, 2), (U16(packet, 2) & ~kCd) | kAd);
  EXPECT_TRUE(std::equal(secure.begin() + 4, secure.end(), packet.begin() + 4));
}

TEST(DnssecRewriteTest, ClientWithoutOptLosesDnssecRecordsAndTheOpt) {
  const Message original = Read(vectors::kNxdomain);
  ASSERT_NE(Opt(original), nullptr);
  ASSERT_EQ(Types(original, Section::authority).size(), 6U);  // SOA NSEC NSEC + 3 RRSIGs

  const Bytes out = Shape(vectors::kNxdomain, Client(0x2222, false, false));
  const Message shaped = Read(out);
  EXPECT_EQ(shaped.id, 0x2222);
  EXPECT_EQ(shaped.qname, original.qname);
  EXPECT_EQ(shaped.qtype, original.qtype);
  EXPECT_EQ(shaped.rcode(), 3);
  EXPECT_TRUE(Types(shaped, Section::answer).empty());
  EXPECT_EQ(Types(shaped, Section::authority), std::vector<std::uint16_t>{rrtype::kSoa});
  EXPECT_TRUE(Types(shaped, Section::additional).empty());
  EXPECT_EQ(U16(out, 6), 0);
  EXPECT_EQ(U16(out, 8), 1);
  EXPECT_EQ(U16(out, 10), 0);
  // The SOA itself unchanged (canonical form compared).
  for (const Record& record : original.records) {
    if (record.type == rrtype::kSoa) {
      EXPECT_EQ(shaped.records[0].rdata, record.rdata);
      EXPECT_EQ(shaped.records[0].ttl, record.ttl);
    }
  }
}

TEST(DnssecRewriteTest, NonDoClientLosesNsec3AndRrsigsInEverySection) {
  const Bytes rrsig =
      Wire().u16(1).u8(8).u8(2).u32(60).u32(2).u32(1).u16(7).name("example").raw({1, 2, 3}).build();
  Wire wire;
  wire.header(7, 0x8180, 1, 2, 2, 2).question("a.example", 1);
  wire.pointer(12).rr_tail(1, 1, 60, {192, 0, 2, 1});
  wire.pointer(12).u16(rrtype::kRrsig).u16(1).u32(60).u16(static_cast<std::uint16_t>(rrsig.size()));
  wire.raw(rrsig);
  wire.name("example").rr_tail(rrtype::kNsec3, 1, 60, {1, 0, 0, 0, 0, 1, 0xAA, 0});
  wire.name("example").rr_tail(rrtype::kNs, 1, 60, {2, 'n', 's', 0});
  wire.name("ns.example").rr_tail(rrtype::kNsec, 1, 60, {0, 0, 1, 0x40});
  wire.opt(4096, 0x8000);
  const Message shaped = Read(Shape(wire.bytes(), Client(7, true, false)));
  EXPECT_EQ(Types(shaped, Section::answer), std::vector<std::uint16_t>{1});
  EXPECT_EQ(Types(shaped, Section::authority), std::vector<std::uint16_t>{rrtype::kNs});
  EXPECT_EQ(Types(shaped, Section::additional), std::vector<std::uint16_t>{rrtype::kOpt});
}

TEST(DnssecRewriteTest, ClientWithDoClearKeepsItsOptWithDoClear) {
  const Message original = Read(vectors::kNxdomain);
  const Record* upstream_opt = Opt(original);
  ASSERT_NE(upstream_opt, nullptr);
  ASSERT_NE(upstream_opt->ttl & 0x8000, 0U);
  const Message shaped = Read(Shape(vectors::kNxdomain, Client(3, true, false)));
  const Record* opt = Opt(shaped);
  ASSERT_NE(opt, nullptr);
  EXPECT_EQ(opt->ttl & 0x8000, 0U);
  EXPECT_EQ(opt->ttl & ~0x8000U, upstream_opt->ttl & ~0x8000U);  // ext-rcode, version kept
  EXPECT_EQ(opt->klass, upstream_opt->klass);                    // the payload size
  EXPECT_EQ(opt->rdata, upstream_opt->rdata);
  EXPECT_EQ(Types(shaped, Section::authority), std::vector<std::uint16_t>{rrtype::kSoa});
}

TEST(DnssecRewriteTest, AppendsTheEdeOption) {
  const Message original = Read(vectors::kWwwA);
  const Record* upstream_opt = Opt(original);
  ASSERT_NE(upstream_opt, nullptr);
  const std::string ede27("\x00\x0F\x00\x02\x00\x1B", 6);

  const Message plain = Read(Shape(vectors::kWwwA, Client(4, true, false, 27)));
  const Record* opt = Opt(plain);
  ASSERT_NE(opt, nullptr);
  EXPECT_EQ(opt->rdata, upstream_opt->rdata + ede27);
  EXPECT_EQ(Types(plain, Section::answer), std::vector<std::uint16_t>{rrtype::kA});

  // A DO client with an EDE: re-encoded, DNSSEC records kept, DO kept.
  const Message with_do = Read(Shape(vectors::kWwwA, Client(4, true, true, 1)));
  EXPECT_EQ(Types(with_do, Section::answer),
            (std::vector<std::uint16_t>{rrtype::kA, rrtype::kRrsig}));
  const Record* do_opt = Opt(with_do);
  ASSERT_NE(do_opt, nullptr);
  EXPECT_NE(do_opt->ttl & 0x8000, 0U);
  EXPECT_EQ(do_opt->rdata, upstream_opt->rdata + std::string("\x00\x0F\x00\x02\x00\x01", 6));

  // No OPT from the client: nowhere to put an EDE.
  const Message none = Read(Shape(vectors::kWwwA, Client(4, false, false, 27)));
  EXPECT_EQ(Opt(none), nullptr);
}

TEST(DnssecRewriteTest, QueryForNsecKeepsTheNsecButNotItsRrsig) {
  const Bytes rrsig = Wire()
                          .u16(rrtype::kNsec)
                          .u8(13)
                          .u8(2)
                          .u32(60)
                          .u32(2)
                          .u32(1)
                          .u16(7)
                          .name("example")
                          .raw({1, 2, 3})
                          .build();
  Wire wire;
  wire.header(9, 0x8180, 1, 2, 0, 0).question("a.example", rrtype::kNsec);
  wire.pointer(12).rr_tail(rrtype::kNsec, 1, 60,
                           {1, 'b', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0x40});
  wire.pointer(12).u16(rrtype::kRrsig).u16(1).u32(60).u16(static_cast<std::uint16_t>(rrsig.size()));
  wire.raw(rrsig);
  const Message shaped = Read(Shape(wire.bytes(), Client(9, false, false)));
  EXPECT_EQ(Types(shaped, Section::answer), std::vector<std::uint16_t>{rrtype::kNsec});

  // Asked for RRSIG: the RRSIG stays.
  Bytes rrsig_query = wire.build();
  rrsig_query[12 + 12] = rrtype::kRrsig;  // QTYPE's low octet, after "\1a\7example\0"
  const Message rrsigs = Read(Shape(rrsig_query, Client(9, false, false)));
  EXPECT_EQ(Types(rrsigs, Section::answer), std::vector<std::uint16_t>{rrtype::kRrsig});
}

TEST(DnssecRewriteTest, NamesComeOutUncompressedInTheirCaseButTheQuestionName) {
  Wire wire;
  wire.header(5, 0x8180, 1, 2, 0, 0).question("WWW.Example", 1);
  wire.pointer(12);
  const std::size_t cname_rdata = wire.size() + 10;
  wire.u16(rrtype::kCname).u16(1).u32(60).u16(8).label("Alias").pointer(16);
  wire.pointer(static_cast<std::uint16_t>(cname_rdata)).rr_tail(1, 1, 60, {10, 0, 2, 1});
  const Bytes packet = wire.build();
  const Bytes out = Shape(packet, Client(5, false, false));
  const Message shaped = Read(out);
  ASSERT_EQ(shaped.records.size(), 2U);
  // The first owner is the question's: a pointer to it.
  const std::size_t question_end = 12 + 13 + 4;
  EXPECT_EQ(out[question_end], 0xC0);
  EXPECT_EQ(out[question_end + 1], 12);
  // The CNAME's target written out in full, its case as sent.
  const std::string alias(
      "\x05"
      "Alias\x07"
      "Example",
      14);
  const std::string sent_case = alias + std::string(1, '\0');
  const std::string body(out.begin(), out.end());
  EXPECT_NE(body.find(sent_case), std::string::npos);
  // ... twice: as the CNAME's RDATA and as the A record's owner.
  EXPECT_NE(body.find(sent_case, body.find(sent_case) + 1), std::string::npos);
  EXPECT_EQ(body.find('\xC0', question_end + 2), std::string::npos);  // no other pointer
  EXPECT_EQ(shaped.records[1].owner, std::string("\x05"
                                                 "alias\x07"
                                                 "example",
                                                 14) +
                                         '\0');
}

TEST(DnssecRewriteTest, RefusesWhatCannotBeRead) {
  Bytes out;
  EXPECT_FALSE(shape_answer(Bytes(11, 0), Client(1, false, false), out));
  // A record cut short: a non-DO client's answer cannot be re-encoded.
  Bytes cut = vectors::kWwwA;
  cut.resize(cut.size() - 3);
  EXPECT_FALSE(shape_answer(cut, Client(1, false, false), out));
}

}  // namespace
}  // namespace dnsgate::dnssec
