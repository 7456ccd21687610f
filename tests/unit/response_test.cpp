// Tests of the responses dnsgate synthesizes (REFUSED, NXDOMAIN, NOTIMP,
// SERVFAIL, BADVERS). Every expectation is a byte array worked out by hand
// from RFC 1035 4.1, RFC 6891 6.1 and RFC 8914 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dnsgate/parser.hpp"
#include "dnsgate/response.hpp"
#include "wire_builder.hpp"

namespace dnsgate {
namespace {

using test::Bytes;
using test::Wire;

constexpr std::uint8_t kGuard = 0xA5;
constexpr std::size_t kGuardOctets = 64;

// Synthesizes into a buffer of `capacity` octets followed by a guard region,
// checks the guard is intact, and returns what was written.
Bytes Synth(const QueryEcho& echo, Rcode rcode, ExtendedError ede,
            std::size_t capacity = kMaxSynthesizedOctets) {
  Bytes buffer(capacity + kGuardOctets, kGuard);
  const std::size_t n =
      synthesize_response(echo, rcode, ede, std::span<std::uint8_t>(buffer.data(), capacity));
  EXPECT_LE(n, capacity);
  EXPECT_TRUE(std::all_of(buffer.begin() + static_cast<std::ptrdiff_t>(capacity), buffer.end(),
                          [](std::uint8_t b) { return b == kGuard; }))
      << "wrote past the end of `out`";
  return Bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(std::min(n, capacity)));
}

// "example.com A IN" as asked.
const Bytes kQuestion = {0x07, 'e', 'x', 'a',  'm',  'p',  'l',  'e', 0x03,
                         'c',  'o', 'm', 0x00, 0x00, 0x01, 0x00, 0x01};

QueryEcho Echo(std::uint16_t id, std::uint16_t flags, const Bytes& question, EdnsInfo edns = {}) {
  QueryEcho echo;
  echo.id = id;
  echo.flags = flags;
  echo.question = question;
  echo.edns = edns;
  return echo;
}

EdnsInfo Edns(bool dnssec_ok, std::uint16_t payload = 4096) {
  EdnsInfo e;
  e.present = true;
  e.udp_payload_size = payload;
  e.version = 0;
  e.dnssec_ok = dnssec_ok;
  return e;
}

// ---------------------------------------------------------- without EDNS

TEST(SynthesizeResponse, RefusedWithoutEdns) {
  // clang-format off
  const Bytes expected = {
      0xBE, 0xEF, 0x81, 0x85,  // id, flags: QR opcode 0 RD RA REFUSED
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 1, AN 0, NS 0, AR 0
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(0xBEEF, 0x0100, kQuestion), Rcode::refused, ExtendedError::blocked),
            expected);
}

TEST(SynthesizeResponse, RefusedWithoutEdnsAndNoEdeIsTheSame) {
  const auto with_ede =
      Synth(Echo(0xBEEF, 0x0100, kQuestion), Rcode::refused, ExtendedError::blocked);
  const auto without = Synth(Echo(0xBEEF, 0x0100, kQuestion), Rcode::refused, ExtendedError::none);
  EXPECT_EQ(with_ede, without);
  EXPECT_EQ(without.size(), 29u);
}

TEST(SynthesizeResponse, NxdomainWithoutEdns) {
  // clang-format off
  const Bytes expected = {
      0x00, 0x00, 0x81, 0x83,  // id, flags: QR opcode 0 RD RA NXDOMAIN
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 1, AN 0, NS 0, AR 0
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(0x0000, 0x0100, kQuestion), Rcode::nxdomain, ExtendedError::none), expected);
}

TEST(SynthesizeResponse, NotimpForNotifyCopiesTheOpcode) {
  // NOTIFY: opcode 4, AA set (as RFC 1996 senders do), example.com SOA IN.
  const Bytes question = {0x07, 'e', 'x', 'a',  'm',  'p',  'l',  'e', 0x03,
                          'c',  'o', 'm', 0x00, 0x00, 0x06, 0x00, 0x01};
  // clang-format off
  const Bytes expected = {
      0x04, 0xD2, 0xA0, 0x04,  // id, flags: QR opcode 4 NOTIMP (AA not copied, no RA)
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 1, AN 0, NS 0, AR 0
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x06, 0x00, 0x01,  // QTYPE 6, QCLASS 1
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(1234, 0x2400, question), Rcode::notimp, ExtendedError::none), expected);
}

