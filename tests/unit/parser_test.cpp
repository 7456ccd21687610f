// Tests of the query parser and the response-question parser: good packets,
// every rejection reason with a minimal hostile packet, and a hostile-bytes
// sweep (meant to run under ASan/UBSan as well).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dnsgate/parser.hpp"
#include "wire_builder.hpp"

namespace dnsgate {
namespace {

using test::Bytes;
using test::Wire;

// The names the contract fixes, written out independently of the code so a
// failure message never depends on the code under test.
std::string_view ExpectedName(ParseError e) {
  switch (e) {
    case ParseError::too_short:
      return "too_short";
    case ParseError::response_bit_set:
      return "response_bit_set";
    case ParseError::bad_question_count:
      return "bad_question_count";
    case ParseError::truncated_question:
      return "truncated_question";
    case ParseError::bad_label_type:
      return "bad_label_type";
    case ParseError::pointer_into_header:
      return "pointer_into_header";
    case ParseError::pointer_not_backward:
      return "pointer_not_backward";
    case ParseError::name_too_long:
      return "name_too_long";
    case ParseError::truncated_record:
      return "truncated_record";
    case ParseError::bad_opt_record:
      return "bad_opt_record";
    case ParseError::trailing_data:
      return "trailing_data";
    case ParseError::not_a_response:
      return "not_a_response";
  }
  return "<out of range>";
}

template <class T>
::testing::AssertionResult IsError(const ParseResult<T>& r, ParseError want) {
  if (r.ok()) return ::testing::AssertionFailure() << "parsed OK, expected " << ExpectedName(want);
  if (r.error() != want) {
    return ::testing::AssertionFailure()
           << "got " << ExpectedName(r.error()) << ", expected " << ExpectedName(want);
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult QueryRejected(const Bytes& packet, ParseError want) {
  return IsError(parse_query(packet), want);
}

std::string NameOf(const Question& q) {
  return q.name.to_string();
}

// www.example.com A IN, id 0x1234, RD.
const Bytes kAQuery = {
    0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // header
    0x03, 'w',  'w',  'w',  0x07, 'e',  'x',  'a',  'm',  'p',  'l',  'e',   // www.example
    0x03, 'c',  'o',  'm',  0x00,                                            // com.
    0x00, 0x01, 0x00, 0x01,                                                  // A IN
};

// The same with ARCOUNT=1 and OPT: payload 4096, version 0, DO.
const Bytes kEdnsQuery = {
    0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // header
    0x03, 'w',  'w',  'w',  0x07, 'e',  'x',  'a',  'm',  'p',  'l',  'e',   //
    0x03, 'c',  'o',  'm',  0x00, 0x00, 0x01, 0x00, 0x01,                    // question
    0x00, 0x00, 0x29, 0x10, 0x00,                                            // . OPT 4096
    0x00, 0x00, 0x80, 0x00,                                                  // ttl: DO
    0x00, 0x00,                                                              // rdlen 0
};

// A header for one question with the given counts, then the question
// "example.com A IN" (offset 12, name 13 octets, question_end 29).
Wire QueryWith(std::uint16_t an, std::uint16_t ns, std::uint16_t ar, std::uint16_t flags = 0x0100) {
  Wire w;
  w.header(0xABCD, flags, 1, an, ns, ar).question("example.com");
  return w;
}

Bytes Header(std::uint16_t flags, std::uint16_t qd, std::uint16_t an = 0, std::uint16_t ns = 0,
             std::uint16_t ar = 0) {
  return Wire().header(0x0102, flags, qd, an, ns, ar).build();
}

// ---------------------------------------------------------------- good queries

TEST(ParseQuery, PlainAQuery) {
  const auto r = parse_query(kAQuery);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  const ParsedQuery& q = r.value();
  EXPECT_EQ(q.header.id, 0x1234);
  EXPECT_EQ(q.header.flags, 0x0100);
  EXPECT_EQ(q.header.qdcount, 1);
  EXPECT_EQ(q.header.ancount, 0);
  EXPECT_EQ(q.header.nscount, 0);
  EXPECT_EQ(q.header.arcount, 0);
  EXPECT_FALSE(q.header.qr());
  EXPECT_EQ(q.header.opcode(), 0);
  EXPECT_EQ(NameOf(q.question), "www.example.com");
  EXPECT_EQ(q.question.name.label_count(), 3u);
  EXPECT_EQ(q.question.qtype, 1);
  EXPECT_EQ(q.question.qclass, 1);
  EXPECT_EQ(q.question_end, 33u);
  EXPECT_FALSE(q.edns.present);
  EXPECT_TRUE(q.has_question);
  EXPECT_FALSE(q.header_only);
}

TEST(ParseQuery, QuestionNameWireIsTheQueryBytes) {
  const auto r = parse_query(kAQuery);
  ASSERT_TRUE(r.ok());
  const auto wire = r.value().question.name.wire();
  const Bytes expected(kAQuery.begin() + 12, kAQuery.begin() + 29);
  EXPECT_EQ(Bytes(wire.begin(), wire.end()), expected);
}

TEST(ParseQuery, EdnsWithDoAndPayload4096) {
  const auto r = parse_query(kEdnsQuery);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  const ParsedQuery& q = r.value();
  EXPECT_TRUE(q.edns.present);
  EXPECT_EQ(q.edns.udp_payload_size, 4096);
  EXPECT_EQ(q.edns.version, 0);
  EXPECT_TRUE(q.edns.dnssec_ok);
  EXPECT_EQ(q.header.arcount, 1);
  // The question ends before the OPT record.
  EXPECT_EQ(q.question_end, 33u);
  EXPECT_EQ(NameOf(q.question), "www.example.com");
}

TEST(ParseQuery, EdnsVersionAndDoComeFromTheRightTtlBits) {
  // ext-rcode 0xAB, version 1, flags 0x7FFF (every bit but DO).
  const Bytes p = QueryWith(0, 0, 1).opt(512, 0xAB017FFF).build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_TRUE(r.value().edns.present);
  EXPECT_EQ(r.value().edns.udp_payload_size, 512);
  EXPECT_EQ(r.value().edns.version, 1);
  EXPECT_FALSE(r.value().edns.dnssec_ok);
}

TEST(ParseQuery, EdnsDoAloneAndZeroPayload) {
  const Bytes p = QueryWith(0, 0, 1).opt(0, 0x00008000).build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_TRUE(r.value().edns.present);
  EXPECT_EQ(r.value().edns.udp_payload_size, 0);
  EXPECT_EQ(r.value().edns.version, 0);
  EXPECT_TRUE(r.value().edns.dnssec_ok);
}

TEST(ParseQuery, EdnsWithOptionsInRdata) {
  // COOKIE option (code 10) with an 8-octet client cookie.
  const Bytes p =
      QueryWith(0, 0, 1).opt(1232, 0, {0x00, 0x0A, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}).build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_TRUE(r.value().edns.present);
  EXPECT_EQ(r.value().edns.udp_payload_size, 1232);
  EXPECT_EQ(r.value().question_end, 29u);
}

TEST(ParseQuery, IdZeroIsLegal) {
  Bytes p = kAQuery;
  p[0] = 0;
  p[1] = 0;
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.id, 0);
}

TEST(ParseQuery, CaseIsKeptInTheParsedName) {
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question("WwW.ExAmPlE.CoM").build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(NameOf(r.value().question), "WwW.ExAmPlE.CoM");
}

TEST(ParseQuery, RootQuestion) {
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question(".", 2, 1).build();  // . NS IN
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_TRUE(r.value().question.name.is_root());
  EXPECT_EQ(NameOf(r.value().question), ".");
  EXPECT_EQ(r.value().question.qtype, 2);
  EXPECT_EQ(r.value().question_end, 17u);
}

TEST(ParseQuery, QtypeAndQclassAreBigEndian) {
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question("a", 0xFF00, 0x00FE).build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().question.qtype, 0xFF00);
  EXPECT_EQ(r.value().question.qclass, 0x00FE);
}

TEST(ParseQuery, OpcodeNotifyParses) {
  // NOTIFY (opcode 4) with AA, example.com SOA IN: opcode is not the parser's business.
  const Bytes p = Wire().header(7, 0x2400, 1, 0, 0, 0).question("example.com", 6, 1).build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.opcode(), 4);
  EXPECT_EQ(r.value().question.qtype, 6);
}

TEST(ParseQuery, EveryOpcodeParses) {
  for (std::uint16_t opcode = 0; opcode < 16; ++opcode) {
    const auto flags = static_cast<std::uint16_t>(opcode << 11);
    const Bytes p = Wire().header(7, flags, 1, 0, 0, 0).question("example.com").build();
    const auto r = parse_query(p);
    ASSERT_TRUE(r.ok()) << "opcode " << opcode;
    EXPECT_EQ(r.value().header.opcode(), opcode);
  }
}

// ------------------------------------------------- opcodes other than QUERY

TEST(ParseQuery, OtherOpcodeWithoutQuestionIsAccepted) {
  // `dig +noedns +norec +header-only +opcode=15`: the header alone.
  const auto r = parse_query(Header(0x7800, 0));
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.opcode(), 15);
  EXPECT_FALSE(r.value().has_question);
  EXPECT_FALSE(r.value().header_only);
  EXPECT_EQ(r.value().question_end, 12u);
  EXPECT_FALSE(r.value().edns.present);
}

