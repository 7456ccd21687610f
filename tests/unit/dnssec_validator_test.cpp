// Tests of the validator (src/dnssec/validator.cpp) and its key cache
// (key_cache.cpp) on real signed answers (dnssec_test_vectors.hpp: knotd
// serving zones signed by ldns-signzone, fuzz.test. the anchor), driven as
// the proxy drives it: check_answer, fetch what it asks for, absorb, again.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "dnssec/key_cache.hpp"
#include "dnssec/message.hpp"
#include "dnssec/trust_anchor.hpp"
#include "dnssec/validator.hpp"
#include "dnssec_test_vectors.hpp"

namespace dnsgate::dnssec {
namespace {

using vectors::kNow;

Dname N(std::string_view text) {
  const auto name = from_text(text);
  EXPECT_TRUE(name.has_value()) << text;
  return name.value_or(Dname(1, '\0'));
}

Message Read(const std::vector<std::uint8_t>& wire) {
  auto parsed = read_message(wire);
  EXPECT_TRUE(std::holds_alternative<Message>(parsed));
  return std::holds_alternative<Message>(parsed) ? std::get<Message>(std::move(parsed)) : Message{};
}

std::vector<TrustAnchor> Anchors(std::initializer_list<std::string_view> lines) {
  std::vector<AnchorRecord> records;
  for (const std::string_view line : lines) {
    auto parsed = parse_anchor_record(line);
    EXPECT_TRUE(std::holds_alternative<AnchorRecord>(parsed))
        << line << ": " << std::get<std::string>(parsed);
    if (auto* record = std::get_if<AnchorRecord>(&parsed)) records.push_back(std::move(*record));
  }
  return group_anchors(records);
}

// The anchor's DS with its algorithm or digest type changed: "fuzz.test.
// 3600 IN DS TAG ALG DIGEST HEX".
std::string AnchorWith(std::string_view algorithm, std::string_view digest_type,
                       std::string_view digest) {
  std::vector<std::string> words;
  std::string text(vectors::kAnchorDs);
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t space = text.find(' ', at);
    words.push_back(text.substr(at, space - at));
    if (space == std::string::npos) break;
    at = space + 1;
  }
  // fuzz.test. 3600 IN DS TAG ALG DIGEST HEX
  return words[0] + " DS " + words[4] + " " + std::string(algorithm) + " " +
         std::string(digest_type) + " " + std::string(digest.empty() ? words[7] : digest);
}

class DnssecValidatorTest : public ::testing::Test {
 protected:
  Validator validator_{Anchors({vectors::kAnchorDs}), 100};

  // check_answer, then each fetch answered from `chain` in the order the
  // validator asks (a nested fetch waits and is absorbed again, as the
  // proxy does); the needs seen are appended to `asked`.
  Evaluation Drive(const Message& answer, const std::vector<const Message*>& chain,
                   std::uint32_t now, std::vector<ChainNeed>* asked = nullptr) {
    std::vector<std::pair<ChainNeed, const Message*>> waiting;
    std::size_t next = 0;
    Evaluation evaluation = validator_.check_answer(answer, now);
    for (int round = 0; round < 32; ++round) {
      if (evaluation.done) {
        if (waiting.empty()) return evaluation;
        waiting.pop_back();
      } else {
        if (asked != nullptr) asked->push_back(evaluation.need);
        if (next >= chain.size()) return evaluation;  // not done: the caller sees what it needs
        waiting.emplace_back(evaluation.need, chain[next++]);
        evaluation = validator_.absorb(waiting.back().first, *waiting.back().second, now);
        continue;
      }
      evaluation = waiting.empty()
                       ? validator_.check_answer(answer, now)
                       : validator_.absorb(waiting.back().first, *waiting.back().second, now);
    }
    ADD_FAILURE() << "the validator never concluded";
    return evaluation;
  }