// ------------------------------------------------------------- with EDNS

TEST(SynthesizeResponse, RefusedWithEdnsCarriesEde15AndCopiesDo) {
  // clang-format off
  const Bytes expected = {
      0xBE, 0xEF, 0x81, 0x85,  // id, flags: QR opcode 0 RD RA REFUSED
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x80, 0x00, 0x00, 0x06,  // TTL: ext-rcode 0, version 0, DO; RDLEN 6
      0x00, 0x0F, 0x00, 0x02, 0x00, 0x0F,  // EDE (code 15), length 2, INFO-CODE 15
  };
  // clang-format on
  EXPECT_EQ(
      Synth(Echo(0xBEEF, 0x0100, kQuestion, Edns(true)), Rcode::refused, ExtendedError::blocked),
      expected);
}

TEST(SynthesizeResponse, RefusedWithEdnsWithoutDo) {
  // clang-format off
  const Bytes expected = {
      0xBE, 0xEF, 0x81, 0x85,  // id, flags: QR opcode 0 RD RA REFUSED
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x00, 0x00, 0x00, 0x06,  // TTL: ext-rcode 0, version 0, no DO; RDLEN 6
      0x00, 0x0F, 0x00, 0x02, 0x00, 0x0F,  // EDE (code 15), length 2, INFO-CODE 15
  };
  // clang-format on
  EXPECT_EQ(
      Synth(Echo(0xBEEF, 0x0100, kQuestion, Edns(false)), Rcode::refused, ExtendedError::blocked),
      expected);
}

TEST(SynthesizeResponse, AdvertisedPayloadIs1232WhateverTheQuerySaid) {
  for (std::uint16_t asked : {0, 512, 1232, 4096, 65535}) {
    const Bytes got =
        Synth(Echo(1, 0, kQuestion, Edns(false, asked)), Rcode::refused, ExtendedError::blocked);
    ASSERT_EQ(got.size(), 46u) << asked;
    EXPECT_EQ(got[32], 0x04) << asked;
    EXPECT_EQ(got[33], 0xD0) << asked;
  }
}

TEST(SynthesizeResponse, ServfailWithEde22NoReachableAuthority) {
  // clang-format off
  const Bytes expected = {
      0x12, 0x34, 0x81, 0x82,  // id, flags: QR opcode 0 RD RA SERVFAIL
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x00, 0x00, 0x00, 0x06,  // TTL: ext-rcode 0, version 0, no DO; RDLEN 6
      0x00, 0x0F, 0x00, 0x02, 0x00, 0x16,  // EDE (code 15), length 2, INFO-CODE 22
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(0x1234, 0x0100, kQuestion, Edns(false)), Rcode::servfail,
                  ExtendedError::no_reachable_authority),
            expected);
}

TEST(SynthesizeResponse, ServfailWithEde23NetworkError) {
  // clang-format off
  const Bytes expected = {
      0x12, 0x34, 0x81, 0x82,  // id, flags: QR opcode 0 RD RA SERVFAIL
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x80, 0x00, 0x00, 0x06,  // TTL: ext-rcode 0, version 0, DO; RDLEN 6
      0x00, 0x0F, 0x00, 0x02, 0x00, 0x17,  // EDE (code 15), length 2, INFO-CODE 23
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(0x1234, 0x0100, kQuestion, Edns(true)), Rcode::servfail,
                  ExtendedError::network_error),
            expected);
}

TEST(SynthesizeResponse, ServfailWithEdnsAndNoEdeHasAnEmptyOpt) {
  // clang-format off
  const Bytes expected = {
      0x12, 0x34, 0x81, 0x82,  // id, flags: QR opcode 0 RD RA SERVFAIL
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x80, 0x00, 0x00, 0x00,  // TTL: ext-rcode 0, version 0, DO; RDLEN 0
  };
  // clang-format on
  EXPECT_EQ(
      Synth(Echo(0x1234, 0x0100, kQuestion, Edns(true)), Rcode::servfail, ExtendedError::none),
      expected);
}

TEST(SynthesizeResponse, NotimpForNotifyWithEdnsAndNoEde) {
  // clang-format off
  const Bytes expected = {
      0x00, 0x07, 0xA0, 0x04,  // id, flags: QR opcode 4 NOTIMP
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // TTL: ext-rcode 0, version 0, no DO; RDLEN 0
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(7, 0x2000, kQuestion, Edns(false)), Rcode::notimp, ExtendedError::none),
            expected);
}