TEST(ParseQuery, OtherOpcodeWithoutQuestionKeepsItsOpt) {
  Wire w;
  w.header(1, 0x7800, 0, 0, 0, 1).opt(4096, 0x00018000);
  const auto r = parse_query(w.build());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_FALSE(r.value().has_question);
  EXPECT_FALSE(r.value().header_only);
  EXPECT_TRUE(r.value().edns.present);
  EXPECT_EQ(r.value().edns.version, 1);
  EXPECT_TRUE(r.value().edns.dnssec_ok);
  EXPECT_EQ(r.value().edns.udp_payload_size, 4096);
}

TEST(ParseQuery, OtherOpcodeWithOneQuestionAndOpt) {
  Wire w;
  w.header(1, 0x2400, 1, 0, 0, 1).question("Example.com", 6, 1).opt(1232, 0);
  const auto r = parse_query(w.build());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_TRUE(r.value().has_question);
  EXPECT_FALSE(r.value().header_only);
  EXPECT_EQ(NameOf(r.value().question), "Example.com");
  EXPECT_EQ(r.value().question_end, 29u);
  EXPECT_TRUE(r.value().edns.present);
}

// RFC 8906 3.1.4: for an unknown opcode nothing but the header need match.
::testing::AssertionResult HeaderOnly(const Bytes& packet) {
  const auto r = parse_query(packet);
  if (!r.ok()) return ::testing::AssertionFailure() << "rejected: " << ExpectedName(r.error());
  const ParsedQuery& q = r.value();
  if (!q.header_only) return ::testing::AssertionFailure() << "not header_only";
  if (q.has_question || q.question_end != 12 || q.edns.present) {
    return ::testing::AssertionFailure() << "a header_only result carries something of the body";
  }
  return ::testing::AssertionSuccess();
}