  const Message dnskey_ = Read(vectors::kFuzzDnskey);
  const Message www_a_ = Read(vectors::kWwwA);
};

void ExpectVerdict(const Evaluation& evaluation, DnssecState state, std::uint16_t ede,
                   std::uint16_t detail = ede::kNone) {
  ASSERT_TRUE(evaluation.done) << "still needs " << to_text(evaluation.need.name) << " type "
                               << evaluation.need.type;
  EXPECT_EQ(evaluation.verdict.state, state) << evaluation.verdict.why;
  EXPECT_EQ(evaluation.verdict.ede, ede) << evaluation.verdict.why;
  EXPECT_EQ(evaluation.verdict.detail, detail) << evaluation.verdict.why;
}

// Flips one octet of the signature of the first RRSIG in `section`.
std::vector<std::uint8_t> FlipSignature(const std::vector<std::uint8_t>& wire,
                                        Section section = Section::answer) {
  std::vector<std::uint8_t> out = wire;
  const Message message = Read(wire);
  for (const Record& record : message.records) {
    if (record.type == rrtype::kRrsig && record.section == section) {
      out[record.wire_end - 10] ^= 0x01;
      return out;
    }
  }
  ADD_FAILURE() << "no RRSIG to flip";
  return out;
}

Message WithoutRrsigs(Message message) {
  std::erase_if(message.records, [](const Record& r) { return r.type == rrtype::kRrsig; });
  return message;
}

// ---------------------------------------------------------------- secure

TEST_F(DnssecValidatorTest, SecureAnswerNeedsTheAnchorDnskeyFirst) {
  const Evaluation first = validator_.check_answer(www_a_, kNow);
  ASSERT_FALSE(first.done);
  EXPECT_EQ(first.need, (ChainNeed{N("fuzz.test"), rrtype::kDnskey}));
  EXPECT_EQ(validator_.counters().valid_signatures, 0U);

  ExpectVerdict(validator_.absorb(first.need, dnskey_, kNow), DnssecState::secure, ede::kNone);
  EXPECT_EQ(validator_.counters().valid_signatures, 1U);  // the DNSKEY RRset, by the KSK
  EXPECT_EQ(validator_.cached(), 1U);

  ExpectVerdict(validator_.check_answer(www_a_, kNow), DnssecState::secure, ede::kNone);
  EXPECT_EQ(validator_.counters().valid_signatures, 2U);
  // The keys are kept: the next answer needs no fetch.
  ExpectVerdict(validator_.check_answer(Read(vectors::kNodata), kNow), DnssecState::secure,
                ede::kNone);
}

TEST_F(DnssecValidatorTest, SecureWithADnskeyAnchor) {
  Validator validator(Anchors({vectors::kAnchorDnskey}), 10);
  const Evaluation first = validator.check_answer(www_a_, kNow);
  ASSERT_FALSE(first.done);
  ExpectVerdict(validator.absorb(first.need, dnskey_, kNow), DnssecState::secure, ede::kNone);
  ExpectVerdict(validator.check_answer(www_a_, kNow), DnssecState::secure, ede::kNone);
}

TEST_F(DnssecValidatorTest, SecureNegativeAnswers) {
  ExpectVerdict(Drive(Read(vectors::kNxdomain), {&dnskey_}, kNow), DnssecState::secure, ede::kNone);
  ExpectVerdict(Drive(Read(vectors::kNodata), {}, kNow), DnssecState::secure, ede::kNone);
}

TEST_F(DnssecValidatorTest, NegativeAnswerWithoutItsProofIsBogus) {
  // NODATA for www.fuzz.test. TXT without its NSEC: the walk down from the
  // anchor finds www.fuzz.test. inside the signed zone (no delegation), so
  // the proof was due.
  Message nodata = Read(vectors::kNodata);
  std::erase_if(nodata.records, [](const Record& r) {
    return r.type == rrtype::kNsec || (r.type == rrtype::kRrsig && r.rdata[1] == rrtype::kNsec);
  });
  const Message www_ds = Read(vectors::kWwwDs);
  std::vector<ChainNeed> asked;
  ExpectVerdict(Drive(nodata, {&dnskey_, &www_ds}, kNow, &asked), DnssecState::bogus, ede::kBogus,
                ede::kNsecMissing);
  const std::vector<ChainNeed> expected = {{N("fuzz.test"), rrtype::kDnskey},
                                           {N("www.fuzz.test"), rrtype::kDs}};
  EXPECT_EQ(asked, expected);
}

TEST_F(DnssecValidatorTest, WildcardExpansionWithItsNsecIsSecure) {
  // knotd proves x.wild.fuzz.test. does not exist with the NSEC owned by
  // *.wild.fuzz.test. itself (RRSIG labels 3 for 4 labels with the '*').
  ExpectVerdict(Drive(Read(vectors::kWildcard), {&dnskey_}, kNow), DnssecState::secure, ede::kNone);
}

TEST_F(DnssecValidatorTest, TheWildcardAskedForItselfIsSecure) {
  // *.wild.fuzz.test. A: the RRSIG's labels (3) leave out the '*' (RFC 4034
  // 3.1.3), so this is no expansion and needs no proof.
  ExpectVerdict(Drive(Read(vectors::kWildcardOwner), {&dnskey_}, kNow), DnssecState::secure,
                ede::kNone);
}

TEST_F(DnssecValidatorTest, ChildZoneThroughItsDs) {
  const Message ds = Read(vectors::kSubDs);
  const Message child_keys = Read(vectors::kSubDnskey);
  std::vector<ChainNeed> asked;
  ExpectVerdict(Drive(Read(vectors::kWwwSubA), {&ds, &dnskey_, &child_keys}, kNow, &asked),
                DnssecState::secure, ede::kNone);
  const std::vector<ChainNeed> expected = {{N("sub.fuzz.test"), rrtype::kDs},
                                           {N("fuzz.test"), rrtype::kDnskey},
                                           {N("sub.fuzz.test"), rrtype::kDnskey}};
  EXPECT_EQ(asked, expected);
  EXPECT_EQ(validator_.cached(), 3U);
}

// ---------------------------------------------------------------- bogus

TEST_F(DnssecValidatorTest, FlippedSignatureOctetIsBogus) {
  const Message tampered = Read(FlipSignature(vectors::kWwwA));
  const Evaluation evaluation = Drive(tampered, {&dnskey_}, kNow);
  ExpectVerdict(evaluation, DnssecState::bogus, ede::kBogus);
  EXPECT_EQ(validator_.counters().valid_signatures, 1U);  // the DNSKEY RRset only
  // The untampered answer is still secure: nothing bad was remembered.
  ExpectVerdict(validator_.check_answer(www_a_, kNow), DnssecState::secure, ede::kNone);
}

TEST_F(DnssecValidatorTest, FlippedDnskeySignatureIsBogusAndRemembered) {
  const Message tampered = Read(FlipSignature(vectors::kFuzzDnskey));
  const Evaluation first = validator_.check_answer(www_a_, kNow);
  ASSERT_FALSE(first.done);
  ExpectVerdict(validator_.absorb(first.need, tampered, kNow), DnssecState::bogus, ede::kBogus);
  // The failure stands for 5 seconds without a new fetch, then is forgotten.
  ExpectVerdict(validator_.check_answer(www_a_, kNow + kBogusSeconds - 1), DnssecState::bogus,
                ede::kBogus);
  EXPECT_FALSE(validator_.check_answer(www_a_, kNow + kBogusSeconds).done);
}

TEST_F(DnssecValidatorTest, ExpiredSignatureIsBogusDetail7) {
  const std::uint32_t late = vectors::kExpiration + 1;
  ExpectVerdict(Drive(www_a_, {&dnskey_}, late), DnssecState::bogus, ede::kBogus,
                ede::kSignatureExpired);
  EXPECT_EQ(validator_.counters().valid_signatures, 0U);
}

TEST_F(DnssecValidatorTest, SignatureNotYetValidIsBogusDetail8) {
  const std::uint32_t early = vectors::kInception - 1;
  ExpectVerdict(Drive(www_a_, {&dnskey_}, early), DnssecState::bogus, ede::kBogus,
                ede::kSignatureNotYetValid);
}

TEST_F(DnssecValidatorTest, AnswerWithoutRrsigsUnderTheAnchorIsBogusDetail10) {
  const Message stripped = WithoutRrsigs(www_a_);
  const Message www_ds = Read(vectors::kWwwDs);  // NODATA: www is no delegation
  std::vector<ChainNeed> asked;
  ExpectVerdict(Drive(stripped, {&www_ds, &dnskey_}, kNow, &asked), DnssecState::bogus, ede::kBogus,
                ede::kRrsigsMissing);
  const std::vector<ChainNeed> expected = {{N("www.fuzz.test"), rrtype::kDs},
                                           {N("fuzz.test"), rrtype::kDnskey}};
  EXPECT_EQ(asked, expected);
}

TEST_F(DnssecValidatorTest, DnskeyMatchingNoAnchorIsBogusDetail9) {
  // The child's DNSKEY RRset given for the anchor's: no key matches the DS.
  const Message wrong_keys = Read(vectors::kSubDnskey);
  ExpectVerdict(Drive(www_a_, {&wrong_keys}, kNow), DnssecState::bogus, ede::kBogus,
                ede::kDnskeyMissing);
}

TEST_F(DnssecValidatorTest, FailedFetchIsIndeterminateForASecond) {
  const Evaluation first = validator_.check_answer(www_a_, kNow);
  ASSERT_FALSE(first.done);
  validator_.fetch_failed(first.need, kNow);
  ExpectVerdict(validator_.check_answer(www_a_, kNow), DnssecState::indeterminate,
                ede::kIndeterminate);
  const Evaluation later = validator_.check_answer(www_a_, kNow + kIndeterminateSeconds);
  ASSERT_FALSE(later.done);
  EXPECT_EQ(later.need, first.need);
}

TEST_F(DnssecValidatorTest, ResolverErrorOnAFetchIsIndeterminate) {
  std::vector<std::uint8_t> servfail = vectors::kFuzzDnskey;
  servfail[3] = static_cast<std::uint8_t>((servfail[3] & 0xF0) | 2);
  const Message failed = Read(servfail);
  ExpectVerdict(Drive(www_a_, {&failed}, kNow), DnssecState::indeterminate, ede::kIndeterminate);
}

// ---------------------------------------------------------------- insecure, unchecked

TEST_F(DnssecValidatorTest, UnsignedDelegationIsInsecure) {
  const Message unsigned_ds = Read(vectors::kUnsignedDs);
  std::vector<ChainNeed> asked;
  ExpectVerdict(Drive(Read(vectors::kWwwUnsignedA), {&unsigned_ds, &dnskey_}, kNow, &asked),
                DnssecState::insecure, ede::kNone);
  ASSERT_FALSE(asked.empty());
  EXPECT_EQ(asked.front(), (ChainNeed{N("unsigned.fuzz.test"), rrtype::kDs}));
}

TEST_F(DnssecValidatorTest, NameUnderNoAnchorIsInsecureAtOnce) {
  Validator validator(Anchors({"other.test. DS 1 13 2 " + std::string(64, 'a')}), 10);
  ExpectVerdict(validator.check_answer(www_a_, kNow), DnssecState::insecure, ede::kNone);
  EXPECT_EQ(validator.counters().verifications, 0U);
}

TEST_F(DnssecValidatorTest, AnchorOfUnsupportedAlgorithmOnlyIsInsecureEde1) {
  Validator validator(Anchors({AnchorWith("5", "2", "")}), 10);
  ExpectVerdict(validator.check_answer(www_a_, kNow), DnssecState::insecure,
                ede::kUnsupportedDnskeyAlgorithm);
  // Unsigned data under it is insecure for the same reason.
  ExpectVerdict(validator.check_answer(WithoutRrsigs(www_a_), kNow), DnssecState::insecure,
                ede::kUnsupportedDnskeyAlgorithm);
}

TEST_F(DnssecValidatorTest, AnchorOfUnsupportedDigestOnlyIsInsecureEde2) {
  Validator validator(Anchors({AnchorWith("13", "1", std::string(40, 'b'))}), 10);
  ExpectVerdict(validator.check_answer(www_a_, kNow), DnssecState::insecure,
                ede::kUnsupportedDsDigest);
}

TEST_F(DnssecValidatorTest, ErrorRcodesAndOtherClassesAreNotChecked) {
  std::vector<std::uint8_t> servfail = vectors::kWwwA;
  servfail[3] = static_cast<std::uint8_t>((servfail[3] & 0xF0) | 2);
  ExpectVerdict(validator_.check_answer(Read(servfail), kNow), DnssecState::unchecked, ede::kNone);
  Message chaos = www_a_;
  chaos.qclass = 3;
  ExpectVerdict(validator_.check_answer(chaos, kNow), DnssecState::unchecked, ede::kNone);
}

// ---------------------------------------------------------------- key cache

ChainEntry Entry(std::uint32_t expires) {
  ChainEntry entry;
  entry.state = ChainEntry::State::not_a_cut;
  entry.expires = expires;
  return entry;
}

TEST(DnssecValidatorKeyCacheTest, EvictsTheLeastRecentlyUsed) {
  KeyCache cache(2);
  cache.store(N("a.test"), rrtype::kDs, Entry(100));
  cache.store(N("b.test"), rrtype::kDs, Entry(100));
  ASSERT_NE(cache.find(N("a.test"), rrtype::kDs, 10), nullptr);  // a is now the most recent
  cache.store(N("c.test"), rrtype::kDs, Entry(100));
  EXPECT_EQ(cache.size(), 2U);
  EXPECT_NE(cache.find(N("a.test"), rrtype::kDs, 10), nullptr);
  EXPECT_EQ(cache.find(N("b.test"), rrtype::kDs, 10), nullptr);
  EXPECT_NE(cache.find(N("c.test"), rrtype::kDs, 10), nullptr);
}

TEST(DnssecValidatorKeyCacheTest, KeysByNameAndType) {
  KeyCache cache(4);
  cache.store(N("a.test"), rrtype::kDs, Entry(100));
  EXPECT_EQ(cache.find(N("a.test"), rrtype::kDnskey, 10), nullptr);
  EXPECT_EQ(cache.find(N("b.a.test"), rrtype::kDs, 10), nullptr);
  // Storing again replaces, and does not grow the cache.
  ChainEntry replacement = Entry(200);
  replacement.state = ChainEntry::State::insecure;
  cache.store(N("a.test"), rrtype::kDs, replacement);
  EXPECT_EQ(cache.size(), 1U);
  const ChainEntry* found = cache.find(N("a.test"), rrtype::kDs, 150);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->state, ChainEntry::State::insecure);
}