// ---------------------------------------------------------------- flags

TEST(SynthesizeResponse, RdAndCdCopiedRaSetAaTcAdZAndQueryRcodeCleared) {
  // Query flags 0x07FF: opcode 0, AA TC RD RA Z AD CD, rcode 15.
  const Bytes got = Synth(Echo(1, 0x07FF, kQuestion), Rcode::refused, ExtendedError::none);
  ASSERT_GE(got.size(), 4u);
  EXPECT_EQ(got[2], 0x81);  // QR, opcode 0, RD
  EXPECT_EQ(got[3], 0x95);  // RA, CD, REFUSED
}

TEST(SynthesizeResponse, RdAndCdClearStayClearRaStillSet) {
  const Bytes got = Synth(Echo(1, 0x0000, kQuestion), Rcode::refused, ExtendedError::none);
  ASSERT_GE(got.size(), 4u);
  EXPECT_EQ(got[2], 0x80);
  EXPECT_EQ(got[3], 0x85);
}

TEST(SynthesizeResponse, CdAloneIsCopied) {
  const Bytes got = Synth(Echo(1, 0x0010, kQuestion), Rcode::servfail, ExtendedError::none);
  ASSERT_GE(got.size(), 4u);
  EXPECT_EQ(got[2], 0x80);
  EXPECT_EQ(got[3], 0x92);
}

TEST(SynthesizeResponse, OpcodeFifteenIsCopied) {
  // Query flags 0x7800 (opcode 15), nothing else.
  const Bytes got = Synth(Echo(1, 0x7800, kQuestion), Rcode::notimp, ExtendedError::none);
  ASSERT_GE(got.size(), 4u);
  EXPECT_EQ(got[2], 0xF8);
  EXPECT_EQ(got[3], 0x04);
}

TEST(SynthesizeResponse, OtherOpcodesGetQrAndTheOpcodeAndNoOtherFlag) {
  // AA TC RD RA Z AD CD are defined for QUERY: an answer to another opcode
  // sets none of them, whatever the query had (RFC 8906 3.1.3, 3.1.4).
  for (std::uint16_t opcode = 1; opcode < 16; ++opcode) {
    const auto query_flags = static_cast<std::uint16_t>(opcode << 11 | 0x07FF);
    const Bytes got = Synth(Echo(1, query_flags, kQuestion), Rcode::notimp, ExtendedError::none);
    ASSERT_GE(got.size(), 4u);
    EXPECT_EQ(got[2], static_cast<std::uint8_t>(0x80 | opcode << 3)) << opcode;
    EXPECT_EQ(got[3], 0x04) << opcode;
  }
}

TEST(SynthesizeResponse, QueryKeepsRdAndCdAndSetsRaWhateverElseTheQueryHad) {
  const Bytes got = Synth(Echo(1, 0x07FF, kQuestion), Rcode::notimp, ExtendedError::none);
  ASSERT_GE(got.size(), 4u);
  EXPECT_EQ(got[2], 0x81);  // QR, opcode 0, RD
  EXPECT_EQ(got[3], 0x94);  // RA, CD, NOTIMP
}

TEST(SynthesizeResponse, QrInTheEchoedFlagsDoesNotMatter) {
  const Bytes a = Synth(Echo(1, 0x8100, kQuestion), Rcode::refused, ExtendedError::none);
  const Bytes b = Synth(Echo(1, 0x0100, kQuestion), Rcode::refused, ExtendedError::none);
  EXPECT_EQ(a, b);
}

// ------------------------------------------------------------- no question

TEST(SynthesizeResponse, NotimpWithoutQuestionIsTheHeaderAlone) {
  // What `dig +noedns +norec +header-only +opcode=15` gets (RFC 8906 3.1.4).
  const Bytes expected = {
      0x76, 0x54, 0xF8, 0x04,                          // id, flags: QR opcode 15 NOTIMP
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 0, AN 0, NS 0, AR 0
  };
  EXPECT_EQ(Synth(Echo(0x7654, 0x7800, Bytes{}), Rcode::notimp, ExtendedError::none), expected);
}