TEST(ParseQuery, OtherOpcodeNotLaidOutAsAQueryIsHeaderOnly) {
  Wire two;
  two.header(1, 0x7800, 2, 0, 0, 0).question("a.example").question("b.example");
  EXPECT_TRUE(HeaderOnly(two.build()));
  Bytes many = kAQuery;
  many[2] = 0x78;
  many[4] = many[5] = 0xFF;  // QDCOUNT 65535
  EXPECT_TRUE(HeaderOnly(many));
  // DSO (RFC 8490): all counts 0, then TLVs.
  EXPECT_TRUE(HeaderOnly(Wire().header(1, 0x3000, 0, 0, 0, 0).raw({0, 1, 0, 0}).build()));
  // A question, then one octet too many.
  Bytes trailing = kAQuery;
  trailing[2] = 0x79;
  trailing.push_back(0);
  EXPECT_TRUE(HeaderOnly(trailing));
  // A question with a bad label, one cut short, a record announced and absent.
  EXPECT_TRUE(HeaderOnly(Wire().header(1, 0x7800, 1, 0, 0, 0).raw({0x41, 'a', 0}).build()));
  EXPECT_TRUE(HeaderOnly(Header(0x7800, 1)));
  EXPECT_TRUE(HeaderOnly(Header(0x7800, 0, 1)));
  // Two OPTs: neither is believed.
  Wire opts;
  opts.header(1, 0x7800, 1, 0, 0, 2).question("example.com").opt(1232, 0x8000).opt(1232, 0x8000);
  EXPECT_TRUE(HeaderOnly(opts.build()));
}

TEST(ParseQuery, OtherOpcodeStillNeedsAWholeHeaderAndQrClear) {
  EXPECT_TRUE(QueryRejected(Bytes(11, 0x78), ParseError::too_short));
  EXPECT_TRUE(QueryRejected(Header(0xF800, 0), ParseError::response_bit_set));
  EXPECT_TRUE(QueryRejected(Header(0xA400, 1), ParseError::response_bit_set));
}

TEST(ParseQuery, EveryOtherOpcodeWithoutQuestionIsAccepted) {
  for (std::uint16_t opcode = 1; opcode < 16; ++opcode) {
    const auto r = parse_query(Header(static_cast<std::uint16_t>(opcode << 11), 0));
    ASSERT_TRUE(r.ok()) << "opcode " << opcode;
    EXPECT_FALSE(r.value().has_question);
  }
}

TEST(ParseQuery, AllHeaderFlagsButQrAreAccepted) {
  Bytes p = kAQuery;
  p[2] = 0x7F;  // opcode 15, AA, TC, RD
  p[3] = 0xFF;  // RA, Z, AD, CD, rcode 15
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.flags, 0x7FFF);
}

TEST(ParseQuery, Label63IsAccepted) {
  const std::string l63(63, 'x');
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question(l63 + ".com").build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(NameOf(r.value().question), l63 + ".com");
  EXPECT_EQ(r.value().question_end, 12u + 64 + 4 + 1 + 4);
}

// 3 labels of 63 (3 * 64) + 1 label of 61 (62) + root (1) = 255 octets.
std::string Name255() {
  const std::string l63(63, 'a');
  return l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
}

TEST(ParseQuery, Name255OctetsIsAccepted) {
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question(Name255()).build();
  ASSERT_EQ(p.size(), 12u + 255 + 4);
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().question.name.wire_length(), 255u);
  EXPECT_EQ(r.value().question_end, 12u + 255 + 4);
}

TEST(ParseQuery, ManySingleOctetLabelsUpTo255AreAccepted) {
  // 127 labels "a" = 254 octets + root = 255.
  std::string dotted;
  for (int i = 0; i < 127; ++i) dotted += i == 0 ? "a" : ".a";
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question(dotted).build();
  const auto r = parse_query(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().question.name.label_count(), 127u);
}

TEST(ParseQuery, RecordsInAnswerAndAuthorityAreParsedAndAccepted) {
  Wire w = QueryWith(1, 1, 0);
  w.name("example.com").rr_tail(1, 1, 300, {192, 0, 2, 1});
  w.name("example.com").rr_tail(2, 1, 300, {0x02, 'n', 's', 0xC0, 0x0C});
  const auto r = parse_query(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.ancount, 1);
  EXPECT_EQ(r.value().header.nscount, 1);
  EXPECT_FALSE(r.value().edns.present);
  EXPECT_EQ(r.value().question_end, 29u);
}

