// RRsets and their signatures: grouping a response's records, reading an
// RRSIG, building what it signs (RFC 4034 3.1.8.1, 6.2, 6.3) and checking
// it with a key.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dnssec/crypto.hpp"
#include "dnssec/message.hpp"

namespace dnsgate::dnssec {

struct Rrsig {
  std::uint16_t type_covered = 0;
  std::uint8_t algorithm = 0;
  std::uint8_t labels = 0;
  std::uint32_t original_ttl = 0;
  std::uint32_t expiration = 0;
  std::uint32_t inception = 0;
  std::uint16_t key_tag = 0;
  DnameView signer;                           // canonical (a view into the record)
  std::span<const std::uint8_t> signature;    // into the record
  std::span<const std::uint8_t> signed_head;  // RDATA up to the signature
};
std::optional<Rrsig> read_rrsig(const Record& record);

// The records of one section that share owner, type and class, and the
// RRSIGs over them.
struct RrSet {
  Section section = Section::answer;
  DnameView owner;
  std::uint16_t type = 0;
  std::vector<const Record*> records;
  std::vector<const Record*> rrsigs;
};

// The RRsets of `section` (RRSIGs attached to what they cover, not RRsets
// of their own; OPT left out), in order of first appearance.
std::vector<RrSet> rrsets_of(const Message& message, Section section);

// RFC 1982 serial arithmetic on 32-bit seconds, as RFC 4035 5.3.1 wants.
enum class Window : std::uint8_t { inside, expired, not_yet_valid };
Window validity(const Rrsig& rrsig, std::uint32_t now) noexcept;

// The octets `rrsig` signs for `rrset` into `out` (cleared first); false
// when the RRSIG's labels field cannot describe the owner.
bool signed_data(const Rrsig& rrsig, const RrSet& rrset, std::string& out);

// The seconds an RRset validated by `rrsig` may be trusted from `now`:
// the smallest of its TTL, the original TTL and the time to expiration.
std::uint32_t trusted_seconds(const Rrsig& rrsig, const RrSet& rrset, std::uint32_t now) noexcept;

}  // namespace dnsgate::dnssec
