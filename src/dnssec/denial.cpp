#include "dnssec/denial.hpp"

// libdnssec's headers declare C functions without extern "C".
extern "C" {
#include <libdnssec/binary.h>
#include <libdnssec/error.h>
#include <libdnssec/nsec.h>
}

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dnsgate::dnssec {

namespace {

// At most this many NSEC (and NSEC3) records of a response are looked at.
constexpr std::size_t kMaxRecords = 64;
constexpr std::uint8_t kSha1 = 1;
constexpr std::size_t kSha1Length = 20;
constexpr std::uint8_t kOptOutFlag = 0x01;
constexpr std::size_t kMaxNameLength = 255;
constexpr std::size_t kMaxLabelLength = 63;

using Bytes = std::span<const std::uint8_t>;

// The length of the whole, uncompressed wire name at the start of `data`,
// its root label included; 0 when there is none (a label over 63 octets, a
// compression pointer, more than 255 octets or kMaxLabels labels, no root).
std::size_t wire_name_length(Bytes data) noexcept {
  std::size_t i = 0;
  std::size_t labels = 0;
  while (i < data.size() && i < kMaxNameLength) {
    const std::size_t length = data[i];
    if (length == 0) return i + 1;
    if (length > kMaxLabelLength || ++labels > kMaxLabels) return 0;
    i += 1 + length;
  }
  return 0;
}

bool is_wire_name(DnameView name) noexcept {
  return !name.empty() && wire_name_length(bytes_of(name)) == name.size();
}

Dname lowered(DnameView name) {
  Dname out(name);
  lowercase_wire_name({reinterpret_cast<std::uint8_t*>(out.data()), out.size()});
  return out;
}

bool is_root(DnameView name) noexcept {
  return name.size() == 1 && name[0] == 0;
}

// `name` is a proper descendant of `ancestor`.
bool is_below(DnameView name, DnameView ancestor) noexcept {
  return label_count(name) > label_count(ancestor) && is_at_or_below(name, ancestor);
}

// The longest name both `a` and `b` are at or below (whole labels).
DnameView common_ancestor(DnameView a, DnameView b) noexcept {
  const std::size_t la = label_count(a);
  const std::size_t lb = label_count(b);
  a = strip_labels(a, la > lb ? la - lb : 0);
  b = strip_labels(b, lb > la ? lb - la : 0);
  for (std::size_t walked = 0; a != b && walked <= kMaxLabels; ++walked) {
    a = parent_of(a);
    b = parent_of(b);
  }
  return a;
}

// RFC 4034 4.1.2: window blocks in increasing order, each 1 to 32 octets.
bool bitmap_well_formed(Bytes bitmap) noexcept {
  std::size_t i = 0;
  int last_window = -1;
  while (i < bitmap.size()) {
    if (bitmap.size() - i < 2) return false;
    const int window = bitmap[i];
    const std::size_t length = bitmap[i + 1];
    if (window <= last_window || length == 0 || length > 32 || bitmap.size() - i - 2 < length) {
      return false;
    }
    last_window = window;
    i += 2 + length;
  }
  return true;
}

// What the node that owns `bitmap` says about a NODATA answer for `qtype`
// at it (RFC 4035 5.4, RFC 6840 4.4, RFC 5155 8.5 and 8.6).
bool proves_nodata_at(Bytes bitmap, std::uint16_t qtype, bool at_root) noexcept {
  if (bitmap_has(bitmap, qtype) || bitmap_has(bitmap, rrtype::kCname)) return false;
  const bool ns = bitmap_has(bitmap, rrtype::kNs);
  const bool soa = bitmap_has(bitmap, rrtype::kSoa);
  // The parent side of a zone cut: the answer would have been a referral.
  if (qtype != rrtype::kDs && ns && !soa) return false;
  // A child apex: its DS lives in the parent, which this zone cannot deny.
  if (qtype == rrtype::kDs && soa && !at_root) return false;
  return true;
}

// ---------------------------------------------------------------------------
// NSEC

struct Nsec {
  Dname owner;  // lower case
  Dname next;   // lower case
  Bytes bitmap;

  bool has(std::uint16_t type) const noexcept { return bitmap_has(bitmap, type); }
  // NS without SOA (a zone cut) or DNAME: says nothing about names below.
  bool hides_descendants() const noexcept {
    return has(rrtype::kDname) || (has(rrtype::kNs) && !has(rrtype::kSoa));
  }
};

class NsecChain {
 public:
  NsecChain(const DenialRecords& records, DnameView zone) : zone_(zone) {
    std::size_t seen = 0;
    for (const Record* record : records.nsec) {
      if (++seen > kMaxRecords) break;
      if (record == nullptr || record->type != rrtype::kNsec) continue;
      Nsec nsec{lowered(record->owner), {}, {}};
      if (!is_wire_name(nsec.owner) || !is_at_or_below(nsec.owner, zone_)) continue;
      const Bytes rdata = record->rdata_bytes();
      const std::size_t next_length = wire_name_length(rdata);
      if (next_length == 0) continue;
      nsec.next = lowered(DnameView(reinterpret_cast<const char*>(rdata.data()), next_length));
      if (!is_at_or_below(nsec.next, zone_)) continue;
      nsec.bitmap = rdata.subspan(next_length);
      if (!bitmap_well_formed(nsec.bitmap)) continue;
      nsecs_.push_back(std::move(nsec));
    }
  }

  const std::vector<Nsec>& records() const noexcept { return nsecs_; }

  const Nsec* matching(DnameView name) const noexcept {
    for (const Nsec& nsec : nsecs_) {
      if (nsec.owner == name) return &nsec;
    }
    return nullptr;
  }

  // owner < name < next in canonical order, or owner < name for the last
  // NSEC of the zone (next is the apex); never across a cut or a DNAME.
  bool covers(const Nsec& nsec, DnameView name) const noexcept {
    if (!is_at_or_below(name, zone_)) return false;
    if (is_below(name, nsec.owner) && nsec.hides_descendants()) return false;
    if (canonical_compare(nsec.owner, name) >= 0) return false;
    if (canonical_compare(nsec.owner, nsec.next) < 0) return canonical_compare(name, nsec.next) < 0;
    return nsec.next == zone_;
  }

  bool any_covers(DnameView name) const noexcept {
    return std::any_of(nsecs_.begin(), nsecs_.end(),
                       [&](const Nsec& nsec) { return covers(nsec, name); });
  }

 private:
  DnameView zone_;
  std::vector<Nsec> nsecs_;
};

// `nsec` covers `qname` and shows an empty non-terminal at it: the next
// name is below `qname`.
bool shows_empty_non_terminal(const Nsec& nsec, DnameView qname) noexcept {
  return is_below(nsec.next, qname);
}

// The closest encloser of `qname` that an NSEC covering it shows (RFC 4035
// 5.4): the longer of its common ancestors with the owner and next names.
DnameView nsec_closest_encloser(const Nsec& nsec, DnameView qname) noexcept {
  const DnameView by_owner = common_ancestor(qname, nsec.owner);
  const DnameView by_next = common_ancestor(qname, nsec.next);
  return label_count(by_next) > label_count(by_owner) ? by_next : by_owner;
}

// Calls `accept` with the closest encloser each NSEC covering `qname` shows
// (not as an empty non-terminal) when that is a proper ancestor of `qname`;
// true as soon as `accept` is.
template <typename Accept>
bool for_each_nonexistence(const NsecChain& chain, DnameView qname, Accept accept) {
  for (const Nsec& nsec : chain.records()) {
    if (!chain.covers(nsec, qname) || shows_empty_non_terminal(nsec, qname)) continue;
    const DnameView encloser = nsec_closest_encloser(nsec, qname);
    if (!is_below(qname, encloser)) continue;
    if (accept(encloser)) return true;
  }
  return false;
}

DenialOutcome nsec_nxdomain(const NsecChain& chain, DnameView qname) {
  if (chain.matching(qname) != nullptr) return DenialOutcome::not_proven;
  const bool proven = for_each_nonexistence(
      chain, qname, [&](DnameView encloser) { return chain.any_covers(wildcard_of(encloser)); });
  return proven ? DenialOutcome::proven : DenialOutcome::not_proven;
}

DenialOutcome nsec_nodata(const NsecChain& chain, DnameView qname, std::uint16_t qtype) {
  if (const Nsec* match = chain.matching(qname)) {
    return proves_nodata_at(match->bitmap, qtype, is_root(qname)) ? DenialOutcome::proven
                                                                  : DenialOutcome::not_proven;
  }
  for (const Nsec& nsec : chain.records()) {
    if (chain.covers(nsec, qname) && shows_empty_non_terminal(nsec, qname)) {
      return DenialOutcome::proven;
    }
  }
  const bool proven = for_each_nonexistence(chain, qname, [&](DnameView encloser) {
    const Nsec* wildcard = chain.matching(wildcard_of(encloser));
    return wildcard != nullptr && proves_nodata_at(wildcard->bitmap, qtype, false);
  });
  return proven ? DenialOutcome::proven : DenialOutcome::not_proven;
}

DenialOutcome nsec_wildcard_expansion(const NsecChain& chain, DnameView qname,
                                      DnameView closest_encloser) {
  if (chain.matching(qname) != nullptr) return DenialOutcome::not_proven;
  const bool proven = for_each_nonexistence(
      chain, qname, [&](DnameView encloser) { return encloser == closest_encloser; });
  return proven ? DenialOutcome::proven : DenialOutcome::not_proven;
}

// The DS answer a node with `bitmap` at `name` gives (matching NSEC/NSEC3).
DsAbsence ds_absence_at(Bytes bitmap, DnameView name) noexcept {
  if (bitmap_has(bitmap, rrtype::kDs)) return DsAbsence::not_proven;
  if (bitmap_has(bitmap, rrtype::kSoa)) {
    // The child's apex record: only the parent can deny the DS.
    return is_root(name) ? DsAbsence::not_a_delegation : DsAbsence::not_proven;
  }
  if (bitmap_has(bitmap, rrtype::kNs)) return DsAbsence::insecure_delegation;
  return DsAbsence::not_a_delegation;
}

// A wildcard that would answer for a name: no DS, no cut (RFC 4592 4.2).
bool wildcard_denies_ds(Bytes bitmap) noexcept {
  return !bitmap_has(bitmap, rrtype::kDs) && !bitmap_has(bitmap, rrtype::kNs);
}

DsAbsence nsec_no_ds(const NsecChain& chain, DnameView name) {
  if (const Nsec* match = chain.matching(name)) return ds_absence_at(match->bitmap, name);
  for (const Nsec& nsec : chain.records()) {
    if (chain.covers(nsec, name) && shows_empty_non_terminal(nsec, name)) {
      return DsAbsence::not_a_delegation;
    }
  }
  DsAbsence result = DsAbsence::not_proven;
  for_each_nonexistence(chain, name, [&](DnameView encloser) {
    const Dname wildcard = wildcard_of(encloser);
    if (chain.any_covers(wildcard)) {
      result = DsAbsence::nonexistent;
      return true;
    }
    const Nsec* match = chain.matching(wildcard);
    if (match != nullptr && wildcard_denies_ds(match->bitmap)) {
      result = DsAbsence::not_a_delegation;
      return true;
    }
    return false;
  });
  return result;
}

// ---------------------------------------------------------------------------
// NSEC3

// Frees what libdnssec allocated into a dnssec_binary_t.
struct BinaryGuard {
  dnssec_binary_t* binary;
  explicit BinaryGuard(dnssec_binary_t* b) noexcept : binary(b) {}
  BinaryGuard(const BinaryGuard&) = delete;
  BinaryGuard& operator=(const BinaryGuard&) = delete;
  ~BinaryGuard() { dnssec_binary_free(binary); }
};

// RFC 4648 7 (base32hex, no padding), lower or upper case; false unless
// every character is in the alphabet and the unused trailing bits are 0.
bool base32hex_decode(std::string_view text, std::string& out) {
  out.clear();
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    int value = -1;
    if (c >= '0' && c <= '9') value = c - '0';
    if (c >= 'a' && c <= 'v') value = c - 'a' + 10;
    if (c >= 'A' && c <= 'V') value = c - 'A' + 10;
    if (value < 0) return false;
    buffer = (buffer << 5) | static_cast<std::uint32_t>(value);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return bits < 5 && (buffer & ((1U << bits) - 1)) == 0;
}

struct Nsec3 {
  std::string owner_hash;  // raw octets
  std::uint8_t algorithm = 0;
  std::uint8_t flags = 0;
  std::uint16_t iterations = 0;
  Bytes salt;
  Bytes next_hash;
  Bytes bitmap;

  bool has(std::uint16_t type) const noexcept { return bitmap_has(bitmap, type); }
  bool opt_out() const noexcept { return (flags & kOptOutFlag) != 0; }
  bool same_parameters(const Nsec3& other) const noexcept {
    return algorithm == other.algorithm && iterations == other.iterations &&
           std::equal(salt.begin(), salt.end(), other.salt.begin(), other.salt.end());
  }
};

std::optional<Nsec3> parse_nsec3(const Record& record, DnameView zone) {
  if (record.type != rrtype::kNsec3) return std::nullopt;
  const Dname owner = lowered(record.owner);
  if (!is_wire_name(owner) || label_count(owner) != label_count(zone) + 1 ||
      parent_of(owner) != zone) {
    return std::nullopt;
  }
  Nsec3 nsec3;
  const auto label_length = static_cast<std::uint8_t>(owner[0]);
  if (!base32hex_decode(DnameView(owner).substr(1, label_length), nsec3.owner_hash)) {
    return std::nullopt;
  }
  const Bytes rdata = record.rdata_bytes();
  if (rdata.size() < 5) return std::nullopt;
  nsec3.algorithm = rdata[0];
  nsec3.flags = rdata[1];
  nsec3.iterations = static_cast<std::uint16_t>((rdata[2] << 8) | rdata[3]);
  const std::size_t salt_length = rdata[4];
  std::size_t at = 5;
  if (rdata.size() - at < salt_length + 1) return std::nullopt;
  nsec3.salt = rdata.subspan(at, salt_length);
  at += salt_length;
  const std::size_t hash_length = rdata[at++];
  if (rdata.size() - at < hash_length) return std::nullopt;
  nsec3.next_hash = rdata.subspan(at, hash_length);
  at += hash_length;
  nsec3.bitmap = rdata.subspan(at);
  // RFC 5155 8.2: flags other than opt-out make the record unusable.
  if ((nsec3.flags & ~kOptOutFlag) != 0) return std::nullopt;
  if (hash_length == 0 || nsec3.owner_hash.size() != hash_length) return std::nullopt;
  if (nsec3.algorithm == kSha1 && hash_length != kSha1Length) return std::nullopt;
  if (!bitmap_well_formed(nsec3.bitmap)) return std::nullopt;
  return nsec3;
}

int compare_hash(Bytes a, Bytes b) noexcept {
  const auto [at_a, at_b] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  if (at_a != a.end() && at_b != b.end()) return *at_a < *at_b ? -1 : 1;
  if (a.size() == b.size()) return 0;
  return a.size() < b.size() ? -1 : 1;
}

class Nsec3Chain {
 public:
  Nsec3Chain(const DenialRecords& records, DnameView zone) : zone_(zone) {
    std::vector<Nsec3> parsed;
    std::size_t seen = 0;
    for (const Record* record : records.nsec3) {
      if (++seen > kMaxRecords) break;
      if (record == nullptr) continue;
      if (auto nsec3 = parse_nsec3(*record, zone_)) parsed.push_back(std::move(*nsec3));
    }
    if (parsed.empty()) return;
    // The first SHA-1 record sets the parameters; the others must share them.
    const auto reference = std::find_if(parsed.begin(), parsed.end(),
                                        [](const Nsec3& n) { return n.algorithm == kSha1; });
    if (reference == parsed.end()) {
      const bool too_many = std::any_of(parsed.begin(), parsed.end(), [](const Nsec3& n) {
        return n.iterations > kMaxNsec3Iterations;
      });
      status_ = too_many ? DenialOutcome::too_many_iterations : DenialOutcome::unsupported_hash;
      return;
    }
    if (reference->iterations > kMaxNsec3Iterations) {
      status_ = DenialOutcome::too_many_iterations;
      return;
    }
    const Nsec3 parameters = *reference;
    for (Nsec3& nsec3 : parsed) {
      if (nsec3.same_parameters(parameters)) nsec3s_.push_back(std::move(nsec3));
    }
    algorithm_ = parameters.algorithm;
    iterations_ = parameters.iterations;
    salt_ = parameters.salt;
    status_ = DenialOutcome::proven;
  }

  // proven when the chain is usable; otherwise why not.
  DenialOutcome status() const noexcept { return status_; }
  DnameView zone() const noexcept { return zone_; }

  std::optional<std::string> hash(DnameView name) const {
    std::string out;
    if (!nsec3_hash(name, algorithm_, iterations_, salt_, out)) return std::nullopt;
    return out;
  }

  const Nsec3* matching(DnameView name) const {
    const auto hashed = hash(name);
    if (!hashed) return nullptr;
    for (const Nsec3& nsec3 : nsec3s_) {
      if (nsec3.owner_hash == *hashed) return &nsec3;
    }
    return nullptr;
  }

  // The hash of `name` falls strictly between an owner and its next hash
  // (RFC 5155 8.3), the last record of the chain wrapping around.
  const Nsec3* covering(DnameView name) const {
    const auto hashed = hash(name);
    if (!hashed) return nullptr;
    const Bytes h = bytes_of(*hashed);
    for (const Nsec3& nsec3 : nsec3s_) {
      const Bytes owner = bytes_of(nsec3.owner_hash);
      if (h.size() != owner.size()) continue;
      const bool after_owner = compare_hash(owner, h) < 0;
      const bool before_next = compare_hash(h, nsec3.next_hash) < 0;
      const bool covers = compare_hash(owner, nsec3.next_hash) < 0 ? after_owner && before_next
                                                                   : after_owner || before_next;
      if (covers) return &nsec3;
    }
    return nullptr;
  }

 private:
  DnameView zone_;
  std::vector<Nsec3> nsec3s_;
  DenialOutcome status_ = DenialOutcome::not_proven;
  std::uint8_t algorithm_ = 0;
  std::uint16_t iterations_ = 0;
  Bytes salt_;
};

struct EncloserProof {
  DnameView closest_encloser;
  const Nsec3* next_closer_cover = nullptr;
};

// RFC 5155 8.3: the longest ancestor of `qname` with a matching NSEC3 (not
// `qname` itself, not a zone cut nor a DNAME), and an NSEC3 covering the
// next closer name.
std::optional<EncloserProof> closest_encloser_proof(const Nsec3Chain& chain, DnameView qname) {
  const std::size_t zone_labels = label_count(chain.zone());
  const std::size_t qname_labels = label_count(qname);
  if (qname_labels <= zone_labels || qname_labels > kMaxLabels) return std::nullopt;
  for (std::size_t labels = qname_labels + 1; labels-- > zone_labels;) {
    const DnameView candidate = ancestor_with_labels(qname, labels);
    const Nsec3* match = chain.matching(candidate);
    if (match == nullptr) continue;
    if (labels == qname_labels) return std::nullopt;  // qname exists
    if (match->has(rrtype::kDname) || (match->has(rrtype::kNs) && !match->has(rrtype::kSoa))) {
      return std::nullopt;
    }
    const Nsec3* cover = chain.covering(ancestor_with_labels(qname, labels + 1));
    if (cover == nullptr) return std::nullopt;
    return EncloserProof{candidate, cover};
  }
  return std::nullopt;
}

DenialOutcome nsec3_nxdomain(const Nsec3Chain& chain, DnameView qname) {
  const auto proof = closest_encloser_proof(chain, qname);
  if (!proof || chain.covering(wildcard_of(proof->closest_encloser)) == nullptr) {
    return DenialOutcome::not_proven;
  }
  // An opt-out span may hide an unsigned delegation at the name.
  return proof->next_closer_cover->opt_out() ? DenialOutcome::opt_out : DenialOutcome::proven;
}

DenialOutcome nsec3_nodata(const Nsec3Chain& chain, DnameView qname, std::uint16_t qtype) {
  if (const Nsec3* match = chain.matching(qname)) {
    return proves_nodata_at(match->bitmap, qtype, is_root(qname)) ? DenialOutcome::proven
                                                                  : DenialOutcome::not_proven;
  }
  const auto proof = closest_encloser_proof(chain, qname);
  if (!proof) return DenialOutcome::not_proven;
  const bool opt_out = proof->next_closer_cover->opt_out();
  if (const Nsec3* wildcard = chain.matching(wildcard_of(proof->closest_encloser))) {
    if (!proves_nodata_at(wildcard->bitmap, qtype, false)) return DenialOutcome::not_proven;
    return opt_out ? DenialOutcome::opt_out : DenialOutcome::proven;
  }
  // RFC 5155 8.6 (and for other types, as Unbound does): no match, the next
  // closer name in an opt-out span: possibly an unsigned delegation.
  return opt_out ? DenialOutcome::opt_out : DenialOutcome::not_proven;
}

DenialOutcome nsec3_wildcard_expansion(const Nsec3Chain& chain, DnameView qname,
                                       DnameView closest_encloser) {
  const Nsec3* cover =
      chain.covering(ancestor_with_labels(qname, label_count(closest_encloser) + 1));
  if (cover == nullptr) return DenialOutcome::not_proven;
  return cover->opt_out() ? DenialOutcome::opt_out : DenialOutcome::proven;
}

DsAbsence nsec3_no_ds(const Nsec3Chain& chain, DnameView name) {
  if (const Nsec3* match = chain.matching(name)) return ds_absence_at(match->bitmap, name);
  const auto proof = closest_encloser_proof(chain, name);
  if (!proof) return DsAbsence::not_proven;
  if (proof->next_closer_cover->opt_out()) return DsAbsence::opt_out;
  const Dname wildcard = wildcard_of(proof->closest_encloser);
  if (chain.covering(wildcard) != nullptr) return DsAbsence::nonexistent;
  const Nsec3* match = chain.matching(wildcard);
  if (match != nullptr && wildcard_denies_ds(match->bitmap)) return DsAbsence::not_a_delegation;
  return DsAbsence::not_proven;
}

DsAbsence to_ds_absence(DenialOutcome outcome) noexcept {
  switch (outcome) {
    case DenialOutcome::too_many_iterations:
      return DsAbsence::too_many_iterations;
    case DenialOutcome::unsupported_hash:
      return DsAbsence::unsupported_hash;
    case DenialOutcome::opt_out:
      return DsAbsence::opt_out;
    case DenialOutcome::proven:
    case DenialOutcome::not_proven:
      break;
  }
  return DsAbsence::not_proven;
}

// The zone and the name, lower-cased and checked; nullopt when either is no
// whole wire name or the name is outside the zone.
struct Names {
  Dname zone;
  Dname name;
};
std::optional<Names> names_of(const DenialRecords& records, DnameView name) {
  Names out{lowered(records.zone), lowered(name)};
  if (!is_wire_name(out.zone) || !is_wire_name(out.name) || !is_at_or_below(out.name, out.zone)) {
    return std::nullopt;
  }
  return out;
}

// Runs `by_nsec` on the NSEC records when there are any, then `by_nsec3` on
// the NSEC3 records when the NSEC ones proved nothing.
template <typename ByNsec, typename ByNsec3>
DenialOutcome prove(const DenialRecords& records, const Names& names, ByNsec by_nsec,
                    ByNsec3 by_nsec3) {
  DenialOutcome outcome = DenialOutcome::not_proven;
  if (!records.nsec.empty()) {
    outcome = by_nsec(NsecChain(records, names.zone));
    if (outcome != DenialOutcome::not_proven) return outcome;
  }
  if (!records.nsec3.empty()) {
    const Nsec3Chain chain(records, names.zone);
    if (chain.status() != DenialOutcome::proven) return chain.status();
    outcome = by_nsec3(chain);
  }
  return outcome;
}

}  // namespace

DenialOutcome prove_nxdomain(const DenialRecords& records, DnameView qname) {
  const auto names = names_of(records, qname);
  if (!names) return DenialOutcome::not_proven;
  return prove(
      records, *names, [&](const NsecChain& chain) { return nsec_nxdomain(chain, names->name); },
      [&](const Nsec3Chain& chain) { return nsec3_nxdomain(chain, names->name); });
}

DenialOutcome prove_nodata(const DenialRecords& records, DnameView qname, std::uint16_t qtype) {
  const auto names = names_of(records, qname);
  if (!names) return DenialOutcome::not_proven;
  return prove(
      records, *names,
      [&](const NsecChain& chain) { return nsec_nodata(chain, names->name, qtype); },
      [&](const Nsec3Chain& chain) { return nsec3_nodata(chain, names->name, qtype); });
}

DenialOutcome prove_wildcard_expansion(const DenialRecords& records, DnameView qname,
                                       DnameView closest_encloser) {
  const auto names = names_of(records, qname);
  if (!names) return DenialOutcome::not_proven;
  const Dname encloser = lowered(closest_encloser);
  if (!is_wire_name(encloser) || !is_at_or_below(encloser, names->zone) ||
      !is_below(names->name, encloser)) {
    return DenialOutcome::not_proven;
  }
  return prove(
      records, *names,
      [&](const NsecChain& chain) { return nsec_wildcard_expansion(chain, names->name, encloser); },
      [&](const Nsec3Chain& chain) {
        return nsec3_wildcard_expansion(chain, names->name, encloser);
      });
}

DsAbsence prove_no_ds(const DenialRecords& records, DnameView name) {
  const auto names = names_of(records, name);
  if (!names) return DsAbsence::not_proven;
  if (!records.nsec.empty()) {
    const DsAbsence absence = nsec_no_ds(NsecChain(records, names->zone), names->name);
    if (absence != DsAbsence::not_proven) return absence;
  }
  if (!records.nsec3.empty()) {
    const Nsec3Chain chain(records, names->zone);
    if (chain.status() != DenialOutcome::proven) return to_ds_absence(chain.status());
    return nsec3_no_ds(chain, names->name);
  }
  return DsAbsence::not_proven;
}

bool nsec3_hash(DnameView name, std::uint8_t algorithm, std::uint16_t iterations,
                std::span<const std::uint8_t> salt, std::string& hash) {
  hash.clear();
  if (algorithm != kSha1 || name.empty()) return false;
  Dname input = lowered(name);
  const dnssec_binary_t data{input.size(), reinterpret_cast<std::uint8_t*>(input.data())};
  dnssec_nsec3_params_t params{};
  params.algorithm = DNSSEC_NSEC3_ALGORITHM_SHA1;
  params.iterations = iterations;
  // libdnssec only reads the salt.
  params.salt = {salt.size(), const_cast<std::uint8_t*>(salt.data())};
  dnssec_binary_t out{};
  const BinaryGuard guard{&out};
  const int result = dnssec_nsec3_hash(&data, &params, &out);
  if (result != DNSSEC_EOK || out.data == nullptr || out.size != kSha1Length) return false;
  hash.assign(reinterpret_cast<const char*>(out.data), out.size);
  return true;
}

bool bitmap_has(std::span<const std::uint8_t> bitmap, std::uint16_t type) noexcept {
  if (!bitmap_well_formed(bitmap)) return false;
  const auto window = static_cast<std::uint8_t>(type >> 8);
  const std::size_t octet = (type & 0xFF) / 8;
  const auto mask = static_cast<std::uint8_t>(0x80U >> (type % 8));
  std::size_t i = 0;
  while (i + 1 < bitmap.size()) {
    const std::size_t length = bitmap[i + 1];
    if (bitmap[i] == window) return octet < length && (bitmap[i + 2 + octet] & mask) != 0;
    i += 2 + length;
  }
  return false;
}

}  // namespace dnsgate::dnssec