TEST(ParseQuery, RecordOwnerCompressedToTheQuestionNameIsAccepted) {
  Wire w = QueryWith(0, 0, 1);
  w.pointer(12).rr_tail(1, 1, 60, {192, 0, 2, 1});
  const auto r = parse_query(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(NameOf(r.value().question), "example.com");
}

TEST(ParseQuery, RecordOwnerLabelThenPointerToASuffixIsAccepted) {
  Wire w = QueryWith(0, 0, 1);
  w.label("www").pointer(20).rr_tail(1, 1, 60, {192, 0, 2, 1});  // offset 20 = "com"
  const auto r = parse_query(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
}

TEST(ParseQuery, ChainOfBackwardPointersIsAccepted) {
  Wire w = QueryWith(0, 0, 2);
  const auto first = static_cast<std::uint16_t>(w.size());  // 29
  w.label("foo").pointer(12).rr_tail(1, 1, 60, {192, 0, 2, 1});
  w.pointer(first).rr_tail(1, 1, 60, {192, 0, 2, 2});  // -> foo -> example.com
  const auto r = parse_query(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
}

TEST(ParseQuery, EdnsTogetherWithOtherAdditionalRecords) {
  Wire w = QueryWith(0, 0, 2);
  w.pointer(12).rr_tail(16, 1, 0, {0x01, 'x'});  // TXT
  w.opt(1400, 0x00008000);
  const auto r = parse_query(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_TRUE(r.value().edns.present);
  EXPECT_EQ(r.value().edns.udp_payload_size, 1400);
  EXPECT_TRUE(r.value().edns.dnssec_ok);
}

// ---------------------------------------------------------- header rejections

TEST(ParseQueryRejects, EmptyPacket) {
  EXPECT_TRUE(QueryRejected({}, ParseError::too_short));
}

TEST(ParseQueryRejects, OneOctet) {
  EXPECT_TRUE(QueryRejected({0x12}, ParseError::too_short));
}

TEST(ParseQueryRejects, ElevenOctets) {
  const Bytes p(kAQuery.begin(), kAQuery.begin() + 11);
  EXPECT_TRUE(QueryRejected(p, ParseError::too_short));
}

TEST(ParseQueryRejects, ElevenOctetsWithQrSetIsStillTooShort) {
  const Bytes p = {0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_TRUE(QueryRejected(p, ParseError::too_short));
}

TEST(ParseQueryRejects, HeaderOnlyWithOneQuestionIsTruncatedQuestion) {
  EXPECT_TRUE(QueryRejected(Header(0x0100, 1), ParseError::truncated_question));
}

TEST(ParseQueryRejects, QdcountZero) {
  EXPECT_TRUE(QueryRejected(Header(0x0100, 0), ParseError::bad_question_count));
}

TEST(ParseQueryRejects, QdcountZeroWithAnOptIsStillAQueryWithoutQuestion) {
  // RFC 7873 5.4's server-cookie query: dnsgate is no cookie server (DESIGN 1).
  Wire w;
  w.header(1, 0x0000, 0, 0, 0, 1).opt(1232, 0, {0x00, 0x0A, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::bad_question_count));
}

TEST(ParseQueryRejects, QdcountTwo) {
  Wire w;
  w.header(1, 0, 2, 0, 0, 0).question("a.example").question("b.example");
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::bad_question_count));
}

TEST(ParseQueryRejects, Qdcount65535) {
  Bytes p = kAQuery;
  p[4] = 0xFF;
  p[5] = 0xFF;
  EXPECT_TRUE(QueryRejected(p, ParseError::bad_question_count));
}

TEST(ParseQueryRejects, QrSet) {
  Bytes p = kAQuery;
  p[2] |= 0x80;
  EXPECT_TRUE(QueryRejected(p, ParseError::response_bit_set));
}

TEST(ParseQueryRejects, QrIsCheckedBeforeQdcount) {
  EXPECT_TRUE(QueryRejected(Header(0x8000, 0), ParseError::response_bit_set));
}

TEST(ParseQueryRejects, QdcountIsCheckedBeforeTheQuestion) {
  // QDCOUNT 2 and a question name with a reserved label type.
  Bytes p = Header(0, 2);
  p.insert(p.end(), {0x41, 'a', 0x00, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::bad_question_count));
}

// ------------------------------------------------------- question rejections

TEST(ParseQueryRejects, PointerToItselfInQuestion) {
  // Offset 12: C0 0C.
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::pointer_not_backward));
}

TEST(ParseQueryRejects, PointerToOffsetZeroInQuestion) {
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0xC0, 0x00, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::pointer_into_header));
}

TEST(ParseQueryRejects, PointerToOffsetElevenInQuestion) {
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0x01, 'a', 0xC0, 0x0B, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::pointer_into_header));
}

TEST(ParseQueryRejects, ForwardPointerInQuestion) {
  // "a" then a pointer to offset 20, where a valid "b." sits after QTYPE/QCLASS.
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0x01, 'a', 0xC0, 0x14, 0x00, 0x01, 0x00, 0x01, 0x01, 'b', 0x00});
  EXPECT_TRUE(QueryRejected(p, ParseError::pointer_not_backward));
}

TEST(ParseQueryRejects, BackwardPointerInQuestionIsStillAnError) {
  // "abc" then a pointer back to offset 12: backward, but the question must
  // be uncompressed.
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0x03, 'a', 'b', 'c', 0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::pointer_not_backward));
}

TEST(ParseQueryRejects, LabelType0x40InQuestion) {
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0x41, 'a', 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00});
  EXPECT_TRUE(QueryRejected(p, ParseError::bad_label_type));
}

TEST(ParseQueryRejects, LabelType0x80InQuestion) {
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0x81, 'a', 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00});
  EXPECT_TRUE(QueryRejected(p, ParseError::bad_label_type));
}

TEST(ParseQueryRejects, LabelType0x40AfterAGoodLabel) {
  Bytes p = Header(0, 1);
  p.insert(p.end(), {0x03, 'w', 'w', 'w', 0x7F, 'x', 0x00, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::bad_label_type));
}

TEST(ParseQueryRejects, LabelLength64IsALabelType0x40) {
  const std::string l64(64, 'x');
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question(l64 + ".com").build();
  EXPECT_TRUE(QueryRejected(p, ParseError::bad_label_type));
}

TEST(ParseQueryRejects, Name256Octets) {
  // 3 * 64 + 63 (label of 62) + root = 256.
  const std::string l63(63, 'a');
  const std::string dotted = l63 + "." + l63 + "." + l63 + "." + std::string(62, 'b');
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question(dotted).build();
  ASSERT_EQ(p.size(), 12u + 256 + 4);
  EXPECT_TRUE(QueryRejected(p, ParseError::name_too_long));
}

TEST(ParseQueryRejects, NameOfManyShortLabelsOver255Octets) {
  // 128 labels "a" = 256 octets + root = 257.
  std::string dotted;
  for (int i = 0; i < 128; ++i) dotted += i == 0 ? "a" : ".a";
  const Bytes p = Wire().header(1, 0, 1, 0, 0, 0).question(dotted).build();
  EXPECT_TRUE(QueryRejected(p, ParseError::name_too_long));
}

TEST(ParseQueryRejects, PacketEndsInsideAQuestionLabel) {
  const Bytes p(kAQuery.begin(), kAQuery.begin() + 18);  // "\3www\7e"
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_question));
}