TEST(SynthesizeResponse, NotimpWithoutQuestionWithEdns) {
  // clang-format off
  const Bytes expected = {
      0x76, 0x54, 0xF8, 0x04,  // id, flags: QR opcode 15 NOTIMP
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 0, AN 0, NS 0, AR 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x80, 0x00, 0x00, 0x00,  // TTL: ext-rcode 0, version 0, DO; RDLEN 0
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(0x7654, 0x7900, Bytes{}, Edns(true)), Rcode::notimp, ExtendedError::none),
            expected);
}

// ---------------------------------------------------------------- BADVERS

EdnsInfo EdnsVersion(std::uint8_t version, bool dnssec_ok) {
  EdnsInfo e = Edns(dnssec_ok);
  e.version = version;
  return e;
}

TEST(ResponseRcode, BadversOnlyForAnEdnsVersionAboveZero) {
  EXPECT_EQ(response_rcode(Echo(1, 0x0100, kQuestion), Rcode::refused), Rcode::refused);
  EXPECT_EQ(response_rcode(Echo(1, 0x0100, kQuestion, Edns(true)), Rcode::refused), Rcode::refused);
  EdnsInfo absent;
  absent.version = 1;  // not an OPT: nothing to say about a version
  EXPECT_EQ(response_rcode(Echo(1, 0x0100, kQuestion, absent), Rcode::servfail), Rcode::servfail);
  for (const Rcode rcode : {Rcode::refused, Rcode::nxdomain, Rcode::notimp, Rcode::servfail}) {
    for (const int version : {1, 2, 255}) {
      const auto edns = EdnsVersion(static_cast<std::uint8_t>(version), false);
      EXPECT_EQ(response_rcode(Echo(1, 0x0100, kQuestion, edns), rcode), Rcode::badvers);
    }
  }
}

TEST(SynthesizeResponse, BadversInPlaceOfRefusedForEdnsVersion1) {
  // RFC 6891 6.1.3: BADVERS is 16, so 0 in the header and 1 in the OPT's
  // EXTENDED-RCODE; the OPT says version 0; DO copied; no EDE.
  // clang-format off
  const Bytes expected = {
      0xBE, 0xEF, 0x81, 0x80,  // id, flags: QR opcode 0 RD RA, rcode 0
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x01, 0x00, 0x80, 0x00, 0x00, 0x00,  // TTL: ext-rcode 1, version 0, DO; RDLEN 0
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(0xBEEF, 0x0100, kQuestion, EdnsVersion(1, true)), Rcode::refused,
                  ExtendedError::blocked),
            expected);
}

TEST(SynthesizeResponse, BadversInPlaceOfServfailNxdomainAndNotimpToo) {
  for (const Rcode rcode : {Rcode::servfail, Rcode::nxdomain, Rcode::notimp}) {
    for (const int version : {1, 255}) {
      const Bytes got = Synth(
          Echo(0x0102, 0x0110, kQuestion, EdnsVersion(static_cast<std::uint8_t>(version), false)),
          rcode, ExtendedError::no_reachable_authority);
      ASSERT_EQ(got.size(), 40u);
      EXPECT_EQ(got[2], 0x81);
      EXPECT_EQ(got[3], 0x90);  // RA CD, rcode 0
      const Bytes ttl_and_rdlen(got.begin() + 34, got.end());
      EXPECT_EQ(ttl_and_rdlen, (Bytes{0x01, 0x00, 0x00, 0x00, 0x00, 0x00}));
    }
  }
}

TEST(SynthesizeResponse, BadversForAnotherOpcodeWithoutQuestion) {
  // clang-format off
  const Bytes expected = {
      0x00, 0x2A, 0xF8, 0x00,  // id, flags: QR opcode 15, rcode 0
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 0, AN 0, NS 0, AR 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // TTL: ext-rcode 1, version 0; RDLEN 0
  };
  // clang-format on
  EXPECT_EQ(
      Synth(Echo(42, 0x7900, Bytes{}, EdnsVersion(1, false)), Rcode::notimp, ExtendedError::none),
      expected);
}

// ------------------------------------------------------------- question

