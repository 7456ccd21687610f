// Tests of the authenticated denial proofs (src/dnssec/denial.cpp): NSEC
// (RFC 4035 5.4, RFC 6840) on the NSEC chain ldns-signzone makes of the
// RFC 5155 Appendix A zone, and NSEC3 (RFC 5155 8) on that appendix's own
// chain (salt aabbccdd, 12 iterations), its Appendix B responses, and
// hostile variations of both.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dname_literals.hpp"
#include "dnssec/denial.hpp"
#include "dnssec/dname.hpp"
#include "dnssec/message.hpp"

namespace dnsgate::dnssec {
namespace {

constexpr std::uint16_t kA = rrtype::kA;
constexpr std::uint16_t kNs = rrtype::kNs;
constexpr std::uint16_t kCname = rrtype::kCname;
constexpr std::uint16_t kSoa = rrtype::kSoa;
constexpr std::uint16_t kHinfo = 13;
constexpr std::uint16_t kMx = 15;
constexpr std::uint16_t kAaaa = 28;
constexpr std::uint16_t kDname = rrtype::kDname;
constexpr std::uint16_t kDs = rrtype::kDs;
constexpr std::uint16_t kRrsig = rrtype::kRrsig;
constexpr std::uint16_t kNsec = rrtype::kNsec;
constexpr std::uint16_t kDnskey = rrtype::kDnskey;
constexpr std::uint16_t kNsec3param = rrtype::kNsec3param;

using testing::N;
using testing::WireAsSent;

// The RFC 4034 4.1.2 type bitmap of `types`.
std::string Bitmap(std::initializer_list<std::uint16_t> types) {
  std::map<std::uint8_t, std::string> windows;
  for (const std::uint16_t type : types) {
    std::string& bits = windows[static_cast<std::uint8_t>(type >> 8)];
    const std::size_t octet = (type & 0xFF) / 8;
    if (bits.size() <= octet) bits.resize(octet + 1, '\0');
    bits[octet] = static_cast<char>(bits[octet] | (0x80 >> (type % 8)));
  }
  std::string out;
  for (const auto& [window, bits] : windows) {
    out.push_back(static_cast<char>(window));
    out.push_back(static_cast<char>(bits.size()));
    out += bits;
  }
  return out;
}

std::string Hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

constexpr std::string_view kBase32Hex = "0123456789abcdefghijklmnopqrstuv";

std::string Base32HexDecode(std::string_view text) {
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (const char c : text) {
    buffer = (buffer << 5) | static_cast<unsigned>(kBase32Hex.find(c));
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return out;
}

std::string Base32HexEncode(std::string_view raw) {
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (const char c : raw) {
    buffer = (buffer << 8) | static_cast<std::uint8_t>(c);
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push_back(kBase32Hex[(buffer >> bits) & 0x1F]);
    }
  }
  if (bits > 0) out.push_back(kBase32Hex[(buffer << (5 - bits)) & 0x1F]);
  return out;
}

Record MakeRecord(Dname owner, std::uint16_t type, std::string rdata) {
  Record record;
  record.section = Section::authority;
  record.owner = std::move(owner);
  record.type = type;
  record.klass = kClassIn;
  record.ttl = 3600;
  record.rdata = std::move(rdata);
  return record;
}

Record Nsec(std::string_view owner, std::string_view next,
            std::initializer_list<std::uint16_t> types) {
  return MakeRecord(N(owner), kNsec, WireAsSent(next) + Bitmap(types));
}

struct Nsec3Params {
  std::uint8_t algorithm = 1;
  std::uint8_t flags = 1;  // RFC 5155 Appendix A signs with opt-out
  std::uint16_t iterations = 12;
  std::string salt = Hex("aabbccdd");
};

std::string Nsec3Rdata(const Nsec3Params& p, std::string_view next_hash, std::string_view bitmap) {
  std::string rdata;
  rdata.push_back(static_cast<char>(p.algorithm));
  rdata.push_back(static_cast<char>(p.flags));
  rdata.push_back(static_cast<char>(p.iterations >> 8));
  rdata.push_back(static_cast<char>(p.iterations & 0xFF));
  rdata.push_back(static_cast<char>(p.salt.size()));
  rdata += p.salt;
  rdata.push_back(static_cast<char>(next_hash.size()));
  rdata += next_hash;
  rdata += bitmap;
  return rdata;
}

Record Nsec3(std::string_view owner_hash, std::string_view next_hash,
             std::initializer_list<std::uint16_t> types, const Nsec3Params& p = {},
             std::string_view zone = "example.") {
  const std::string owner = std::string(owner_hash) + (zone == "." ? "." : "." + std::string(zone));
  return MakeRecord(N(owner), rrtype::kNsec3,
                    Nsec3Rdata(p, Base32HexDecode(next_hash), Bitmap(types)));
}

// The records of one response and the DenialRecords view of them.
class Response {
 public:
  explicit Response(std::string_view zone) : zone_(N(zone)) {}

  Response& Add(Record record) {
    (record.type == rrtype::kNsec3 ? nsec3_ : nsec_).push_back(std::move(record));
    return *this;
  }
  Response& AddAll(const std::vector<Record>& records) {
    for (const Record& record : records) Add(record);
    return *this;
  }

  DenialRecords Records() const {
    DenialRecords records{zone_, {}, {}};
    for (const Record& record : nsec_) records.nsec.push_back(&record);
    for (const Record& record : nsec3_) records.nsec3.push_back(&record);
    return records;
  }

  DenialOutcome Nxdomain(std::string_view qname) const {
    return prove_nxdomain(Records(), N(qname));
  }
  DenialOutcome Nodata(std::string_view qname, std::uint16_t qtype) const {
    return prove_nodata(Records(), N(qname), qtype);
  }
  DenialOutcome Wildcard(std::string_view qname, std::string_view closest_encloser) const {
    return prove_wildcard_expansion(Records(), N(qname), N(closest_encloser));
  }
  DsAbsence NoDs(std::string_view name) const { return prove_no_ds(Records(), N(name)); }