TEST(ParseQueryRejects, PacketEndsBeforeTheRootLabel) {
  const Bytes p(kAQuery.begin(), kAQuery.begin() + 28);  // "\3www\7example\3com"
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_question));
}

TEST(ParseQueryRejects, PacketEndsAfterTheName) {
  const Bytes p(kAQuery.begin(), kAQuery.begin() + 29);
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_question));
}

TEST(ParseQueryRejects, PacketEndsAfterQtype) {
  const Bytes p(kAQuery.begin(), kAQuery.begin() + 31);
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_question));
}

TEST(ParseQueryRejects, PacketEndsOneOctetBeforeQclassEnds) {
  const Bytes p(kAQuery.begin(), kAQuery.begin() + 32);
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_question));
}

TEST(ParseQueryRejects, QuestionErrorsComeBeforeRecordErrors) {
  // Bad label in the question, and 65535 records announced that are absent.
  Bytes p = Header(0, 1, 0xFFFF, 0xFFFF, 0xFFFF);
  p.insert(p.end(), {0x81, 'a', 0x00, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::bad_label_type));
}

// --------------------------------------------------------- record rejections

TEST(ParseQueryRejects, ArcountOneWithNoRecord) {
  EXPECT_TRUE(QueryRejected(QueryWith(0, 0, 1).build(), ParseError::truncated_record));
}

TEST(ParseQueryRejects, AncountOneWithNoRecord) {
  EXPECT_TRUE(QueryRejected(QueryWith(1, 0, 0).build(), ParseError::truncated_record));
}

TEST(ParseQueryRejects, NscountOneWithNoRecord) {
  EXPECT_TRUE(QueryRejected(QueryWith(0, 1, 0).build(), ParseError::truncated_record));
}

TEST(ParseQueryRejects, RdlengthRunsPastTheEnd) {
  Bytes p = QueryWith(0, 0, 1).build();
  // Root owner, A IN, ttl 0, rdlength 4, only 3 octets of rdata.
  p.insert(p.end(), {0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 192, 0, 2});
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_record));
}

TEST(ParseQueryRejects, OptRdlengthRunsPastTheEnd) {
  Bytes p = QueryWith(0, 0, 1).build();
  p.insert(p.end(), {0x00, 0x00, 0x29, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01});
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_record));
}

TEST(ParseQueryRejects, RecordCutInsideEveryFixedField) {
  const Bytes whole = QueryWith(0, 0, 1)
                          .opt(4096, 0x8000, {0x00, 0x0C, 0x00, 0x00})  // PADDING, empty
                          .build();
  ASSERT_TRUE(parse_query(whole).ok());
  // Every cut from just after the question to one octet short.
  for (std::size_t len = 29; len < whole.size(); ++len) {
    const Bytes p(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_TRUE(QueryRejected(p, ParseError::truncated_record)) << "length " << len;
  }
}

TEST(ParseQueryRejects, PacketEndsInsideARecordOwnerName) {
  Bytes p = QueryWith(0, 0, 1).build();
  p.insert(p.end(), {0x03, 'a', 'b'});
  EXPECT_TRUE(QueryRejected(p, ParseError::truncated_record));
}

TEST(ParseQueryRejects, Arcount65535WithNoRecordsPresent) {
  // Counts announce 196,605 records and none is there: the walk stops at the
  // first missing one instead of trusting the header.
  EXPECT_TRUE(
      QueryRejected(QueryWith(0xFFFF, 0xFFFF, 0xFFFF).build(), ParseError::truncated_record));
}

TEST(ParseQueryRejects, Arcount65535WithOneRecordPresent) {
  Wire w = QueryWith(0, 0, 0xFFFF);
  w.opt(1232, 0);
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::truncated_record));
}

TEST(ParseQueryRejects, RecordOwnerPointerToItself) {
  Wire w = QueryWith(0, 0, 1);
  w.pointer(29).rr_tail(1, 1, 0, {192, 0, 2, 1});  // the record starts at 29
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::pointer_not_backward));
}

TEST(ParseQueryRejects, RecordOwnerLabelThenPointerToItsOwnStart) {
  // "\1a" at 29, then a pointer to 29: backward from the pointer, but not
  // before the start of the segment it belongs to.
  Wire w = QueryWith(0, 0, 1);
  w.label("a").pointer(29).rr_tail(1, 1, 0, {192, 0, 2, 1});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::pointer_not_backward));
}

TEST(ParseQueryRejects, RecordOwnerForwardPointer) {
  Wire w = QueryWith(0, 0, 1);
  // Pointer at 29 to 41 (into the rdata, which holds "\1a\0").
  w.pointer(41).rr_tail(10, 1, 0, {0x01, 'a', 0x00});
  ASSERT_EQ(w.size(), 44u);
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::pointer_not_backward));
}

TEST(ParseQueryRejects, TwoPointersFormingALoopInAnAdditionalOwnerName) {
  // Record 1 (owner root, type NULL) at 29 carries rdata "C0 xx" at 40 that
  // points at record 2's owner at 42; record 2's owner is a pointer back to
  // 40. Following record 2's owner: 42 -> 40 (backward) -> 42 (forward): loop.
  Wire w = QueryWith(0, 0, 2);
  w.u8(0).rr_tail(10, 1, 0, {0xC0, 42});
  ASSERT_EQ(w.size(), 42u);
  w.pointer(40).rr_tail(1, 1, 0, {192, 0, 2, 1});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::pointer_not_backward));
}

TEST(ParseQueryRejects, RecordOwnerPointerIntoHeader) {
  Wire w = QueryWith(0, 0, 1);
  w.pointer(5).rr_tail(1, 1, 0, {192, 0, 2, 1});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::pointer_into_header));
}

