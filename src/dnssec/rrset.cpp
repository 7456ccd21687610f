#include "dnssec/rrset.hpp"

#include <algorithm>

#include "dns/wire.hpp"

namespace dnsgate::dnssec {

namespace {

constexpr std::size_t kRrsigFixed = 18;

void append_u16(std::string& out, std::uint16_t value) {
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value & 0xFF));
}

void append_u32(std::string& out, std::uint32_t value) {
  append_u16(out, static_cast<std::uint16_t>(value >> 16));
  append_u16(out, static_cast<std::uint16_t>(value & 0xFFFF));
}

}  // namespace

std::optional<Rrsig> read_rrsig(const Record& record) {
  const std::span<const std::uint8_t> rdata = record.rdata_bytes();
  if (record.type != rrtype::kRrsig || rdata.size() < kRrsigFixed + 1) return std::nullopt;
  Rrsig rrsig;
  rrsig.type_covered = read_u16(rdata, 0);
  rrsig.algorithm = rdata[2];
  rrsig.labels = rdata[3];
  rrsig.original_ttl = read_u32(rdata, 4);
  rrsig.expiration = read_u32(rdata, 8);
  rrsig.inception = read_u32(rdata, 12);
  rrsig.key_tag = read_u16(rdata, 16);
  // The signer was read as a name when the record was, so it is well formed
  // and ends at its root label.
  std::size_t at = kRrsigFixed;
  while (at < rdata.size() && rdata[at] != 0) at += 1 + rdata[at];
  if (at >= rdata.size()) return std::nullopt;
  ++at;
  rrsig.signer = std::string_view(record.rdata).substr(kRrsigFixed, at - kRrsigFixed);
  rrsig.signature = rdata.subspan(at);
  rrsig.signed_head = rdata.first(at);
  if (rrsig.signature.empty()) return std::nullopt;
  return rrsig;
}

std::vector<RrSet> rrsets_of(const Message& message, Section section) {
  std::vector<RrSet> sets;
  auto find = [&](DnameView owner, std::uint16_t type) -> RrSet* {
    for (RrSet& set : sets) {
      if (set.type == type && set.owner == owner) return &set;
    }
    return nullptr;
  };
  for (const Record& record : message.records) {
    if (record.section != section || record.type == rrtype::kOpt || record.type == rrtype::kRrsig) {
      continue;
    }
    RrSet* set = find(record.owner, record.type);
    if (set == nullptr) {
      sets.push_back(RrSet{section, record.owner, record.type, {}, {}});
      set = &sets.back();
    }
    set->records.push_back(&record);
  }
  for (const Record& record : message.records) {
    if (record.section != section || record.type != rrtype::kRrsig || record.rdata.size() < 2) {
      continue;
    }
    const std::uint16_t covered = read_u16(record.rdata_bytes(), 0);
    if (RrSet* set = find(record.owner, covered)) set->rrsigs.push_back(&record);
  }
  return sets;
}

Window validity(const Rrsig& rrsig, std::uint32_t now) noexcept {
  if (static_cast<std::int32_t>(now - rrsig.inception) < 0) return Window::not_yet_valid;
  if (static_cast<std::int32_t>(rrsig.expiration - now) < 0) return Window::expired;
  return Window::inside;
}

bool signed_data(const Rrsig& rrsig, const RrSet& rrset, std::string& out) {
  out.clear();
  const std::size_t owner_labels = label_count(rrset.owner);
  if (rrsig.labels > owner_labels) return false;
  // A wildcard expansion is signed as the wildcard (RFC 4035 5.3.2).
  Dname owner(rrset.owner);
  if (rrsig.labels < owner_labels) {
    owner = wildcard_of(ancestor_with_labels(rrset.owner, rrsig.labels));
  }
  out.append(reinterpret_cast<const char*>(rrsig.signed_head.data()), rrsig.signed_head.size());
  // Canonical RR order: by RDATA as octet strings, duplicates once (RFC 4034 6.3).
  std::vector<const Record*> sorted = rrset.records;
  std::sort(sorted.begin(), sorted.end(),
            [](const Record* a, const Record* b) { return a->rdata < b->rdata; });
  sorted.erase(std::unique(sorted.begin(), sorted.end(),
                           [](const Record* a, const Record* b) { return a->rdata == b->rdata; }),
               sorted.end());
  for (const Record* record : sorted) {
    out += owner;
    append_u16(out, record->type);
    append_u16(out, record->klass);
    append_u32(out, rrsig.original_ttl);
    if (record->rdata.size() > 0xFFFF) return false;
    append_u16(out, static_cast<std::uint16_t>(record->rdata.size()));
    out += record->rdata;
  }
  return true;
}

std::uint32_t trusted_seconds(const Rrsig& rrsig, const RrSet& rrset, std::uint32_t now) noexcept {
  std::uint32_t seconds = rrsig.original_ttl;
  for (const Record* record : rrset.records) seconds = std::min(seconds, record->ttl);
  const auto left = static_cast<std::int32_t>(rrsig.expiration - now);
  seconds = std::min(seconds, left > 0 ? static_cast<std::uint32_t>(left) : 0U);
  return seconds;
}

}  // namespace dnsgate::dnssec
