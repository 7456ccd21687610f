// Authenticated denial of existence: the NSEC (RFC 4035 5.4, RFC 6840) and
// NSEC3 (RFC 5155 8) proofs a validator checks once the records that make
// them are verified. Pure functions of names and records.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dnssec/dname.hpp"
#include "dnssec/message.hpp"

namespace dnsgate::dnssec {

// NSEC3 with more iterations than this are treated as insecure (RFC 9276).
inline constexpr std::uint16_t kMaxNsec3Iterations = 150;

// The NSEC or NSEC3 records of one response, each already verified as
// signed by `zone`'s keys (the caller guarantees it).
struct DenialRecords {
  DnameView zone;
  std::vector<const Record*> nsec;
  std::vector<const Record*> nsec3;
};

enum class DenialOutcome : std::uint8_t {
  proven,               // the records prove the claim
  opt_out,              // NSEC3: the name falls in an opt-out span (insecure)
  too_many_iterations,  // NSEC3 iterations > kMaxNsec3Iterations (insecure, EDE 27)
  unsupported_hash,     // NSEC3 hash algorithm other than SHA-1 (insecure)
  not_proven,           // the claim does not hold with these records (bogus)
};

// `qname` does not exist and no wildcard could have matched it.
DenialOutcome prove_nxdomain(const DenialRecords& records, DnameView qname);

// `qname` exists without `qtype` (nor CNAME), or is answered by a wildcard
// that has neither (wildcard NODATA).
DenialOutcome prove_nodata(const DenialRecords& records, DnameView qname, std::uint16_t qtype);

// A positive answer for `qname` came from the wildcard at
// "*.closest_encloser": no name closer to `qname` exists (RFC 4035 5.3.4,
// RFC 5155 8.8).
DenialOutcome prove_wildcard_expansion(const DenialRecords& records, DnameView qname,
                                       DnameView closest_encloser);

// What a negative answer to a DS query at `name` proves about it.
enum class DsAbsence : std::uint8_t {
  insecure_delegation,  // `name` is a delegation point without DS (NS, no SOA, no DS)
  not_a_delegation,     // `name` exists (or is an empty non-terminal) and is no zone cut
  nonexistent,          // `name` does not exist at all
  opt_out,              // NSEC3 opt-out covers it: possibly an unsigned delegation (insecure)
  too_many_iterations,  // insecure, EDE 27
  unsupported_hash,     // insecure
  not_proven,           // bogus
};
DsAbsence prove_no_ds(const DenialRecords& records, DnameView name);

// The hash of `name` (canonical wire form) under RFC 5155 5; false when the
// algorithm is not SHA-1 (1). `salt` and the result are raw octets.
bool nsec3_hash(DnameView name, std::uint8_t algorithm, std::uint16_t iterations,
                std::span<const std::uint8_t> salt, std::string& hash);

// True when the NSEC/NSEC3 type bitmap (RFC 4034 4.1.2) has `type`.
bool bitmap_has(std::span<const std::uint8_t> bitmap, std::uint16_t type) noexcept;

}  // namespace dnsgate::dnssec