TEST(ParseQueryRejects, RecordOwnerPointerToOffsetEleven) {
  Wire w = QueryWith(0, 0, 1);
  w.pointer(11).rr_tail(1, 1, 0, {192, 0, 2, 1});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::pointer_into_header));
}

TEST(ParseQueryRejects, RecordOwnerLabelType0x40) {
  Wire w = QueryWith(0, 0, 1);
  w.raw({0x41, 'a', 0x00}).rr_tail(1, 1, 0, {192, 0, 2, 1});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::bad_label_type));
}

TEST(ParseQueryRejects, RecordOwnerLabelType0x80) {
  Wire w = QueryWith(0, 0, 1);
  w.raw({0x81, 'a', 0x00}).rr_tail(1, 1, 0, {192, 0, 2, 1});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::bad_label_type));
}

TEST(ParseQueryRejects, RecordOwnerTooLongAfterDecompression) {
  // Question name is 255 octets; the owner "\3abc" + pointer to it is 259.
  Wire w;
  w.header(1, 0, 1, 0, 0, 1).question(Name255());
  w.label("abc").pointer(12).rr_tail(1, 1, 0, {192, 0, 2, 1});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::name_too_long));
}

TEST(ParseQueryRejects, TwoOptRecords) {
  Wire w = QueryWith(0, 0, 2);
  w.opt(4096, 0).opt(4096, 0);
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::bad_opt_record));
}

TEST(ParseQueryRejects, OptWithNonRootOwner) {
  Wire w = QueryWith(0, 0, 1);
  w.name("foo").rr_tail(41, 4096, 0, {});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::bad_opt_record));
}

TEST(ParseQueryRejects, OptOwnerCompressedToTheQuestionName) {
  Wire w = QueryWith(0, 0, 1);
  w.pointer(12).rr_tail(41, 4096, 0, {});
  EXPECT_TRUE(QueryRejected(w.build(), ParseError::bad_opt_record));
}

TEST(ParseQueryRejects, OneTrailingOctet) {
  Bytes p = kAQuery;
  p.push_back(0x00);
  EXPECT_TRUE(QueryRejected(p, ParseError::trailing_data));
}

TEST(ParseQueryRejects, TrailingOctetAfterTheOpt) {
  Bytes p = kEdnsQuery;
  p.push_back(0xFF);
  EXPECT_TRUE(QueryRejected(p, ParseError::trailing_data));
}

TEST(ParseQueryRejects, AWholeRecordNotAnnounced) {
  // ARCOUNT=0 but an OPT follows the question.
  Bytes p = kEdnsQuery;
  p[11] = 0;
  EXPECT_TRUE(QueryRejected(p, ParseError::trailing_data));
}

// ------------------------------------------------------------ error names

TEST(ParseErrorNames, AreTheEnumeratorNames) {
  const std::array<std::pair<ParseError, std::string_view>, kParseErrorCount> expected = {{
      {ParseError::too_short, "too_short"},
      {ParseError::response_bit_set, "response_bit_set"},
      {ParseError::bad_question_count, "bad_question_count"},
      {ParseError::truncated_question, "truncated_question"},
      {ParseError::bad_label_type, "bad_label_type"},
      {ParseError::pointer_into_header, "pointer_into_header"},
      {ParseError::pointer_not_backward, "pointer_not_backward"},
      {ParseError::name_too_long, "name_too_long"},
      {ParseError::truncated_record, "truncated_record"},
      {ParseError::bad_opt_record, "bad_opt_record"},
      {ParseError::trailing_data, "trailing_data"},
      {ParseError::not_a_response, "not_a_response"},
  }};
  for (const auto& [error, name] : expected) {
    EXPECT_EQ(to_string(error), name) << static_cast<int>(error);
  }
}

// ----------------------------------------------------- type/class/rcode names

TEST(PresentationNames, Qtypes) {
  EXPECT_EQ(qtype_to_string(1), "A");
  EXPECT_EQ(qtype_to_string(2), "NS");
  EXPECT_EQ(qtype_to_string(5), "CNAME");
  EXPECT_EQ(qtype_to_string(6), "SOA");
  EXPECT_EQ(qtype_to_string(12), "PTR");
  EXPECT_EQ(qtype_to_string(15), "MX");
  EXPECT_EQ(qtype_to_string(16), "TXT");
  EXPECT_EQ(qtype_to_string(28), "AAAA");
  EXPECT_EQ(qtype_to_string(33), "SRV");
  EXPECT_EQ(qtype_to_string(41), "OPT");
  EXPECT_EQ(qtype_to_string(43), "DS");
  EXPECT_EQ(qtype_to_string(46), "RRSIG");
  EXPECT_EQ(qtype_to_string(47), "NSEC");
  EXPECT_EQ(qtype_to_string(48), "DNSKEY");
  EXPECT_EQ(qtype_to_string(50), "NSEC3");
  EXPECT_EQ(qtype_to_string(64), "SVCB");
  EXPECT_EQ(qtype_to_string(65), "HTTPS");
  EXPECT_EQ(qtype_to_string(251), "IXFR");
  EXPECT_EQ(qtype_to_string(252), "AXFR");
  EXPECT_EQ(qtype_to_string(255), "ANY");
  EXPECT_EQ(qtype_to_string(257), "CAA");
  EXPECT_EQ(qtype_to_string(65280), "TYPE65280");
  EXPECT_EQ(qtype_to_string(0), "TYPE0");
  EXPECT_EQ(qtype_to_string(65535), "TYPE65535");
}

TEST(PresentationNames, Qclasses) {
  EXPECT_EQ(qclass_to_string(1), "IN");
  EXPECT_EQ(qclass_to_string(3), "CH");
  EXPECT_EQ(qclass_to_string(4), "HS");
  EXPECT_EQ(qclass_to_string(254), "NONE");
  EXPECT_EQ(qclass_to_string(255), "ANY");
  EXPECT_EQ(qclass_to_string(7), "CLASS7");
  EXPECT_EQ(qclass_to_string(0), "CLASS0");
  EXPECT_EQ(qclass_to_string(4096), "CLASS4096");
}