 private:
  Dname zone_;
  std::vector<Record> nsec_;
  std::vector<Record> nsec3_;
};

// ---------------------------------------------------------------------------
// NSEC: the chain `ldns-signzone` makes of the RFC 5155 Appendix A zone
// (a. is a signed delegation, c. an unsigned one, *.w a wildcard, w and y.w
// empty non-terminals).

Record ChainNsec(std::string_view owner) {
  static const std::map<std::string_view, Record> chain = [] {
    std::map<std::string_view, Record> out;
    out.emplace("example.",
                Nsec("example.", "a.example.", {kNs, kSoa, kMx, kRrsig, kNsec, kDnskey}));
    out.emplace("a.example.", Nsec("a.example.", "ai.example.", {kNs, kDs, kRrsig, kNsec}));
    out.emplace("ai.example.",
                Nsec("ai.example.", "c.example.", {kA, kHinfo, kAaaa, kRrsig, kNsec}));
    out.emplace("c.example.", Nsec("c.example.", "ns1.example.", {kNs, kRrsig, kNsec}));
    out.emplace("ns1.example.", Nsec("ns1.example.", "ns2.example.", {kA, kRrsig, kNsec}));
    out.emplace("ns2.example.", Nsec("ns2.example.", "*.w.example.", {kA, kRrsig, kNsec}));
    out.emplace("*.w.example.", Nsec("*.w.example.", "x.w.example.", {kMx, kRrsig, kNsec}));
    out.emplace("x.w.example.", Nsec("x.w.example.", "x.y.w.example.", {kMx, kRrsig, kNsec}));
    out.emplace("x.y.w.example.", Nsec("x.y.w.example.", "xx.example.", {kMx, kRrsig, kNsec}));
    out.emplace("xx.example.", Nsec("xx.example.", "example.", {kA, kHinfo, kAaaa, kRrsig, kNsec}));
    return out;
  }();
  return chain.at(owner);
}

Response NsecResponse(std::initializer_list<std::string_view> owners) {
  Response response("example.");
  for (const std::string_view owner : owners) response.Add(ChainNsec(owner));
  return response;
}

TEST(DenialNsec, NxdomainNeedsTheCoverAndTheWildcardDenial) {
  // b.example: ai -> c covers it; its closest encloser is example, whose
  // wildcard *.example the apex NSEC (example -> a) covers.
  EXPECT_EQ(NsecResponse({"ai.example.", "example."}).Nxdomain("b.example."),
            DenialOutcome::proven);
  EXPECT_EQ(NsecResponse({"ai.example."}).Nxdomain("b.example."), DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"example."}).Nxdomain("b.example."), DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({}).Nxdomain("b.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec, NxdomainOneNsecCanCoverNameAndWildcard) {
  // z.x.w.example and *.x.w.example both fall in x.w -> x.y.w.
  EXPECT_EQ(NsecResponse({"x.w.example."}).Nxdomain("z.x.w.example."), DenialOutcome::proven);
}

TEST(DenialNsec, NxdomainLastNsecWrapsToTheApex) {
  EXPECT_EQ(NsecResponse({"xx.example.", "example."}).Nxdomain("z.example."),
            DenialOutcome::proven);
  EXPECT_EQ(NsecResponse({"xx.example.", "example."}).Nxdomain("zz.z.example."),
            DenialOutcome::proven);
  // A next name before the owner that is not the apex: nothing is covered.
  Response bad_wrap("example.");
  bad_wrap.Add(Nsec("xx.example.", "ai.example.", {kA, kRrsig, kNsec})).Add(ChainNsec("example."));
  EXPECT_EQ(bad_wrap.Nxdomain("z.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec, NxdomainRefusedWhereAWildcardExists) {
  // a.z.w.example is covered (x.y.w -> xx), but *.w.example exists.
  EXPECT_EQ(NsecResponse({"x.y.w.example.", "*.w.example.", "example."}).Nxdomain("a.z.w.example."),
            DenialOutcome::not_proven);
}

TEST(DenialNsec, NxdomainRefusedForNamesThatExist) {
  EXPECT_EQ(NsecResponse({"ns1.example.", "example."}).Nxdomain("ns1.example."),
            DenialOutcome::not_proven);
  // y.w.example is an empty non-terminal: x.w -> x.y.w shows a name below it.
  EXPECT_EQ(NsecResponse({"x.w.example.", "example."}).Nxdomain("y.w.example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"x.w.example.", "example."}).Nxdomain("w.example."),
            DenialOutcome::not_proven);
}

TEST(DenialNsec, NothingProvenBelowADelegation) {
  // c.example -> ns1.example spans a.c.example in canonical order, but the
  // parent's NSEC at the cut says nothing about the child's names.
  const Response response = NsecResponse({"c.example.", "example."});
  EXPECT_EQ(response.Nxdomain("a.c.example."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Nodata("a.c.example.", kA), DenialOutcome::not_proven);
  EXPECT_EQ(response.Wildcard("a.c.example.", "example."), DenialOutcome::not_proven);
  EXPECT_EQ(response.NoDs("a.c.example."), DsAbsence::not_proven);
}

TEST(DenialNsec, NothingProvenBelowADname) {
  Response with_dname("example.");
  with_dname.Add(Nsec("example.", "d.example.", {kNs, kSoa, kRrsig, kNsec}))
      .Add(Nsec("d.example.", "e.example.", {kDname, kRrsig, kNsec}));
  EXPECT_EQ(with_dname.Nxdomain("x.d.example."), DenialOutcome::not_proven);
  // The same chain without the DNAME proves it.
  Response without("example.");
  without.Add(Nsec("example.", "d.example.", {kNs, kSoa, kRrsig, kNsec}))
      .Add(Nsec("d.example.", "e.example.", {kA, kRrsig, kNsec}));
  EXPECT_EQ(without.Nxdomain("x.d.example."), DenialOutcome::proven);
}

TEST(DenialNsec, OnlyNamesInTheZone) {
  const Response response = NsecResponse({"ai.example.", "example."});
  EXPECT_EQ(response.Nxdomain("b.example.org."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Nxdomain("org."), DenialOutcome::not_proven);
  // The same records claimed for another zone: none of them is in it.
  Response other("example.org.");
  other.Add(ChainNsec("ai.example.")).Add(ChainNsec("example."));
  EXPECT_EQ(other.Nxdomain("b.example."), DenialOutcome::not_proven);
  EXPECT_EQ(other.Nxdomain("b.example.org."), DenialOutcome::not_proven);
  // Nor a zone below the records' own.
  Response child("w.example.");
  child.Add(ChainNsec("ai.example.")).Add(ChainNsec("example."));
  EXPECT_EQ(child.Nxdomain("b.w.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec, NodataAtAnExistingName) {
  const Response response = NsecResponse({"ns1.example."});
  EXPECT_EQ(response.Nodata("ns1.example.", kMx), DenialOutcome::proven);
  EXPECT_EQ(response.Nodata("ns1.example.", kAaaa), DenialOutcome::proven);
  EXPECT_EQ(response.Nodata("ns1.example.", kA), DenialOutcome::not_proven);
  EXPECT_EQ(response.Nodata("ns2.example.", kMx), DenialOutcome::not_proven);
  // A CNAME at the name: the answer would have been the CNAME.
  Response cname("example.");
  cname.Add(Nsec("www.example.", "xx.example.", {kCname, kRrsig, kNsec}));
  EXPECT_EQ(cname.Nodata("www.example.", kA), DenialOutcome::not_proven);
}

TEST(DenialNsec, NodataAtAnEmptyNonTerminal) {
  const Response response = NsecResponse({"x.w.example."});
  EXPECT_EQ(response.Nodata("y.w.example.", kA), DenialOutcome::proven);
  EXPECT_EQ(response.Nodata("y.w.example.", kDs), DenialOutcome::proven);
  EXPECT_EQ(NsecResponse({"ns2.example."}).Nodata("w.example.", kA), DenialOutcome::proven);
}

TEST(DenialNsec, NodataAtADelegationOnlyForDs) {
  // c.example: NS, no SOA, no DS: the parent side of an unsigned cut.
  const Response response = NsecResponse({"c.example."});
  EXPECT_EQ(response.Nodata("c.example.", kDs), DenialOutcome::proven);
  EXPECT_EQ(response.Nodata("c.example.", kA), DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"a.example."}).Nodata("a.example.", kDs), DenialOutcome::not_proven);
  // The child's apex NSEC cannot deny the DS, which lives in the parent.
  EXPECT_EQ(NsecResponse({"example."}).Nodata("example.", kDs), DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"example."}).Nodata("example.", kA), DenialOutcome::proven);
}

TEST(DenialNsec, WildcardNodata) {
  // a.z.w.example AAAA: x.y.w -> xx covers it, *.w.example has no AAAA.
  const Response response = NsecResponse({"x.y.w.example.", "*.w.example."});
  EXPECT_EQ(response.Nodata("a.z.w.example.", kAaaa), DenialOutcome::proven);
  EXPECT_EQ(response.Nodata("a.z.w.example.", kMx), DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"x.y.w.example."}).Nodata("a.z.w.example.", kAaaa),
            DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"*.w.example."}).Nodata("a.z.w.example.", kAaaa),
            DenialOutcome::not_proven);
}

TEST(DenialNsec, WildcardExpansion) {
  const Response response = NsecResponse({"x.y.w.example."});
  EXPECT_EQ(response.Wildcard("a.z.w.example.", "w.example."), DenialOutcome::proven);
  // Not the closest encloser the NSEC shows, or not an ancestor of qname.
  EXPECT_EQ(response.Wildcard("a.z.w.example.", "example."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Wildcard("a.z.w.example.", "z.w.example."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Wildcard("a.z.w.example.", "x.y.w.example."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Wildcard("a.z.w.example.", "a.z.w.example."), DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({}).Wildcard("a.z.w.example.", "w.example."), DenialOutcome::not_proven);
  // x.w.example exists; b.x.w.example has x.w.example as closest encloser,
  // so *.w.example must not have answered either.
  EXPECT_EQ(NsecResponse({"x.w.example."}).Wildcard("x.w.example.", "w.example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"x.w.example."}).Wildcard("b.x.w.example.", "w.example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(NsecResponse({"x.w.example."}).Wildcard("b.x.w.example.", "x.w.example."),
            DenialOutcome::proven);
}

TEST(DenialNsec, NoDs) {
  EXPECT_EQ(NsecResponse({"c.example."}).NoDs("c.example."), DsAbsence::insecure_delegation);
  EXPECT_EQ(NsecResponse({"a.example."}).NoDs("a.example."), DsAbsence::not_proven);
  EXPECT_EQ(NsecResponse({"ns1.example."}).NoDs("ns1.example."), DsAbsence::not_a_delegation);
  EXPECT_EQ(NsecResponse({"ai.example.", "example."}).NoDs("b.example."), DsAbsence::nonexistent);
  EXPECT_EQ(NsecResponse({"ai.example."}).NoDs("b.example."), DsAbsence::not_proven);
  EXPECT_EQ(NsecResponse({"x.w.example."}).NoDs("y.w.example."), DsAbsence::not_a_delegation);
  EXPECT_EQ(NsecResponse({"x.y.w.example.", "*.w.example."}).NoDs("a.z.w.example."),
            DsAbsence::not_a_delegation);
  // The zone's own apex NSEC: only the parent can tell.
  EXPECT_EQ(NsecResponse({"example."}).NoDs("example."), DsAbsence::not_proven);
  EXPECT_EQ(NsecResponse({}).NoDs("c.example."), DsAbsence::not_proven);
}

TEST(DenialNsec, NextNameComparedWithoutCase) {
  Response response("example.");
  response
      .Add(MakeRecord(N("ai.example."), kNsec,
                      WireAsSent("C.EXAMPLE") + Bitmap({kA, kRrsig, kNsec})))
      .Add(MakeRecord(N("example."), kNsec,
                      WireAsSent("A.Example") + Bitmap({kNs, kSoa, kRrsig, kNsec})));
  EXPECT_EQ(response.Nxdomain("b.example."), DenialOutcome::proven);
  EXPECT_EQ(response.Nxdomain("c.example."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Nxdomain("d.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec, MalformedRecordsAreIgnored) {
  const std::string bitmap = Bitmap({kA, kRrsig, kNsec});
  const std::vector<std::string> bad_rdata = {
      "",
      std::string("\x02"
                  "c",
                  2),  // label past the end
      std::string("\x01"
                  "c\x07"
                  "example",
                  10),                                             // no root label
      std::string("\xc0\x0c", 2) + bitmap,                         // compression pointer
      std::string("\x40") + std::string(64, 'c') + '\0' + bitmap,  // 64-octet label
      WireAsSent("c.example") + std::string("\x00", 1),            // window without length
      WireAsSent("c.example") + std::string("\x00\x00", 2),        // empty window
      WireAsSent("c.example") + std::string("\x00\x21", 2) + std::string(33, '\xff'),
      WireAsSent("c.example") + std::string("\x00\x05\x40", 3),              // window past the end
      WireAsSent("c.example") + std::string("\x01\x01\x40\x00\x01\x40", 6),  // out of order
      WireAsSent("c.example.org") + bitmap,  // next outside the zone
  };
  for (const std::string& rdata : bad_rdata) {
    Response response("example.");
    response.Add(MakeRecord(N("ai.example."), kNsec, rdata)).Add(ChainNsec("example."));
    EXPECT_EQ(response.Nxdomain("b.example."), DenialOutcome::not_proven);
    EXPECT_EQ(response.Nodata("ai.example.", kMx), DenialOutcome::not_proven);
    EXPECT_EQ(response.NoDs("b.example."), DsAbsence::not_proven);
  }
  // Records of other types, and null entries, do not count.
  Record wrong_type = ChainNsec("ai.example.");
  wrong_type.type = kA;
  Response response("example.");
  response.Add(wrong_type).Add(ChainNsec("example."));
  EXPECT_EQ(response.Nxdomain("b.example."), DenialOutcome::not_proven);
  const Response keep = NsecResponse({"ai.example.", "example."});
  DenialRecords records = keep.Records();
  records.nsec.insert(records.nsec.begin(), nullptr);
  EXPECT_EQ(prove_nxdomain(records, N("b.example.")), DenialOutcome::proven);
}

TEST(DenialNsec, AtMost64RecordsConsidered) {
  Response response("example.");
  const Record filler = ChainNsec("ns1.example.");
  for (int i = 0; i < 64; ++i) response.Add(filler);
  response.Add(ChainNsec("ai.example.")).Add(ChainNsec("example."));
  EXPECT_EQ(response.Nxdomain("b.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec, BadQueryNamesAreNotProven) {
  const Response response = NsecResponse({"ai.example.", "example."});
  const DenialRecords records = response.Records();
  EXPECT_EQ(prove_nxdomain(records, ""), DenialOutcome::not_proven);
  EXPECT_EQ(prove_nxdomain(records, std::string("\x01"
                                                "b\x07"
                                                "example",
                                                10)),
            DenialOutcome::not_proven);
  EXPECT_EQ(prove_nxdomain(records, std::string("\x05"
                                                "b",
                                                2)),
            DenialOutcome::not_proven);
  EXPECT_EQ(prove_nodata(records, std::string("\xc0\x0c", 2), kA), DenialOutcome::not_proven);
  EXPECT_EQ(prove_no_ds(records, std::string(1, '\x3f')), DsAbsence::not_proven);
  EXPECT_EQ(prove_wildcard_expansion(records, N("b.example."), ""), DenialOutcome::not_proven);
}

// ---------------------------------------------------------------------------
// NSEC3: RFC 5155 Appendix A (opt-out, which leaves c.example out).

constexpr std::string_view kH_example = "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom";
constexpr std::string_view kH_ns1 = "2t7b4g4vsa5smi47k61mv5bv1a22bojr";
constexpr std::string_view kH_x_y_w = "2vptu5timamqttgl4luu9kg21e0aor3s";
constexpr std::string_view kH_a = "35mthgpgcu1qg68fab165klnsnk3dpvl";
constexpr std::string_view kH_x_w = "b4um86eghhds6nea196smvmlo4ors995";
constexpr std::string_view kH_ai = "gjeqe526plbf1g8mklp59enfd789njgi";
constexpr std::string_view kH_y_w = "ji6neoaepv8b5o6k4ev33abha8ht9fgc";
constexpr std::string_view kH_w = "k8udemvp1j2f7eg6jebps17vp3n8i58h";
constexpr std::string_view kH_ns2 = "q04jkcevqvmu85r014c7dkba38o0ji5r";
constexpr std::string_view kH_wild_w = "r53bq7cc2uvmubfu5ocmm6pers9tk9en";
constexpr std::string_view kH_xx = "t644ebqk9bibcna874givr6joj62mlhv";
constexpr std::string_view kH_c = "4g6p9u5gvfshp30pqecj98b3maqbn1ck";

Record ChainNsec3(std::string_view owner_hash, const Nsec3Params& p = {}) {
  if (owner_hash == kH_example) {
    return Nsec3(kH_example, kH_ns1, {kNs, kSoa, kMx, kRrsig, kDnskey, kNsec3param}, p);
  }
  if (owner_hash == kH_ns1) return Nsec3(kH_ns1, kH_x_y_w, {kA, kRrsig}, p);
  if (owner_hash == kH_x_y_w) return Nsec3(kH_x_y_w, kH_a, {kMx, kRrsig}, p);
  if (owner_hash == kH_a) return Nsec3(kH_a, kH_x_w, {kNs, kDs, kRrsig}, p);
  if (owner_hash == kH_x_w) return Nsec3(kH_x_w, kH_ai, {kMx, kRrsig}, p);
  if (owner_hash == kH_ai) return Nsec3(kH_ai, kH_y_w, {kA, kHinfo, kAaaa, kRrsig}, p);
  if (owner_hash == kH_y_w) return Nsec3(kH_y_w, kH_w, {}, p);
  if (owner_hash == kH_w) return Nsec3(kH_w, kH_ns2, {}, p);
  if (owner_hash == kH_ns2) return Nsec3(kH_ns2, kH_wild_w, {kA, kRrsig}, p);
  if (owner_hash == kH_wild_w) return Nsec3(kH_wild_w, kH_xx, {kMx, kRrsig}, p);
  if (owner_hash == kH_xx) return Nsec3(kH_xx, kH_example, {kA, kHinfo, kAaaa, kRrsig}, p);
  ADD_FAILURE() << "no NSEC3 " << owner_hash;
  return {};
}

Response Nsec3Response(std::initializer_list<std::string_view> owner_hashes,
                       const Nsec3Params& p = {}) {
  Response response("example.");
  for (const std::string_view hash : owner_hashes) response.Add(ChainNsec3(hash, p));
  return response;
}

Nsec3Params NoOptOut() {
  Nsec3Params p;
  p.flags = 0;
  return p;
}

std::string HashText(std::string_view name, const Nsec3Params& p = {}) {
  std::string raw;
  if (!nsec3_hash(N(name), p.algorithm, p.iterations, bytes_of(p.salt), raw)) return "<none>";
  return Base32HexEncode(raw);
}

TEST(DenialNsec3, HashMatchesRfc5155AppendixA) {
  EXPECT_EQ(HashText("example."), kH_example);
  EXPECT_EQ(HashText("a.example."), kH_a);
  EXPECT_EQ(HashText("ai.example."), kH_ai);
  EXPECT_EQ(HashText("ns1.example."), kH_ns1);
  EXPECT_EQ(HashText("ns2.example."), kH_ns2);
  EXPECT_EQ(HashText("w.example."), kH_w);
  EXPECT_EQ(HashText("*.w.example."), kH_wild_w);
  EXPECT_EQ(HashText("x.w.example."), kH_x_w);
  EXPECT_EQ(HashText("y.w.example."), kH_y_w);
  EXPECT_EQ(HashText("x.y.w.example."), kH_x_y_w);
  EXPECT_EQ(HashText("xx.example."), kH_xx);
  EXPECT_EQ(HashText("c.example."), kH_c);
}

TEST(DenialNsec3, HashIgnoresCaseAndNeedsSha1) {
  std::string raw;
  ASSERT_TRUE(nsec3_hash(WireAsSent("A.EXAMPLE"), 1, 12, bytes_of(Hex("aabbccdd")), raw));
  EXPECT_EQ(Base32HexEncode(raw), kH_a);
  EXPECT_EQ(raw.size(), 20U);
  EXPECT_FALSE(nsec3_hash(N("a.example."), 2, 12, bytes_of(Hex("aabbccdd")), raw));
  EXPECT_TRUE(raw.empty());
  EXPECT_FALSE(nsec3_hash(N("a.example."), 0, 12, bytes_of(Hex("aabbccdd")), raw));
  // No salt, no extra iteration: SHA-1 of the wire name alone.
  ASSERT_TRUE(nsec3_hash(N("example."), 1, 0, {}, raw));
  EXPECT_EQ(raw.size(), 20U);
}

// B.1: a.c.x.w.example does not exist. Closest encloser x.w.example, next
// closer c.x.w.example covered by the apex's NSEC3, *.x.w.example by a's.
TEST(DenialNsec3, NameErrorB1) {
  // The next closer's NSEC3 is opt-out: an unsigned delegation could hide there.
  EXPECT_EQ(Nsec3Response({kH_example, kH_x_w, kH_a}).Nxdomain("a.c.x.w.example."),
            DenialOutcome::opt_out);
  EXPECT_EQ(Nsec3Response({kH_example, kH_x_w, kH_a}, NoOptOut()).Nxdomain("a.c.x.w.example."),
            DenialOutcome::proven);
  // The order of the records does not matter.
  EXPECT_EQ(Nsec3Response({kH_a, kH_example, kH_x_w}, NoOptOut()).Nxdomain("a.c.x.w.example."),
            DenialOutcome::proven);
}

TEST(DenialNsec3, NameErrorNeedsEveryPart) {
  // No wildcard denial, no closest encloser, no next closer cover.
  EXPECT_EQ(Nsec3Response({kH_example, kH_x_w}, NoOptOut()).Nxdomain("a.c.x.w.example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_example, kH_a}, NoOptOut()).Nxdomain("a.c.x.w.example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_x_w, kH_a}, NoOptOut()).Nxdomain("a.c.x.w.example."),
            DenialOutcome::not_proven);
  // A name that exists, and an empty non-terminal.
  EXPECT_EQ(Nsec3Response({kH_example, kH_x_w, kH_a}, NoOptOut()).Nxdomain("x.w.example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_y_w, kH_w, kH_ns1}, NoOptOut()).Nxdomain("y.w.example."),
            DenialOutcome::not_proven);
}

TEST(DenialNsec3, NoDataB2) {
  const Response response = Nsec3Response({kH_ns1});
  EXPECT_EQ(response.Nodata("ns1.example.", kMx), DenialOutcome::proven);
  EXPECT_EQ(response.Nodata("ns1.example.", kA), DenialOutcome::not_proven);
  EXPECT_EQ(response.Nodata("ns2.example.", kMx), DenialOutcome::not_proven);
}

TEST(DenialNsec3, NoDataEmptyNonTerminalB21) {
  EXPECT_EQ(Nsec3Response({kH_y_w}).Nodata("y.w.example.", kA), DenialOutcome::proven);
}

// B.3: the referral to c.example, an unsigned delegation in an opt-out span:
// closest encloser example, next closer c.example covered by a's NSEC3.
TEST(DenialNsec3, OptOutReferralB3) {
  const Response response = Nsec3Response({kH_example, kH_a});
  EXPECT_EQ(response.NoDs("c.example."), DsAbsence::opt_out);
  EXPECT_EQ(response.Nodata("c.example.", kDs), DenialOutcome::opt_out);
  EXPECT_EQ(response.NoDs("mc.c.example."), DsAbsence::opt_out);
  // Without opt-out the same records prove nothing about a DS ...
  const Response plain = Nsec3Response({kH_example, kH_a}, NoOptOut());
  EXPECT_EQ(plain.Nodata("c.example.", kDs), DenialOutcome::not_proven);
  EXPECT_EQ(plain.NoDs("c.example."), DsAbsence::not_proven);
  // ... until *.example (jhsv97ro..., in ai -> y.w) is denied too.
  EXPECT_EQ(Nsec3Response({kH_example, kH_a, kH_ai}, NoOptOut()).NoDs("c.example."),
            DsAbsence::nonexistent);
}

// B.4: a.z.w.example MX from *.w.example; next closer z.w.example is
// covered by ns2's NSEC3.
TEST(DenialNsec3, WildcardExpansionB4) {
  EXPECT_EQ(Nsec3Response({kH_ns2}).Wildcard("a.z.w.example.", "w.example."),
            DenialOutcome::opt_out);
  EXPECT_EQ(Nsec3Response({kH_ns2}, NoOptOut()).Wildcard("a.z.w.example.", "w.example."),
            DenialOutcome::proven);
  EXPECT_EQ(Nsec3Response({kH_ns1}, NoOptOut()).Wildcard("a.z.w.example.", "w.example."),
            DenialOutcome::not_proven);
  // Wrong closest enclosers: w.example (the next closer for "example.") exists.
  EXPECT_EQ(Nsec3Response({kH_ns2}, NoOptOut()).Wildcard("a.z.w.example.", "example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_ns2}, NoOptOut()).Wildcard("a.z.w.example.", "a.z.w.example."),
            DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_ns2}, NoOptOut()).Wildcard("a.z.w.example.", "x.w.example."),
            DenialOutcome::not_proven);
}

// B.5: a.z.w.example AAAA: closest encloser w.example, next closer covered,
// *.w.example matched without AAAA.
TEST(DenialNsec3, WildcardNoDataB5) {
  EXPECT_EQ(Nsec3Response({kH_w, kH_ns2, kH_wild_w}, NoOptOut()).Nodata("a.z.w.example.", kAaaa),
            DenialOutcome::proven);
  EXPECT_EQ(Nsec3Response({kH_w, kH_ns2, kH_wild_w}).Nodata("a.z.w.example.", kAaaa),
            DenialOutcome::opt_out);
  EXPECT_EQ(Nsec3Response({kH_w, kH_ns2, kH_wild_w}, NoOptOut()).Nodata("a.z.w.example.", kMx),
            DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_w, kH_ns2}, NoOptOut()).Nodata("a.z.w.example.", kAaaa),
            DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_ns2, kH_wild_w}, NoOptOut()).Nodata("a.z.w.example.", kAaaa),
            DenialOutcome::not_proven);
}

// B.6 answers a DS query for example. from the example zone itself. The
// DS lives in the parent, so the child's apex NSEC3 proves nothing (as in
// Unbound).
TEST(DenialNsec3, DsAtTheChildApexB6IsNotProven) {
  EXPECT_EQ(Nsec3Response({kH_example}).Nodata("example.", kDs), DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_example}).NoDs("example."), DsAbsence::not_proven);
  EXPECT_EQ(Nsec3Response({kH_example}).Nodata("example.", kA), DenialOutcome::proven);
}

TEST(DenialNsec3, NoDs) {
  // The ldns-signzone chain keeps c.example (NS, no DS).
  Response with_c("example.");
  with_c.Add(Nsec3(kH_c, kH_x_w, {kNs}));
  EXPECT_EQ(with_c.NoDs("c.example."), DsAbsence::insecure_delegation);
  EXPECT_EQ(with_c.Nodata("c.example.", kDs), DenialOutcome::proven);
  EXPECT_EQ(with_c.Nodata("c.example.", kA), DenialOutcome::not_proven);
  EXPECT_EQ(Nsec3Response({kH_a}).NoDs("a.example."), DsAbsence::not_proven);
  EXPECT_EQ(Nsec3Response({kH_ns1}).NoDs("ns1.example."), DsAbsence::not_a_delegation);
  EXPECT_EQ(Nsec3Response({kH_y_w}).NoDs("y.w.example."), DsAbsence::not_a_delegation);
  // A name the wildcard answers for.
  EXPECT_EQ(Nsec3Response({kH_w, kH_ns2, kH_wild_w}, NoOptOut()).NoDs("a.z.w.example."),
            DsAbsence::not_a_delegation);
  EXPECT_EQ(Nsec3Response({}).NoDs("a.example."), DsAbsence::not_proven);
}

TEST(DenialNsec3, ClosestEncloserMayNotBeACutOrDname) {
  // x.c.example: c.example matches; an NSEC3 from 00..0 to vv..v covers
  // every other hash (the next closer x.c.example and *.c.example).
  const Nsec3Params p = NoOptOut();
  const std::string low(32, '0');
  const std::string high(32, 'v');
  auto with_c = [&](std::initializer_list<std::uint16_t> c_types) {
    Response response("example.");
    response.Add(Nsec3(kH_c, kH_x_w, c_types, p))
        .Add(Nsec3(low, high, {}, p))
        .Add(ChainNsec3(kH_example, p));
    return response;
  };
  const Response cut = with_c({kNs});
  EXPECT_EQ(cut.Nxdomain("x.c.example."), DenialOutcome::not_proven);
  EXPECT_EQ(cut.Nodata("x.c.example.", kA), DenialOutcome::not_proven);
  EXPECT_EQ(cut.NoDs("x.c.example."), DsAbsence::not_proven);
  EXPECT_EQ(with_c({kNs, kDs}).Nxdomain("x.c.example."), DenialOutcome::not_proven);
  EXPECT_EQ(with_c({kDname}).Nxdomain("x.c.example."), DenialOutcome::not_proven);
  EXPECT_EQ(with_c({kA}).Nxdomain("x.c.example."), DenialOutcome::proven);
  EXPECT_EQ(with_c({kA}).NoDs("x.c.example."), DsAbsence::nonexistent);
}

TEST(DenialNsec3, OverlappingRecordsDoNotDenyAnExistingName) {
  // x.w.example matches; a (bogus but signed) 00..0 -> vv..v also covers
  // its hash. The match wins.
  const Nsec3Params p = NoOptOut();
  Response response("example.");
  response.Add(ChainNsec3(kH_x_w, p))
      .Add(Nsec3(std::string(32, '0'), std::string(32, 'v'), {}, p))
      .Add(ChainNsec3(kH_example, p));
  EXPECT_EQ(response.Nxdomain("x.w.example."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Nodata("x.w.example.", kMx), DenialOutcome::not_proven);
  EXPECT_EQ(response.NoDs("x.w.example."), DsAbsence::not_a_delegation);
  EXPECT_EQ(response.Nxdomain("b.x.w.example."), DenialOutcome::proven);
}

TEST(DenialNsec3, TooManyIterations) {
  Nsec3Params p = NoOptOut();
  p.iterations = 200;
  const Response response = Nsec3Response({kH_example, kH_x_w, kH_a}, p);
  EXPECT_EQ(response.Nxdomain("a.c.x.w.example."), DenialOutcome::too_many_iterations);
  EXPECT_EQ(response.Nodata("ns1.example.", kA), DenialOutcome::too_many_iterations);
  EXPECT_EQ(response.Wildcard("a.z.w.example.", "w.example."), DenialOutcome::too_many_iterations);
  EXPECT_EQ(response.NoDs("c.example."), DsAbsence::too_many_iterations);
  // 150 is still allowed (the hashes then simply do not match).
  p.iterations = kMaxNsec3Iterations;
  EXPECT_EQ(Nsec3Response({kH_example, kH_x_w, kH_a}, p).Nxdomain("a.c.x.w.example."),
            DenialOutcome::not_proven);
}

TEST(DenialNsec3, UnsupportedHash) {
  Nsec3Params p = NoOptOut();
  p.algorithm = 2;
  const Response response = Nsec3Response({kH_example, kH_x_w, kH_a}, p);
  EXPECT_EQ(response.Nxdomain("a.c.x.w.example."), DenialOutcome::unsupported_hash);
  EXPECT_EQ(response.NoDs("c.example."), DsAbsence::unsupported_hash);
  p.iterations = 500;
  EXPECT_EQ(Nsec3Response({kH_example}, p).Nxdomain("a.c.x.w.example."),
            DenialOutcome::too_many_iterations);
  // SHA-1 records are used when there are also unknown ones.
  Response mixed = Nsec3Response({kH_example, kH_x_w, kH_a}, NoOptOut());
  Nsec3Params unknown = NoOptOut();
  unknown.algorithm = 7;
  mixed.Add(ChainNsec3(kH_ns1, unknown));
  EXPECT_EQ(mixed.Nxdomain("a.c.x.w.example."), DenialOutcome::proven);
}

TEST(DenialNsec3, RecordsWithOtherParametersAreIgnored) {
  Response response = Nsec3Response({kH_example, kH_x_w}, NoOptOut());
  Nsec3Params other_salt = NoOptOut();
  other_salt.salt = Hex("aabbccde");
  response.Add(ChainNsec3(kH_a, other_salt));
  EXPECT_EQ(response.Nxdomain("a.c.x.w.example."), DenialOutcome::not_proven);
  Nsec3Params other_iterations = NoOptOut();
  other_iterations.iterations = 11;
  Response again = Nsec3Response({kH_example, kH_x_w}, NoOptOut());
  again.Add(ChainNsec3(kH_a, other_iterations));
  EXPECT_EQ(again.Nxdomain("a.c.x.w.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec3, OnlyRecordsOneLabelBelowTheZone) {
  const Response good = Nsec3Response({kH_example, kH_x_w, kH_a}, NoOptOut());
  DenialRecords records = good.Records();
  const Dname w = N("w.example.");
  records.zone = w;
  EXPECT_EQ(prove_nxdomain(records, N("a.c.x.w.example.")), DenialOutcome::not_proven);
  const Dname org = N("example.org.");
  records.zone = org;
  EXPECT_EQ(prove_nxdomain(records, N("a.c.x.w.example.")), DenialOutcome::not_proven);
  // The same hashes two labels below the zone.
  Response deep("example.");
  for (const std::string_view hash : {kH_example, kH_x_w, kH_a}) {
    Record record = ChainNsec3(hash, NoOptOut());
    record.owner = N(std::string(hash) + ".sub.example.");
    deep.Add(record);
  }
  EXPECT_EQ(deep.Nxdomain("a.c.x.w.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec3, MalformedRecordsAreIgnored) {
  const std::string next = Base32HexDecode(kH_ai);
  const std::string salt = Hex("aabbccdd");
  auto rdata = [&](std::uint8_t flags, std::string_view salt_field, std::string_view hash_field,
                   std::string_view tail) {
    std::string out;
    out.push_back('\x01');
    out.push_back(static_cast<char>(flags));
    out.push_back('\x00');
    out.push_back('\x0c');
    out += salt_field;
    out += hash_field;
    out += tail;
    return out;
  };
  const std::string salt_field = std::string(1, '\x04') + salt;
  const std::string hash_field = std::string(1, '\x14') + next;
  const std::string bitmap = Bitmap({kMx, kRrsig});
  const std::vector<std::string> bad = {
      "",
      std::string("\x01\x00\x00", 3),
      rdata(0, std::string(1, '\x05') + salt, "", ""),       // salt past the end
      rdata(0, salt_field, "", ""),                          // no hash length
      rdata(0, salt_field, std::string(1, '\x00'), bitmap),  // empty hash
      rdata(0, salt_field, std::string(1, '\x13') + next.substr(0, 19), bitmap),  // 19 octets
      rdata(0, salt_field, std::string(1, '\x15') + next, bitmap),                // past the end
      rdata(0, salt_field, std::string(1, '\xff') + next, bitmap),   // far past the end
      rdata(2, salt_field, hash_field, bitmap),                      // unknown flag
      rdata(0, salt_field, hash_field, std::string("\x00\x00", 2)),  // bad bitmap
      rdata(0, salt_field, hash_field, std::string("\x00\x05\x01", 3)),
  };
  for (const std::string& bad_rdata : bad) {
    Response response = Nsec3Response({kH_example, kH_a}, NoOptOut());
    response.Add(MakeRecord(N(std::string(kH_x_w) + ".example."), rrtype::kNsec3, bad_rdata));
    EXPECT_EQ(response.Nxdomain("a.c.x.w.example."), DenialOutcome::not_proven);
    EXPECT_EQ(response.Nodata("x.w.example.", kA), DenialOutcome::not_proven);
    EXPECT_EQ(response.NoDs("x.w.example."), DsAbsence::not_proven);
  }
  // Owner labels that are not a 20-octet base32hex hash.
  for (const std::string_view owner :
       {"b4um86eghhds6nea196smvmlo4ors99w.example.", "b4um86eghhds6nea196smvmlo4ors99.example.",
        "b4um86eghhds6nea196smvmlo4ors9950.example.", "x.example."}) {
    Response response = Nsec3Response({kH_example, kH_a}, NoOptOut());
    Record record = ChainNsec3(kH_x_w, NoOptOut());
    record.owner = N(owner);
    response.Add(record);
    EXPECT_EQ(response.Nxdomain("a.c.x.w.example."), DenialOutcome::not_proven) << owner;
  }
}

TEST(DenialNsec3, TruncatedRdataNeverCrashes) {
  const Nsec3Params p = NoOptOut();
  for (const std::string_view hash : {kH_example, kH_x_w, kH_a}) {
    const Record full = ChainNsec3(hash, p);
    for (std::size_t length = 0; length < full.rdata.size(); ++length) {
      Response response("example.");
      for (const std::string_view other : {kH_example, kH_x_w, kH_a}) {
        if (other == hash) continue;
        response.Add(ChainNsec3(other, p));
      }
      Record cut = full;
      cut.rdata.resize(length);
      response.Add(cut);
      const DenialOutcome outcome = response.Nxdomain("a.c.x.w.example.");
      // Up to the end of the next hash (5 + 4 + 1 + 20 octets) nothing is usable.
      if (length < 30) {
        EXPECT_EQ(outcome, DenialOutcome::not_proven) << length;
      }
      response.Nodata("x.w.example.", kA);
      response.NoDs("c.x.w.example.");
      response.Wildcard("a.z.w.example.", "w.example.");
    }
  }
}

TEST(DenialNsec3, AtMost64RecordsConsidered) {
  Response response("example.");
  for (int i = 0; i < 64; ++i) response.Add(ChainNsec3(kH_ns1, NoOptOut()));
  for (const std::string_view hash : {kH_example, kH_x_w, kH_a}) {
    response.Add(ChainNsec3(hash, NoOptOut()));
  }
  EXPECT_EQ(response.Nxdomain("a.c.x.w.example."), DenialOutcome::not_proven);
}

TEST(DenialNsec3, RootZone) {
  // One NSEC3 at the root whose next hash is its own: it covers every other
  // hash. No salt, no extra iterations.
  Nsec3Params p = NoOptOut();
  p.iterations = 0;
  p.salt.clear();
  const std::string root_hash = HashText(".", p);
  Response response(".");
  response.Add(Nsec3(root_hash, root_hash, {kNs, kSoa, kRrsig, kDnskey, kNsec3param}, p, "."));
  EXPECT_EQ(response.Nxdomain("a."), DenialOutcome::proven);
  EXPECT_EQ(response.Nxdomain("b.a."), DenialOutcome::proven);
  EXPECT_EQ(response.Nxdomain("."), DenialOutcome::not_proven);
  EXPECT_EQ(response.Nodata(".", kA), DenialOutcome::proven);
  EXPECT_EQ(response.Nodata(".", kDs), DenialOutcome::proven);
  EXPECT_EQ(response.NoDs("."), DsAbsence::not_a_delegation);
  EXPECT_EQ(response.NoDs("a."), DsAbsence::nonexistent);
}

TEST(DenialNsec3, DeepNamesAreBounded) {
  // A 121-label name: every ancestor is hashed once, then no proof.
  std::string deep;
  for (int i = 0; i < 120; ++i) deep += "a.";
  deep += "example.";
  const Response response = Nsec3Response({kH_example, kH_x_w, kH_a}, NoOptOut());
  EXPECT_EQ(response.Nxdomain(deep), DenialOutcome::not_proven);
}

// ---------------------------------------------------------------------------
// Type bitmaps.

TEST(DenialBitmap, FindsTypesInEveryWindow) {
  const std::string bitmap = Bitmap({kA, kMx, kRrsig, kNsec, kDnskey, 1234, 65535});
  for (const std::uint16_t type :
       {kA, kMx, kRrsig, kNsec, kDnskey, std::uint16_t{1234}, std::uint16_t{65535}}) {
    EXPECT_TRUE(bitmap_has(bytes_of(bitmap), type)) << type;
  }
  for (const std::uint16_t type : {std::uint16_t{0}, kNs, kSoa, kAaaa, kDs, std::uint16_t{1233},
                                   std::uint16_t{256}, std::uint16_t{65534}}) {
    EXPECT_FALSE(bitmap_has(bytes_of(bitmap), type)) << type;
  }
  EXPECT_FALSE(bitmap_has({}, kA));
}

TEST(DenialBitmap, MatchesRfc4034Example) {
  // RFC 4034 4.3: A MX RRSIG NSEC TYPE1234.
  const std::string expected =
      Hex("0006400100000003") + Hex("041b") + std::string(26, '\0') + Hex("20");
  EXPECT_EQ(Bitmap({kA, kMx, kRrsig, kNsec, 1234}), expected);
  EXPECT_TRUE(bitmap_has(bytes_of(expected), 1234));
  EXPECT_TRUE(bitmap_has(bytes_of(expected), kNsec));
  EXPECT_TRUE(bitmap_has(bytes_of(expected), kMx));
  EXPECT_FALSE(bitmap_has(bytes_of(expected), 1235));
  EXPECT_FALSE(bitmap_has(bytes_of(expected), kAaaa));
}

TEST(DenialBitmap, MalformedBitmapsHaveNoTypes) {
  const std::vector<std::string> bad = {
      Hex("00"),      // no length
      Hex("0000"),    // empty window
      Hex("000540"),  // shorter than its length
      Hex("0021") + std::string(33, '\xff'),
      Hex("00014001014000"),  // trailing octet
      Hex("01014000014000"),  // windows out of order
      Hex("00014000014000"),  // window repeated
  };
  for (const std::string& bitmap : bad) {
    EXPECT_FALSE(bitmap_has(bytes_of(bitmap), kA));
    EXPECT_FALSE(bitmap_has(bytes_of(bitmap), kNs));
    EXPECT_FALSE(bitmap_has(bytes_of(bitmap), 257));
  }
}

}  // namespace
}  // namespace dnsgate::dnssec
