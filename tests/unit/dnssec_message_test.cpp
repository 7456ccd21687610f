// Tests of the validator's message reading and RRset handling
// (src/dnssec/message.cpp, rrset.cpp): compressed names, hostile lengths,
// canonical RDATA (RFC 4034 6.2 with RFC 6840 5.1), RRset grouping, and the
// signed data of real RRSIGs made by ldns-signzone (dnssec_test_vectors.hpp:
// ECDSA P-256 and RSASHA256) checked with libdnssec.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dnssec/crypto.hpp"
#include "dnssec/dname.hpp"
#include "dnssec/message.hpp"
#include "dnssec/rrset.hpp"
#include "dnssec_test_vectors.hpp"
#include "wire_builder.hpp"

namespace dnsgate::dnssec {
namespace {

using test::Bytes;
using test::Wire;

constexpr std::uint16_t kResponse = 0x8180;  // QR RD RA

Dname N(std::string_view text) {
  const auto name = from_text(text);
  EXPECT_TRUE(name.has_value()) << text;
  return name.value_or(Dname(1, '\0'));
}

Message Read(std::span<const std::uint8_t> packet) {
  auto parsed = read_message(packet);
  EXPECT_TRUE(std::holds_alternative<Message>(parsed)) << to_string(std::get<MessageError>(parsed));
  return std::holds_alternative<Message>(parsed) ? std::get<Message>(std::move(parsed)) : Message{};
}

MessageError ErrorOf(std::span<const std::uint8_t> packet) {
  const auto parsed = read_message(packet);
  EXPECT_TRUE(std::holds_alternative<MessageError>(parsed)) << "the packet was read";
  return std::holds_alternative<MessageError>(parsed) ? std::get<MessageError>(parsed)
                                                      : MessageError::no_question;
}

// A record's fixed part and RDATA, written after its owner.
Wire& Rr(Wire& wire, std::uint16_t type, std::uint32_t ttl, const Bytes& rdata) {
  wire.u16(type).u16(kClassIn).u32(ttl).u16(static_cast<std::uint16_t>(rdata.size()));
  return wire.raw(rdata);
}

Bytes NameWire(std::string_view dotted) {
  return Wire().name(dotted).build();
}

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

std::string AsString(const Bytes& bytes) {
  return {bytes.begin(), bytes.end()};
}

// ---------------------------------------------------------------- reading

TEST(DnssecMessageTest, ReadsCompressedOwnersAndRdataNames) {
  // www.Example.COM A, answered by a CNAME to Target.<pointer to Example.COM>
  // and that name's A, both owners compressed.
  Wire wire;
  wire.header(0xABCD, kResponse, 1, 2, 0, 0).question("www.Example.COM", 1);
  wire.pointer(12);
  Rr(wire, rrtype::kCname, 300, Wire().label("Target").pointer(16).build());
  const std::size_t target_at = wire.size() - 9;  // "\6Target" + pointer
  wire.pointer(static_cast<std::uint16_t>(target_at));
  Rr(wire, rrtype::kA, 60, {192, 0, 2, 1});

  const Message message = Read(wire.bytes());
  EXPECT_EQ(message.id, 0xABCD);
  EXPECT_EQ(message.flags, kResponse);
  EXPECT_EQ(message.qname, N("www.example.com"));
  EXPECT_EQ(message.qtype, 1);
  EXPECT_EQ(message.qclass, kClassIn);
  EXPECT_EQ(message.question_end, 12 + 17 + 4U);
  ASSERT_EQ(message.records.size(), 2U);
  EXPECT_EQ(message.records[0].owner, N("www.example.com"));
  EXPECT_EQ(message.records[0].rdata, N("target.example.com"));
  EXPECT_EQ(message.records[0].ttl, 300U);
  EXPECT_EQ(message.records[1].owner, N("target.example.com"));
  EXPECT_EQ(message.records[1].rdata, std::string("\xC0\x00\x02\x01", 4));
  EXPECT_EQ(message.records[1].section, Section::answer);
  // Where each record sits: the second starts where the first ends and
  // ends with the packet.
  EXPECT_EQ(message.records[0].wire_start, message.question_end);
  EXPECT_EQ(message.records[1].wire_start, message.records[0].wire_end);
  EXPECT_EQ(message.records[1].wire_end, wire.size());
}

TEST(DnssecMessageTest, ReadsEverySectionInOrder) {
  Wire wire;
  wire.header(1, kResponse, 1, 1, 1, 2).question("a.test", 1);
  wire.pointer(12);
  Rr(wire, rrtype::kA, 1, {192, 0, 2, 1});
  wire.name("test");
  Rr(wire, rrtype::kNs, 2, NameWire("ns.test"));
  wire.name("ns.test");
  Rr(wire, rrtype::kA, 3, {192, 0, 2, 2});
  wire.opt(1232, 0x8000);
  const Message message = Read(wire.bytes());
  ASSERT_EQ(message.records.size(), 4U);
  EXPECT_EQ(message.records[0].section, Section::answer);
  EXPECT_EQ(message.records[1].section, Section::authority);
  EXPECT_EQ(message.records[2].section, Section::additional);
  EXPECT_EQ(message.records[3].section, Section::additional);
  EXPECT_EQ(message.records[3].type, rrtype::kOpt);
  EXPECT_EQ(message.records[3].klass, 1232);
  EXPECT_EQ(message.records[3].ttl, 0x8000U);
}

TEST(DnssecMessageTest, RefusesTruncatedPackets) {
  Wire wire;
  wire.header(1, kResponse, 1, 1, 0, 0).question("a.test", 1).pointer(12);
  Rr(wire, rrtype::kA, 60, {192, 0, 2, 1});
  const Bytes whole = wire.build();
  ASSERT_TRUE(std::holds_alternative<Message>(read_message(whole)));

  EXPECT_EQ(ErrorOf(std::span(whole).first(11)), MessageError::truncated);
  // The question's type and class cut.
  EXPECT_EQ(ErrorOf(std::span(whole).first(12 + 8 + 2)), MessageError::truncated);
  // The record's fixed part cut, then its RDATA.
  EXPECT_EQ(ErrorOf(std::span(whole).first(whole.size() - 8)), MessageError::truncated);
  EXPECT_EQ(ErrorOf(std::span(whole).first(whole.size() - 1)), MessageError::truncated);
  // A count that announces one more record than there is.
  Bytes more = whole;
  more[7] = 2;
  EXPECT_EQ(ErrorOf(more), MessageError::bad_name);
}

TEST(DnssecMessageTest, NeedsExactlyOneQuestion) {
  EXPECT_EQ(ErrorOf(Wire().header(1, kResponse, 0, 0, 0, 0).build()), MessageError::no_question);
  EXPECT_EQ(ErrorOf(Wire().header(1, kResponse, 2, 0, 0, 0).question("a").question("b").build()),
            MessageError::no_question);
}

TEST(DnssecMessageTest, RefusesBadNames) {
  // A pointer to itself, forward, into the header; a reserved label type.
  Wire self;
  self.header(1, kResponse, 1, 1, 0, 0).question("a.test", 1);
  self.pointer(static_cast<std::uint16_t>(self.size()));
  Rr(self, rrtype::kA, 60, {192, 0, 2, 1});
  EXPECT_EQ(ErrorOf(self.bytes()), MessageError::bad_name);

  Wire forward;
  forward.header(1, kResponse, 1, 1, 0, 0).question("a.test", 1);
  forward.pointer(static_cast<std::uint16_t>(forward.size() + 2));
  Rr(forward, rrtype::kA, 60, {192, 0, 2, 1});
  EXPECT_EQ(ErrorOf(forward.bytes()), MessageError::bad_name);

  Wire header;
  header.header(1, kResponse, 1, 1, 0, 0).question("a.test", 1).pointer(4);
  Rr(header, rrtype::kA, 60, {192, 0, 2, 1});
  EXPECT_EQ(ErrorOf(header.bytes()), MessageError::bad_name);

  Wire reserved;
  reserved.header(1, kResponse, 1, 0, 0, 0).u8(0x41).u8('a').u8(0).u16(1).u16(1);
  EXPECT_EQ(ErrorOf(reserved.bytes()), MessageError::bad_name);

  // A question name compressed (onto the header's end) is no name either.
  Wire question;
  question.header(1, kResponse, 1, 0, 0, 0).pointer(12).u16(1).u16(1);
  EXPECT_EQ(ErrorOf(question.bytes()), MessageError::bad_name);

  // 256 octets once decompressed.
  Wire long_name;
  long_name.header(1, kResponse, 1, 1, 0, 0);
  for (int i = 0; i < 4; ++i) long_name.label(std::string(62, 'x'));
  long_name.name("ab").u16(1).u16(1);  // 4 * 63 + 4 = 256 octets
  EXPECT_EQ(ErrorOf(long_name.bytes()), MessageError::bad_name);
}

TEST(DnssecMessageTest, RefusesRdataWhoseNamesDoNotFit) {
  // A CNAME whose name runs past its RDATA, though the packet goes on.
  Wire cname;
  cname.header(1, kResponse, 1, 2, 0, 0).question("a.test", 1).pointer(12);
  Rr(cname, rrtype::kCname, 60, {3, 'w', 'w', 'w'});  // no root label inside the 4 octets
  cname.pointer(12);
  Rr(cname, rrtype::kA, 60, {0, 0, 0, 0});
  EXPECT_EQ(ErrorOf(cname.bytes()), MessageError::bad_rdata);

  // An MX of one octet (its preference alone takes two).
  Wire mx;
  mx.header(1, kResponse, 1, 1, 0, 0).question("a.test", 15).pointer(12);
  Rr(mx, 15, 60, {0});
  EXPECT_EQ(ErrorOf(mx.bytes()), MessageError::bad_rdata);

  // An NS whose name points forward.
  Wire ns;
  ns.header(1, kResponse, 1, 1, 0, 0).question("a.test", 2).pointer(12);
  Rr(ns, rrtype::kNs, 60, {0xC0, 0x40});
  EXPECT_EQ(ErrorOf(ns.bytes()), MessageError::bad_rdata);

  // The same RDATA under a type without names is read as it is.
  Wire opaque;
  opaque.header(1, kResponse, 1, 1, 0, 0).question("a.test", 16).pointer(12);
  Rr(opaque, 16, 60, {0xC0, 0x40});
  const Message message = Read(opaque.bytes());
  ASSERT_EQ(message.records.size(), 1U);
  EXPECT_EQ(message.records[0].rdata, std::string("\xC0\x40", 2));
}

// ---------------------------------------------------------------- canonical form

TEST(DnssecMessageTest, LowerCasesNamesInRdataOfTheListedTypes) {
  const Bytes soa_rdata = Concat({NameWire("NS1.Example.COM"), NameWire("HostMaster.Example.com"),
                                  Wire().u32(1).u32(7200).u32(3600).u32(1209600).u32(300).build()});
  Wire wire;
  wire.header(1, kResponse, 1, 3, 1, 0).question("Example.COM", rrtype::kSoa);
  wire.pointer(12);
  Rr(wire, rrtype::kSoa, 300, soa_rdata);
  wire.pointer(12);
  Rr(wire, 15, 300, Concat({Wire().u16(10).build(), NameWire("Mail.EXAMPLE.com")}));
  wire.pointer(12);
  Rr(wire, rrtype::kNs, 300, NameWire("NS1.Example.Com"));
  wire.name("WWW.Example.COM");
  Rr(wire, 16, 300, {5, 'H', 'e', 'L', 'L', 'o'});  // TXT: not a name, kept

  const Message message = Read(wire.bytes());
  ASSERT_EQ(message.records.size(), 4U);
  EXPECT_EQ(message.records[0].owner, N("example.com"));
  EXPECT_EQ(message.records[0].rdata,
            AsString(Concat({NameWire("ns1.example.com"), NameWire("hostmaster.example.com"),
                             Wire().u32(1).u32(7200).u32(3600).u32(1209600).u32(300).build()})));
  EXPECT_EQ(message.records[1].rdata,
            AsString(Concat({Wire().u16(10).build(), NameWire("mail.example.com")})));
  EXPECT_EQ(message.records[2].rdata, N("ns1.example.com"));
  EXPECT_EQ(message.records[3].owner, N("www.example.com"));
  EXPECT_EQ(message.records[3].rdata, std::string("\x05HeLLo"));
}

TEST(DnssecMessageTest, KeepsTheCaseOfTheNsecNextName) {
  const Bytes bitmap = {0, 1, 0x40};  // A
  const Bytes head = Wire().u16(rrtype::kNsec).u8(13).u8(2).u32(300).u32(2).u32(1).u16(7).build();
  Wire wire;
  wire.header(1, kResponse | 3, 1, 0, 2, 0).question("b.example", 1);
  wire.name("A.Example");
  Rr(wire, rrtype::kNsec, 300, Concat({NameWire("C.Example"), bitmap}));
  wire.name("A.Example");
  Rr(wire, rrtype::kRrsig, 300, Concat({head, NameWire("EXAMPLE"), {1, 2, 3}}));

  const Message message = Read(wire.bytes());
  ASSERT_EQ(message.records.size(), 2U);
  EXPECT_EQ(message.records[0].owner, N("a.example"));
  // RFC 6840 5.1: NSEC's next name keeps its case; the RRSIG's signer does not.
  EXPECT_EQ(message.records[0].rdata, AsString(Concat({NameWire("C.Example"), bitmap})));
  EXPECT_EQ(message.records[1].rdata, AsString(Concat({head, NameWire("example"), {1, 2, 3}})));
}

TEST(DnssecMessageTest, AppendRdataUncompressesAndLowerCasesOnlyWhenAsked) {
  Wire wire;
  wire.header(1, kResponse, 1, 1, 0, 0).question("Example.COM", 15).pointer(12);
  const std::size_t rdata_at = wire.size() + 10;
  Rr(wire, 15, 60, Concat({Wire().u16(5).build(), Wire().label("Mx").pointer(12).build()}));
  const Bytes packet = wire.build();
  std::string kept;
  ASSERT_TRUE(append_rdata(packet, rdata_at, 7, 15, false, kept));
  EXPECT_EQ(kept, AsString(Concat({Wire().u16(5).build(), NameWire("Mx.Example.COM")})));
  std::string lowered;
  ASSERT_TRUE(append_rdata(packet, rdata_at, 7, 15, true, lowered));
  EXPECT_EQ(lowered, AsString(Concat({Wire().u16(5).build(), NameWire("mx.example.com")})));
  std::string past_end;
  EXPECT_FALSE(append_rdata(packet, rdata_at, 8, 15, true, past_end));
}

// ---------------------------------------------------------------- RRsets

TEST(DnssecMessageTest, GroupsRrsetsBySectionOwnerAndType) {
  const Bytes rrsig_a =
      Concat({Wire().u16(rrtype::kA).u8(13).u8(2).u32(60).u32(2).u32(1).u16(7).build(),
              NameWire("example"),
              {9, 9}});
  const Bytes rrsig_mx = Concat({Wire().u16(15).u8(13).u8(2).u32(60).u32(2).u32(1).u16(7).build(),
                                 NameWire("example"),
                                 {8, 8}});
  Wire wire;
  wire.header(1, kResponse, 1, 5, 1, 1).question("www.example", 1);
  wire.name("www.example");
  Rr(wire, rrtype::kA, 60, {192, 0, 2, 1});
  wire.name("www.example");
  Rr(wire, 28, 60, Bytes(16, 1));
  wire.name("WWW.Example");  // same owner, other case: same RRset
  Rr(wire, rrtype::kA, 60, {192, 0, 2, 2});
  wire.name("www.example");
  Rr(wire, rrtype::kRrsig, 60, rrsig_a);
  wire.name("www.example");
  Rr(wire, rrtype::kRrsig, 60, rrsig_mx);  // covers nothing here: dropped
  wire.name("www.example");                // authority: an A RRset of its own
  Rr(wire, rrtype::kA, 60, {192, 0, 2, 3});
  wire.opt(1232, 0);

  const Message message = Read(wire.bytes());
  const std::vector<RrSet> answer = rrsets_of(message, Section::answer);
  ASSERT_EQ(answer.size(), 2U);
  EXPECT_EQ(answer[0].type, rrtype::kA);
  EXPECT_EQ(answer[0].owner, N("www.example"));
  ASSERT_EQ(answer[0].records.size(), 2U);
  EXPECT_EQ(answer[0].records[1]->rdata, std::string("\xC0\x00\x02\x02", 4));
  ASSERT_EQ(answer[0].rrsigs.size(), 1U);
  EXPECT_EQ(answer[0].rrsigs[0]->rdata, AsString(rrsig_a));
  EXPECT_EQ(answer[1].type, 28);
  EXPECT_TRUE(answer[1].rrsigs.empty());

  const std::vector<RrSet> authority = rrsets_of(message, Section::authority);
  ASSERT_EQ(authority.size(), 1U);
  EXPECT_EQ(authority[0].section, Section::authority);
  EXPECT_TRUE(authority[0].rrsigs.empty());
  EXPECT_TRUE(rrsets_of(message, Section::additional).empty());  // the OPT is no RRset
}

// ---------------------------------------------------------------- real signatures

Message VectorMessage(const std::vector<std::uint8_t>& wire) {
  return Read(wire);
}

const PublicKey* KeyFor(const std::vector<PublicKey>& keys, const Rrsig& rrsig) {
  for (const PublicKey& key : keys) {
    if (key.tag() == rrsig.key_tag && key.algorithm() == rrsig.algorithm) return &key;
  }
  return nullptr;
}

std::vector<PublicKey> KeysOf(const Message& message, DnameView zone) {
  std::vector<PublicKey> keys;
  for (const Record& record : message.records) {
    if (record.type != rrtype::kDnskey || record.section != Section::answer) continue;
    if (auto key = PublicKey::from_dnskey(zone, record.rdata_bytes())) {
      EXPECT_EQ(key->tag(), key_tag(record.rdata_bytes()));
      keys.push_back(std::move(*key));
    }
  }
  return keys;
}

// Verifies the answer's `type` RRset of `answer` with the DNSKEYs of `keys_answer`.
void ExpectVerifies(const std::vector<std::uint8_t>& answer_wire,
                    const std::vector<std::uint8_t>& keys_wire, std::string_view zone,
                    std::uint16_t type, std::uint8_t algorithm) {
  const Message answer = VectorMessage(answer_wire);
  const Message keys_message = VectorMessage(keys_wire);
  const std::vector<PublicKey> keys = KeysOf(keys_message, N(zone));
  ASSERT_EQ(keys.size(), 2U) << "a KSK and a ZSK";
  const std::vector<RrSet> sets = rrsets_of(answer, Section::answer);
  const auto set = std::find_if(sets.begin(), sets.end(),
                                [&](const RrSet& candidate) { return candidate.type == type; });
  ASSERT_NE(set, sets.end());
  ASSERT_EQ(set->rrsigs.size(), 1U);
  const auto rrsig = read_rrsig(*set->rrsigs[0]);
  ASSERT_TRUE(rrsig.has_value());
  EXPECT_EQ(rrsig->type_covered, type);
  EXPECT_EQ(rrsig->algorithm, algorithm);
  EXPECT_EQ(rrsig->labels, label_count(set->owner));
  EXPECT_EQ(rrsig->signer, N(zone));
  EXPECT_EQ(rrsig->inception, vectors::kInception);
  EXPECT_EQ(rrsig->expiration, vectors::kExpiration);
  EXPECT_EQ(validity(*rrsig, vectors::kNow), Window::inside);
  const PublicKey* key = KeyFor(keys, *rrsig);
  ASSERT_NE(key, nullptr);

  std::string data;
  ASSERT_TRUE(signed_data(*rrsig, *set, data));
  EXPECT_TRUE(key->verify(bytes_of(data), rrsig->signature));
  // The signed data starts with the RRSIG RDATA up to the signature.
  EXPECT_EQ(data.substr(0, rrsig->signed_head.size()),
            std::string(reinterpret_cast<const char*>(rrsig->signed_head.data()),
                        rrsig->signed_head.size()));

  // One octet of the data or of the signature changed: no longer.
  std::string tampered = data;
  tampered.back() = static_cast<char>(tampered.back() ^ 0x01);
  EXPECT_FALSE(key->verify(bytes_of(tampered), rrsig->signature));
  std::vector<std::uint8_t> signature(rrsig->signature.begin(), rrsig->signature.end());
  signature[signature.size() / 2] ^= 0x80;
  EXPECT_FALSE(key->verify(bytes_of(data), signature));
  // The other key (the KSK) did not sign it.
  for (const PublicKey& other : keys) {
    if (&other != key) {
      EXPECT_FALSE(other.verify(bytes_of(data), rrsig->signature));
    }
  }
}

TEST(DnssecMessageTest, VerifiesARealEcdsaP256Signature) {
  ExpectVerifies(vectors::kWwwA, vectors::kFuzzDnskey, "fuzz.test", rrtype::kA, 13);
}

TEST(DnssecMessageTest, VerifiesARealRsaSha256Signature) {
  ExpectVerifies(vectors::kWwwSubA, vectors::kSubDnskey, "sub.fuzz.test", rrtype::kA, 8);
}

TEST(DnssecMessageTest, TheChildDsMatchesItsKskOnly) {
  const Message message = VectorMessage(vectors::kSubDnskey);
  const std::vector<PublicKey> keys = KeysOf(message, N("sub.fuzz.test"));
  const Message ds_message = VectorMessage(vectors::kSubDs);
  const std::vector<RrSet> ds_sets = rrsets_of(ds_message, Section::answer);
  ASSERT_EQ(ds_sets.size(), 1U);
  ASSERT_EQ(ds_sets[0].type, rrtype::kDs);
  const std::string& ds = ds_sets[0].records[0]->rdata;
  int matching = 0;
  for (const PublicKey& key : keys) {
    if (key.matches_ds(bytes_of(ds))) {
      ++matching;
      EXPECT_EQ(key.flags(), 257);
    }
  }
  EXPECT_EQ(matching, 1);
  // The DS with one digest octet changed matches no key.
  std::string wrong = ds;
  wrong.back() = static_cast<char>(wrong.back() ^ 0x01);
  for (const PublicKey& key : keys) EXPECT_FALSE(key.matches_ds(bytes_of(wrong)));
}

TEST(DnssecMessageTest, SignedDataIsCanonicalWhateverTheCaseTtlAndOrderSent) {
  // www.fuzz.test A with the owner's case changed in the packet and the
  // TTL decreased (a cache's doing): the canonical form still verifies.
  std::vector<std::uint8_t> packet = vectors::kWwwA;
  const Message original = VectorMessage(packet);
  const Record& a = original.records[0];
  ASSERT_EQ(a.type, rrtype::kA);
  // The question's "www" upper-cased (the answer owner points to it).
  for (std::size_t i = 13; i < 16; ++i) packet[i] = static_cast<std::uint8_t>(packet[i] - 32);
  const std::size_t ttl_at = a.wire_end - 4 - 2 - 4;
  packet[ttl_at + 3] = static_cast<std::uint8_t>(packet[ttl_at + 3] - 1);
  const Message changed = VectorMessage(packet);
  ASSERT_EQ(changed.records[0].ttl + 1, original.records[0].ttl);
  EXPECT_EQ(changed.qname, original.qname);

  const std::vector<PublicKey> keys = KeysOf(VectorMessage(vectors::kFuzzDnskey), N("fuzz.test"));
  const std::vector<RrSet> sets = rrsets_of(changed, Section::answer);
  ASSERT_FALSE(sets.empty());
  const auto rrsig = read_rrsig(*sets[0].rrsigs.at(0));
  ASSERT_TRUE(rrsig.has_value());
  const PublicKey* key = KeyFor(keys, *rrsig);
  ASSERT_NE(key, nullptr);
  std::string data;
  ASSERT_TRUE(signed_data(*rrsig, sets[0], data));
  EXPECT_TRUE(key->verify(bytes_of(data), rrsig->signature));

  // The same RRset twice over (a duplicate) signs the same octets (RFC 4034 6.3).
  RrSet doubled = sets[0];
  doubled.records.push_back(doubled.records[0]);
  std::string doubled_data;
  ASSERT_TRUE(signed_data(*rrsig, doubled, doubled_data));
  EXPECT_EQ(doubled_data, data);
}

TEST(DnssecMessageTest, ValidityWindowUsesSerialArithmetic) {
  Rrsig rrsig;
  rrsig.inception = vectors::kInception;
  rrsig.expiration = vectors::kExpiration;
  EXPECT_EQ(validity(rrsig, vectors::kNow), Window::inside);
  EXPECT_EQ(validity(rrsig, vectors::kInception), Window::inside);
  EXPECT_EQ(validity(rrsig, vectors::kExpiration), Window::inside);
  EXPECT_EQ(validity(rrsig, vectors::kExpiration + 1), Window::expired);
  EXPECT_EQ(validity(rrsig, vectors::kInception - 1), Window::not_yet_valid);
  // A window across the 32-bit wrap.
  rrsig.inception = 0xFFFFFF00U;
  rrsig.expiration = 0x100;
  EXPECT_EQ(validity(rrsig, 0), Window::inside);
  EXPECT_EQ(validity(rrsig, 0x101), Window::expired);
  EXPECT_EQ(validity(rrsig, 0xFFFFFEFFU), Window::not_yet_valid);
}

TEST(DnssecMessageTest, SignedDataOfAWildcardExpansionUsesTheWildcardOwner) {
  const Message message = VectorMessage(vectors::kWildcard);
  const std::vector<RrSet> sets = rrsets_of(message, Section::answer);
  ASSERT_EQ(sets.size(), 1U);
  EXPECT_EQ(sets[0].owner, N("x.wild.fuzz.test"));
  const auto rrsig = read_rrsig(*sets[0].rrsigs.at(0));
  ASSERT_TRUE(rrsig.has_value());
  EXPECT_EQ(rrsig->labels, 3);  // *.wild.fuzz.test. without the '*'
  std::string data;
  ASSERT_TRUE(signed_data(*rrsig, sets[0], data));
  EXPECT_NE(data.find(N("*.wild.fuzz.test")), std::string::npos);
  EXPECT_EQ(data.find(N("x.wild.fuzz.test")), std::string::npos);
  const std::vector<PublicKey> keys = KeysOf(VectorMessage(vectors::kFuzzDnskey), N("fuzz.test"));
  const PublicKey* key = KeyFor(keys, *rrsig);
  ASSERT_NE(key, nullptr);
  EXPECT_TRUE(key->verify(bytes_of(data), rrsig->signature));

  // A labels field above the owner's label count describes no owner.
  Rrsig too_many = *rrsig;
  too_many.labels = 5;
  EXPECT_FALSE(signed_data(too_many, sets[0], data));
}

}  // namespace
}  // namespace dnsgate::dnssec