TEST(PresentationNames, Rcodes) {
  EXPECT_EQ(rcode_to_string(0), "NOERROR");
  EXPECT_EQ(rcode_to_string(1), "FORMERR");
  EXPECT_EQ(rcode_to_string(2), "SERVFAIL");
  EXPECT_EQ(rcode_to_string(3), "NXDOMAIN");
  EXPECT_EQ(rcode_to_string(4), "NOTIMP");
  EXPECT_EQ(rcode_to_string(5), "REFUSED");
  EXPECT_EQ(rcode_to_string(6), "YXDOMAIN");
  EXPECT_EQ(rcode_to_string(7), "YXRRSET");
  EXPECT_EQ(rcode_to_string(8), "NXRRSET");
  EXPECT_EQ(rcode_to_string(9), "NOTAUTH");
  EXPECT_EQ(rcode_to_string(10), "NOTZONE");
  EXPECT_EQ(rcode_to_string(11), "DSOTYPENI");
  EXPECT_EQ(rcode_to_string(12), "RCODE12");
  EXPECT_EQ(rcode_to_string(15), "RCODE15");
  EXPECT_EQ(rcode_to_string(16), "BADVERS");
  EXPECT_EQ(rcode_to_string(17), "RCODE17");
  EXPECT_EQ(rcode_to_string(23), "BADCOOKIE");
  EXPECT_EQ(rcode_to_string(255), "RCODE255");
}

TEST(PresentationNames, Opcodes) {
  EXPECT_EQ(opcode_to_string(0), "QUERY");
  EXPECT_EQ(opcode_to_string(1), "IQUERY");
  EXPECT_EQ(opcode_to_string(2), "STATUS");
  EXPECT_EQ(opcode_to_string(3), "OPCODE3");
  EXPECT_EQ(opcode_to_string(4), "NOTIFY");
  EXPECT_EQ(opcode_to_string(5), "UPDATE");
  EXPECT_EQ(opcode_to_string(6), "DSO");
  EXPECT_EQ(opcode_to_string(7), "OPCODE7");
  EXPECT_EQ(opcode_to_string(15), "OPCODE15");
}

// --------------------------------------------------- parse_response_question

// Response to example.com A IN: id 0xABCD, QR RD RA, one answer.
Bytes Response() {
  Wire w;
  w.header(0xABCD, 0x8180, 1, 1, 0, 0).question("example.com");
  w.pointer(12).rr_tail(1, 1, 300, {192, 0, 2, 1});
  return w.build();
}

TEST(ParseResponseQuestion, ValidResponse) {
  const Bytes p = Response();
  const auto r = parse_response_question(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.id, 0xABCD);
  EXPECT_EQ(r.value().header.flags, 0x8180);
  EXPECT_EQ(r.value().header.qdcount, 1);
  EXPECT_EQ(r.value().header.ancount, 1);
  EXPECT_EQ(r.value().header.rcode(), 0);
  EXPECT_EQ(NameOf(r.value().question), "example.com");
  EXPECT_EQ(r.value().question.qtype, 1);
  EXPECT_EQ(r.value().question.qclass, 1);
}