TEST(SynthesizeResponse, QuestionCaseIsPreserved) {
  const Bytes question = {0x03, 'W',  'w', 'W', 0x07, 'E',  'x',  'A',  'm',  'P', 'l',
                          'E',  0x03, 'C', 'o', 'M',  0x00, 0x00, 0x1C, 0x00, 0x01};  // AAAA IN
  // clang-format off
  const Bytes expected = {
      0xFF, 0xFF, 0x81, 0x85,  // id, flags: QR opcode 0 RD RA REFUSED
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 1, AN 0, NS 0, AR 0
      0x03, 'W', 'w', 'W', 0x07, 'E', 'x', 'A', 'm', 'P', 'l', 'E',  // QNAME, case as asked
      0x03, 'C', 'o', 'M', 0x00,
      0x00, 0x1C, 0x00, 0x01,  // QTYPE 28, QCLASS 1
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(0xFFFF, 0x0100, question), Rcode::refused, ExtendedError::blocked),
            expected);
}

TEST(SynthesizeResponse, RootQuestion) {
  const Bytes question = {0x00, 0x00, 0x02, 0x00, 0x01};  // . NS IN
  // clang-format off
  const Bytes expected = {
      0x00, 0x01, 0x81, 0x85,  // id, flags: QR opcode 0 RD RA REFUSED
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 1, AN 0, NS 0, AR 0
      0x00,  // QNAME
      0x00, 0x02, 0x00, 0x01,  // QTYPE 2, QCLASS 1
  };
  // clang-format on
  EXPECT_EQ(Synth(Echo(1, 0x0100, question), Rcode::refused, ExtendedError::blocked), expected);
}

// ------------------------------------------------------------ capacity

TEST(SynthesizeResponse, ExactCapacityIsEnough) {
  EXPECT_EQ(Synth(Echo(1, 0x0100, kQuestion), Rcode::refused, ExtendedError::none, 29).size(), 29u);
  EXPECT_EQ(
      Synth(Echo(1, 0x0100, kQuestion, Edns(true)), Rcode::refused, ExtendedError::blocked, 46)
          .size(),
      46u);
  EXPECT_EQ(
      Synth(Echo(1, 0x0100, kQuestion, Edns(true)), Rcode::refused, ExtendedError::none, 40).size(),
      40u);
}

TEST(SynthesizeResponse, TooSmallReturnsZeroAndNeverWritesPast) {
  struct Case {
    EdnsInfo edns;
    ExtendedError ede;
    std::size_t needed;
  };
  const Case cases[] = {
      {EdnsInfo{}, ExtendedError::none, 29},
      {EdnsInfo{}, ExtendedError::blocked, 29},
      {Edns(true), ExtendedError::none, 40},
      {Edns(true), ExtendedError::blocked, 46},
      {EdnsVersion(1, true), ExtendedError::blocked, 40},
  };
  for (const Case& c : cases) {
    const QueryEcho echo = Echo(0xBEEF, 0x0100, kQuestion, c.edns);
    for (std::size_t capacity = 0; capacity < c.needed; ++capacity) {
      Bytes buffer(capacity + kGuardOctets, kGuard);
      const std::size_t n = synthesize_response(echo, Rcode::refused, c.ede,
                                                std::span<std::uint8_t>(buffer.data(), capacity));
      EXPECT_EQ(n, 0u) << "capacity " << capacity << " of " << c.needed;
      EXPECT_TRUE(std::all_of(buffer.begin() + static_cast<std::ptrdiff_t>(capacity), buffer.end(),
                              [](std::uint8_t b) { return b == kGuard; }))
          << "wrote past `out` with capacity " << capacity << " of " << c.needed;
    }
  }
}

TEST(SynthesizeResponse, LongestQuestionWithEdeFitsTheAdvertisedMaximum) {
  // A 255-octet name, TYPE, CLASS, OPT + one EDE: 6 octets short of
  // kMaxSynthesizedOctets, which leaves room for a second EDE.
  const std::string l63(63, 'a');
  Wire q;
  q.label(l63).label(l63).label(l63).label(std::string(61, 'b')).u8(0).u16(1).u16(1);
  const Bytes question = q.build();
  ASSERT_EQ(question.size(), 259u);
  const Bytes got = Synth(Echo(9, 0x0100, question, Edns(false)), Rcode::refused,
                          ExtendedError::blocked, kMaxSynthesizedOctets);
  ASSERT_EQ(got.size(), 12u + 259 + 11 + 6);
  EXPECT_EQ(got.size() + 6, kMaxSynthesizedOctets);
  EXPECT_TRUE(std::equal(question.begin(), question.end(), got.begin() + 12));
  const Bytes tail(got.end() - 17, got.end());
  EXPECT_EQ(tail, (Bytes{0x00, 0x00, 0x29, 0x04, 0xD0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00,
                         0x0F, 0x00, 0x02, 0x00, 0x0F}));
}

