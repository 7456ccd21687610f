// The validator (DESIGN §9): decides whether an answer is secure, insecure,
// bogus or indeterminate, from the answer itself, the trust anchors and
// the chain material it has learnt. It never waits: when material is
// missing it says which (a DS or DNSKEY RRset to fetch), and the caller
// asks again once the fetched answer has been absorbed. Pure computation
// over its cache; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dnssec/denial.hpp"
#include "dnssec/key_cache.hpp"
#include "dnssec/message.hpp"
#include "dnssec/rrset.hpp"
#include "dnssec/trust_anchor.hpp"
#include "dnssec/verdict.hpp"

namespace dnsgate::dnssec {

// Chain material to fetch: the DS or DNSKEY RRset of `name`.
struct ChainNeed {
  Dname name;
  std::uint16_t type = 0;
  bool operator==(const ChainNeed&) const = default;
};

struct Evaluation {
  bool done = false;
  Verdict verdict;  // when done
  ChainNeed need;   // when not

  static Evaluation finished(Verdict verdict) { return {true, verdict, {}}; }
  static Evaluation fetch(DnameView name, std::uint16_t type) {
    return {false, {}, ChainNeed{Dname(name), type}};
  }
};

struct ValidatorCounters {
  std::uint64_t verifications = 0;     // signatures checked
  std::uint64_t valid_signatures = 0;  // of those, the ones that verified
  std::uint64_t remembered = 0;        // signatures found verified already (no crypto)
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;
};

class Validator {
 public:
  Validator(std::vector<TrustAnchor> anchors, std::size_t key_cache_entries);

  // The verdict on a workload's answer (already matched to its query).
  Evaluation check_answer(const Message& answer, std::uint32_t now);

  // Validates a fetched DS or DNSKEY answer and keeps what it proves; the
  // verdict is the material's own.
  Evaluation absorb(const ChainNeed& fetched, const Message& answer, std::uint32_t now);

  // A fetch that got no answer: the waiters see indeterminate for a while.
  void fetch_failed(const ChainNeed& fetched, std::uint32_t now);

  std::size_t cached() const noexcept { return cache_.size(); }
  const ValidatorCounters& counters() const noexcept { return counters_; }

 private:
  struct SignedSet {
    Evaluation evaluation;
    DnameView signer;        // the zone whose key verified it (secure only)
    std::size_t labels = 0;  // the RRSIG's labels field (wildcard when < owner's)
    std::uint32_t seconds = 0;
  };

  const TrustAnchor* anchor_for(DnameView name) const noexcept;
  Evaluation zone_keys(DnameView zone, std::uint32_t now, const std::vector<PublicKey>*& keys);
  Evaluation zone_of(DnameView name, std::uint32_t now);
  SignedSet verify_rrset(const RrSet& rrset, std::uint32_t now, bool signer_above_owner = false);
  SignedSet verify_with(const RrSet& rrset, const std::vector<PublicKey>& keys, DnameView zone,
                        std::uint32_t now);
  Evaluation prove_negative(const Message& answer, DnameView sname, bool nxdomain,
                            std::uint32_t now);
  Evaluation prove_wildcard(const Message& answer, DnameView sname, std::size_t labels,
                            std::uint32_t now);
  Evaluation denial_records(const Message& answer, std::vector<RrSet>& sets, DenialRecords& records,
                            std::uint32_t now);
  Evaluation absorb_ds(const ChainNeed& fetched, const Message& answer, std::uint32_t now);
  Evaluation absorb_dnskey(const ChainNeed& fetched, const Message& answer, std::uint32_t now);
  Evaluation store_failure(const ChainNeed& fetched, Verdict verdict, std::uint32_t now);

  std::vector<TrustAnchor> anchors_;
  KeyCache cache_;
  SignatureMemo verified_;
  ValidatorCounters counters_;
  std::string scratch_;
  std::string memo_key_;
};

}  // namespace dnsgate::dnssec