TEST(ParseResponseQuestion, KeepsTheCaseOfTheResponseQuestion) {
  Wire w;
  w.header(1, 0x8180, 1, 0, 0, 0).question("ExAmPle.COM", 28, 1);
  const auto r = parse_response_question(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(NameOf(r.value().question), "ExAmPle.COM");
  EXPECT_EQ(r.value().question.qtype, 28);
}

TEST(ParseResponseQuestion, RecordsAreNotParsed) {
  // Announces 3 answers, carries garbage after the question: relayed verbatim,
  // not this function's business.
  Wire w;
  w.header(1, 0x8183, 1, 3, 0, 0).question("example.com").raw({0xC0, 0x00, 0xFF});
  const auto r = parse_response_question(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.rcode(), 3);
  EXPECT_EQ(r.value().header.ancount, 3);
}

TEST(ParseResponseQuestion, QuestionMismatchIsNotItsJob) {
  // A response for another name than the one asked parses fine; the caller
  // compares.
  Wire w;
  w.header(0x1234, 0x8180, 1, 0, 0, 0).question("evil.example", 16, 3);
  const auto r = parse_response_question(w.bytes());
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(NameOf(r.value().question), "evil.example");
  EXPECT_EQ(r.value().question.qtype, 16);
  EXPECT_EQ(r.value().question.qclass, 3);
}

TEST(ParseResponseQuestion, QdcountZeroIsAnEmptyQuestion) {
  const Bytes p = Wire().header(0x4321, 0x8182, 0, 0, 0, 0).build();  // SERVFAIL, no question
  const auto r = parse_response_question(p);
  ASSERT_TRUE(r.ok()) << ExpectedName(r.error());
  EXPECT_EQ(r.value().header.qdcount, 0);
  EXPECT_EQ(r.value().header.id, 0x4321);
  EXPECT_EQ(r.value().header.rcode(), 2);
}

TEST(ParseResponseQuestion, QrZeroIsNotAResponse) {
  EXPECT_TRUE(IsError(parse_response_question(kAQuery), ParseError::not_a_response));
}

TEST(ParseResponseQuestion, TooShort) {
  const Bytes p = {0xAB, 0xCD, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_TRUE(IsError(parse_response_question(p), ParseError::too_short));
  EXPECT_TRUE(IsError(parse_response_question(Bytes{}), ParseError::too_short));
}

TEST(ParseResponseQuestion, QdcountTwo) {
  Wire w;
  w.header(1, 0x8180, 2, 0, 0, 0).question("a.example").question("b.example");
  EXPECT_TRUE(IsError(parse_response_question(w.bytes()), ParseError::bad_question_count));
}

TEST(ParseResponseQuestion, TruncatedQuestion) {
  const Bytes whole = Response();
  const Bytes p(whole.begin(), whole.begin() + 27);  // ends after QTYPE
  EXPECT_TRUE(IsError(parse_response_question(p), ParseError::truncated_question));
}

TEST(ParseResponseQuestion, PointerInQuestionIsAnError) {
  Bytes p = Wire().header(1, 0x8180, 1, 0, 0, 0).build();
  p.insert(p.end(), {0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(IsError(parse_response_question(p), ParseError::pointer_not_backward));
  Bytes q = Wire().header(1, 0x8180, 1, 0, 0, 0).build();
  q.insert(q.end(), {0xC0, 0x02, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(IsError(parse_response_question(q), ParseError::pointer_into_header));
}

TEST(ParseResponseQuestion, BadLabelTypeInQuestion) {
  Bytes p = Wire().header(1, 0x8180, 1, 0, 0, 0).build();
  p.insert(p.end(), {0x81, 'a', 0x00, 0x00, 0x01, 0x00, 0x01});
  EXPECT_TRUE(IsError(parse_response_question(p), ParseError::bad_label_type));
}

// ----------------------------------------------------------- hostile sweep

// A valid EDNS query of 66 octets: question "subdomain.www.example.com" A IN
// (question_end 43), then OPT with a COOKIE option.
Bytes LongEdnsQuery() {
  Wire w;
  w.header(0x5A5A, 0x0120, 1, 0, 0, 1).question("subdomain.www.example.com");
  w.opt(4096, 0x8000, {0x00, 0x0A, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8});
  return w.build();
}

TEST(HostileBytes, EveryPrefixOfAValidEdnsQueryIsRejectedForTheRightReason) {
  const Bytes whole = LongEdnsQuery();
  ASSERT_EQ(whole.size(), 66u);
  const auto full = parse_query(whole);
  ASSERT_TRUE(full.ok()) << ExpectedName(full.error());
  ASSERT_EQ(full.value().question_end, 43u);
  for (std::size_t len = 0; len < whole.size(); ++len) {
    const Bytes p(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(len));
    const ParseError want = len < 12   ? ParseError::too_short
                            : len < 43 ? ParseError::truncated_question
                                       : ParseError::truncated_record;
    EXPECT_TRUE(QueryRejected(p, want)) << "prefix of " << len << " octets";
  }
}

// What must hold of any packet parse_query accepts: a QUERY has its one
// question; another opcode has QDCOUNT 0 or 1 as read, or is header_only.
void CheckAcceptedQuery(const Bytes& p, const ParsedQuery& q) {
  ASSERT_GE(p.size(), 12u);
  EXPECT_FALSE(q.header.qr());
  if (q.header.opcode() != kOpcodeQuery) {
    if (q.header_only) {
      EXPECT_FALSE(q.has_question);
      EXPECT_FALSE(q.edns.present);
      EXPECT_EQ(q.question_end, 12u);
      return;
    }
    EXPECT_LE(q.header.qdcount, 1);
    EXPECT_EQ(q.has_question, q.header.qdcount == 1);
    if (!q.has_question) {
      EXPECT_EQ(q.question_end, 12u);
      return;
    }
  }
  EXPECT_TRUE(q.has_question);
  EXPECT_FALSE(q.header_only);
  ASSERT_GE(p.size(), 12u + 1 + 4);
  EXPECT_EQ(q.header.qdcount, 1);
  EXPECT_LE(q.question.name.wire_length(), 255u);
  ASSERT_GE(q.question_end, 12u + 1 + 4);
  ASSERT_LE(q.question_end, p.size());
  const auto name = q.question.name.wire();
  ASSERT_EQ(name.size() + 12 + 4, q.question_end);
  EXPECT_TRUE(std::equal(name.begin(), name.end(), p.begin() + 12));
}

TEST(HostileBytes, RandomPacketsNeverCrash) {
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> octet(0, 255);
  std::uniform_int_distribution<int> length(0, 300);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes p(static_cast<std::size_t>(length(rng)));
    for (auto& b : p) b = static_cast<std::uint8_t>(octet(rng));
    // Give half of them a plausible header so the parser gets past it.
    if (i % 2 == 0 && p.size() >= 12) {
      p[2] &= 0x7F;
      p[4] = 0;
      p[5] = 1;
      for (std::size_t k = 6; k < 12; ++k) p[k] = (k % 2 == 0) ? 0 : (p[k] & 0x03);
    }
    const auto r = parse_query(p);
    if (r.ok()) {
      ++accepted;
      CheckAcceptedQuery(p, r.value());
    }
    const auto rr = parse_response_question(p);
    if (rr.ok() && rr.value().header.qdcount == 1) {
      EXPECT_LE(rr.value().question.name.wire_length(), 255u);
    }
  }
  RecordProperty("accepted", accepted);
}

TEST(HostileBytes, MutatedValidQueriesNeverCrash) {
  const Bytes base = LongEdnsQuery();
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> where(0, base.size() - 1);
  std::uniform_int_distribution<int> octet(0, 255);
  std::uniform_int_distribution<int> count(1, 4);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes p = base;
    for (int k = count(rng); k > 0; --k) p[where(rng)] = static_cast<std::uint8_t>(octet(rng));
    if (i % 3 == 0) p.resize(where(rng));
    const auto r = parse_query(p);
    if (r.ok()) {
      ++accepted;
      CheckAcceptedQuery(p, r.value());
    }
    (void)parse_response_question(p);
  }
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace dnsgate