TEST(DnssecValidatorKeyCacheTest, ForgetsExpiredEntries) {
  KeyCache cache(4);
  cache.store(N("a.test"), rrtype::kDnskey, Entry(100));
  EXPECT_NE(cache.find(N("a.test"), rrtype::kDnskey, 99), nullptr);
  EXPECT_EQ(cache.find(N("a.test"), rrtype::kDnskey, 100), nullptr);
  EXPECT_EQ(cache.size(), 0U);  // dropped, not only hidden
  // Serial arithmetic: an entry stored just before the clock wraps lives past it.
  cache.store(N("b.test"), rrtype::kDnskey, Entry(10));
  EXPECT_NE(cache.find(N("b.test"), rrtype::kDnskey, 0xFFFFFFF0U), nullptr);
}

TEST(DnssecValidatorKeyCacheTest, CapacityZeroStillHoldsOne) {
  KeyCache cache(0);
  EXPECT_EQ(cache.capacity(), 1U);
  cache.store(N("a.test"), rrtype::kDs, Entry(100));
  cache.store(N("b.test"), rrtype::kDs, Entry(100));
  EXPECT_EQ(cache.size(), 1U);
  EXPECT_NE(cache.find(N("b.test"), rrtype::kDs, 1), nullptr);
}

TEST_F(DnssecValidatorTest, ChainMaterialLivesNoLongerThanItsTtl) {
  ExpectVerdict(Drive(www_a_, {&dnskey_}, kNow), DnssecState::secure, ede::kNone);
  // The DNSKEY RRset's TTL is 3600: a second before it ends no fetch, at it a new one.
  EXPECT_TRUE(validator_.check_answer(www_a_, kNow + 3599).done);
  const Evaluation expired = validator_.check_answer(www_a_, kNow + 3600);
  ASSERT_FALSE(expired.done);
  EXPECT_EQ(expired.need, (ChainNeed{N("fuzz.test"), rrtype::kDnskey}));
}

TEST_F(DnssecValidatorTest, TheKeyCacheBoundHolds) {
  Validator validator(Anchors({vectors::kAnchorDs}), 1);
  const Message ds = Read(vectors::kSubDs);
  const Message child_keys = Read(vectors::kSubDnskey);
  const Evaluation first = validator.check_answer(Read(vectors::kWwwSubA), kNow);
  ASSERT_FALSE(first.done);
  // Whatever it learns, it keeps one entry.
  (void)validator.absorb({N("fuzz.test"), rrtype::kDnskey}, dnskey_, kNow);
  (void)validator.absorb({N("sub.fuzz.test"), rrtype::kDs}, ds, kNow);
  EXPECT_EQ(validator.cached(), 1U);
}

}  // namespace
}  // namespace dnsgate::dnssec