TEST(SynthesizeResponse, BogusCarriesTwoEdeOptionsInTheAdvertisedMaximum) {
  // DNSSEC bogus (DESIGN §9): EDE 6 and a more specific one, 7 (expired).
  const std::string l63(63, 'a');
  Wire q;
  q.label(l63).label(l63).label(l63).label(std::string(61, 'b')).u8(0).u16(1).u16(1);
  const Bytes question = q.build();
  Bytes out(kMaxSynthesizedOctets);
  const std::size_t size =
      synthesize_response(Echo(9, 0x0100, question, Edns(false)), Rcode::servfail,
                          ExtendedError::dnssec_bogus, out, static_cast<ExtendedError>(7));
  ASSERT_EQ(size, kMaxSynthesizedOctets);
  const Bytes tail(out.end() - 14, out.end());
  EXPECT_EQ(tail, (Bytes{0x00, 0x0C, 0x00, 0x0F, 0x00, 0x02, 0x00, 0x06, 0x00, 0x0F, 0x00, 0x02,
                         0x00, 0x07}));
  // Without EDNS there is nowhere to put them.
  EXPECT_EQ(synthesize_response(Echo(9, 0x0100, question, EdnsInfo{}), Rcode::servfail,
                                ExtendedError::dnssec_bogus, out, static_cast<ExtendedError>(7)),
            12u + 259);
}

// ------------------------------------------------------------- echo_of

TEST(EchoOf, BuildsTheEchoFromAParsedQuery) {
  // id 0xCAFE, RD CD AD, "ExAmple.com" A IN, OPT payload 4096, DO.
  Wire w;
  w.header(0xCAFE, 0x0130, 1, 0, 0, 1).question("ExAmple.com");
  w.opt(4096, 0x00008000);
  const Bytes packet = w.build();
  const auto parsed = parse_query(packet);
  ASSERT_TRUE(parsed.ok());

  const QueryEcho echo = echo_of(parsed.value(), packet);
  EXPECT_EQ(echo.id, 0xCAFE);
  EXPECT_EQ(echo.flags, 0x0130);
  EXPECT_EQ(echo.question.size(), 17u);
  EXPECT_EQ(echo.question.data(), packet.data() + 12);  // a view, not a copy
  EXPECT_TRUE(echo.edns.present);
  EXPECT_TRUE(echo.edns.dnssec_ok);
  EXPECT_EQ(echo.edns.udp_payload_size, 4096);

  // clang-format off
  const Bytes expected = {
      0xCA, 0xFE, 0x81, 0x95,  // id, flags: QR opcode 0 RD RA CD REFUSED
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 1, AN 0, NS 0, AR 1
      0x07, 'E', 'x', 'A', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x80, 0x00, 0x00, 0x06,  // TTL: ext-rcode 0, version 0, DO; RDLEN 6
      0x00, 0x0F, 0x00, 0x02, 0x00, 0x0F,  // EDE (code 15), length 2, INFO-CODE 15
  };
  // clang-format on
  EXPECT_EQ(Synth(echo, Rcode::refused, ExtendedError::blocked), expected);
}

TEST(EchoOf, WithoutEdns) {
  const Bytes packet = Wire().header(0x0001, 0x0000, 1, 0, 0, 0).question("a.b", 16, 1).build();
  const auto parsed = parse_query(packet);
  ASSERT_TRUE(parsed.ok());
  const QueryEcho echo = echo_of(parsed.value(), packet);
  EXPECT_EQ(echo.id, 1);
  EXPECT_EQ(echo.flags, 0);
  EXPECT_FALSE(echo.edns.present);
  const Bytes question(echo.question.begin(), echo.question.end());
  EXPECT_EQ(question, (Bytes{0x01, 'a', 0x01, 'b', 0x00, 0x00, 0x10, 0x00, 0x01}));
}

TEST(EchoOf, StopsAtQuestionEndEvenWithRecordsAfter) {
  Wire w;
  w.header(0x0102, 0x0100, 1, 1, 0, 0).question("x.example");
  w.pointer(12).rr_tail(1, 1, 0, {192, 0, 2, 1});
  const Bytes packet = w.build();
  const auto parsed = parse_query(packet);
  ASSERT_TRUE(parsed.ok());
  const QueryEcho echo = echo_of(parsed.value(), packet);
  EXPECT_EQ(echo.question.size(), 11u + 4);
  const Bytes got = Synth(echo, Rcode::refused, ExtendedError::blocked);
  // clang-format off
  const Bytes expected = {
      0x01, 0x02, 0x81, 0x85,  // id, flags: QR opcode 0 RD RA REFUSED
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 1, AN 0, NS 0, AR 0
      0x01, 'x', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x00,  // QNAME
      0x00, 0x01, 0x00, 0x01,  // QTYPE 1, QCLASS 1
  };
  // clang-format on
  EXPECT_EQ(got, expected);
}

TEST(EchoOf, TheQueryOptSaysNothingMoreInTheAnswer) {
  // The query's OPT has every unassigned flag bit, an unknown option (65001)
  // and a COOKIE (10): the answer's OPT has DO (copied), payload 1232,
  // version 0, the EDE, and nothing else (RFC 6891 6.1.4, 6.1.2; RFC 7873 5.2).
  Wire w;
  w.header(0x0A0B, 0x0100, 1, 0, 0, 1).question("example.com");
  w.opt(4096, 0x0000FFFF,
        {0xFD, 0xE9, 0x00, 0x02, 'h', 'i', 0x00, 0x0A, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8});
  const Bytes packet = w.build();
  const auto parsed = parse_query(packet);
  ASSERT_TRUE(parsed.ok());
  const Bytes got = Synth(echo_of(parsed.value(), packet), Rcode::refused, ExtendedError::blocked);
  ASSERT_EQ(got.size(), 46u);
  const Bytes opt(got.begin() + 29, got.end());
  EXPECT_EQ(opt, (Bytes{0x00, 0x00, 0x29, 0x04, 0xD0, 0x00, 0x00, 0x80, 0x00, 0x00, 0x06, 0x00,
                        0x0F, 0x00, 0x02, 0x00, 0x0F}));
}

TEST(EchoOf, OtherOpcodeWithoutQuestionEchoesNoQuestion) {
  Wire w;
  w.header(0x0C0D, 0x7800, 0, 0, 0, 1).opt(1232, 0x00008000);
  const Bytes packet = w.build();
  const auto parsed = parse_query(packet);
  ASSERT_TRUE(parsed.ok());
  const QueryEcho echo = echo_of(parsed.value(), packet);
  EXPECT_TRUE(echo.question.empty());
  EXPECT_TRUE(echo.edns.present);
  // clang-format off
  const Bytes expected = {
      0x0C, 0x0D, 0xF8, 0x04,  // id, flags: QR opcode 15 NOTIMP
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // QD 0, AN 0, NS 0, AR 1
      0x00, 0x00, 0x29, 0x04, 0xD0,  // OPT owned by root, CLASS = payload 1232
      0x00, 0x00, 0x80, 0x00, 0x00, 0x00,  // TTL: ext-rcode 0, version 0, DO; RDLEN 0
  };
  // clang-format on
  EXPECT_EQ(Synth(echo, Rcode::notimp, ExtendedError::none), expected);
}

TEST(EchoOf, OtherOpcodeNotLaidOutAsAQueryIsAnsweredFromTheHeaderAlone) {
  // DSO (opcode 6, RFC 8490): counts 0, then a TLV. The OPT-looking octets
  // and the question of a QDCOUNT-2 message are not echoed either.
  const Bytes dso = Wire().header(0x0E0F, 0x3000, 0, 0, 0, 0).raw({0x00, 0x01, 0x00, 0x00}).build();
  Wire two;
  two.header(0x0E0F, 0x3100, 2, 0, 0, 1).question("a.example").question("b.example");
  two.opt(1232, 0x00008000);
  for (const Bytes& packet : {dso, two.build()}) {
    const auto parsed = parse_query(packet);
    ASSERT_TRUE(parsed.ok());
    ASSERT_TRUE(parsed.value().header_only);
    const Bytes expected = {
        0x0E, 0x0F, 0xB0, 0x04,                          // id, flags: QR opcode 6 NOTIMP
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // QD 0, AN 0, NS 0, AR 0
    };
    EXPECT_EQ(Synth(echo_of(parsed.value(), packet), Rcode::notimp, ExtendedError::none), expected);
  }
}

}  // namespace
}  // namespace dnsgate
