#include "dnssec/validator.hpp"

#include <algorithm>

namespace dnsgate::dnssec {

namespace {

constexpr std::size_t kMaxChainLinks = 16;  // CNAME and DNAME steps in one answer

RrSet* find_set(std::vector<RrSet>& sets, DnameView owner, std::uint16_t type) {
  for (RrSet& set : sets) {
    if (set.type == type && set.owner == owner) return &set;
  }
  return nullptr;
}

// An insecure verdict outranks secure; the first reason given is kept.
void merge(Verdict& overall, const Verdict& part) {
  if (part.state == DnssecState::insecure && overall.state == DnssecState::secure) overall = part;
}

Verdict from_denial(DenialOutcome outcome) {
  switch (outcome) {
    case DenialOutcome::proven:
      return Verdict::secure();
    case DenialOutcome::opt_out:
      return Verdict::insecure(ede::kNone, "NSEC3 opt-out");
    case DenialOutcome::too_many_iterations:
      return Verdict::insecure(ede::kUnsupportedNsec3Iterations, "NSEC3 iterations above 150");
    case DenialOutcome::unsupported_hash:
      return Verdict::insecure(ede::kNone, "unsupported NSEC3 hash");
    case DenialOutcome::not_proven:
      break;
  }
  return Verdict::bogus(ede::kNsecMissing, "denial of existence not proven");
}

bool is_denial_type(std::uint16_t type) {
  return type == rrtype::kNsec || type == rrtype::kNsec3 || type == rrtype::kSoa;
}

// Why no anchor record of `anchor` can be used, as the EDE of an insecure
// verdict; kNone when one can.
std::uint16_t unusable_anchor(const TrustAnchor& anchor) {
  bool algorithm_ok = false;
  for (const std::string& ds : anchor.ds) {
    if (ds.size() < 4) continue;
    const auto algorithm = static_cast<std::uint8_t>(ds[2]);
    const auto digest = static_cast<std::uint8_t>(ds[3]);
    if (algorithm_supported(algorithm)) {
      algorithm_ok = true;
      if (digest_supported(digest)) return ede::kNone;
    }
  }
  for (const std::string& key : anchor.dnskeys) {
    if (key.size() >= 4 && algorithm_supported(static_cast<std::uint8_t>(key[3]))) {
      return ede::kNone;
    }
  }
  return algorithm_ok ? ede::kUnsupportedDsDigest : ede::kUnsupportedDnskeyAlgorithm;
}

std::uint32_t capped(std::uint32_t seconds) {
  return std::min(seconds, kMaxChainSeconds);
}

}  // namespace

Validator::Validator(std::vector<TrustAnchor> anchors, std::size_t key_cache_entries)
    : anchors_(std::move(anchors)), cache_(key_cache_entries), verified_(key_cache_entries) {
  init_crypto();
}

const TrustAnchor* Validator::anchor_for(DnameView name) const noexcept {
  const TrustAnchor* best = nullptr;
  for (const TrustAnchor& anchor : anchors_) {
    if (is_at_or_below(name, anchor.zone) &&
        (best == nullptr || anchor.zone.size() > best->zone.size())) {
      best = &anchor;
    }
  }
  return best;
}

Evaluation Validator::zone_keys(DnameView zone, std::uint32_t now,
                                const std::vector<PublicKey>*& keys) {
  keys = nullptr;
  const TrustAnchor* anchor = anchor_for(zone);
  if (anchor == nullptr) return Evaluation::finished(Verdict::insecure(ede::kNone, "no anchor"));
  if (const ChainEntry* entry = cache_.find(zone, rrtype::kDnskey, now)) {
    ++counters_.cache_hits;
    if (entry->state == ChainEntry::State::secure) {
      keys = &entry->keys;
      return Evaluation::finished(Verdict::secure());
    }
    return Evaluation::finished(entry->verdict);
  }
  ++counters_.cache_misses;
  if (zone == anchor->zone) {
    if (const std::uint16_t code = unusable_anchor(*anchor); code != ede::kNone) {
      return Evaluation::finished(Verdict::insecure(code, "trust anchor of unsupported algorithm"));
    }
    return Evaluation::fetch(zone, rrtype::kDnskey);
  }
  const ChainEntry* ds = cache_.find(zone, rrtype::kDs, now);
  if (ds == nullptr) return Evaluation::fetch(zone, rrtype::kDs);
  switch (ds->state) {
    case ChainEntry::State::secure:
      return Evaluation::fetch(zone, rrtype::kDnskey);
    case ChainEntry::State::not_a_cut:
      return Evaluation::finished(Verdict::bogus(ede::kNone, "the signer is not a zone"));
    case ChainEntry::State::insecure:
    case ChainEntry::State::failed:
      break;
  }
  return Evaluation::finished(ds->verdict);
}

// Walks down from the anchor to `name`, one label at a time, through the
// DS (or its proven absence) at each: an unsigned delegation on the way
// makes `name` insecure; otherwise its zone is secure and its data must be
// signed.
Evaluation Validator::zone_of(DnameView name, std::uint32_t now) {
  const TrustAnchor* anchor = anchor_for(name);
  if (anchor == nullptr) return Evaluation::finished(Verdict::insecure(ede::kNone, "no anchor"));
  if (const std::uint16_t code = unusable_anchor(*anchor); code != ede::kNone) {
    return Evaluation::finished(Verdict::insecure(code, "trust anchor of unsupported algorithm"));
  }
  const std::size_t top = label_count(anchor->zone);
  const std::size_t bottom = label_count(name);
  for (std::size_t labels = top + 1; labels <= bottom; ++labels) {
    const DnameView cut = ancestor_with_labels(name, labels);
    const ChainEntry* entry = cache_.find(cut, rrtype::kDs, now);
    if (entry == nullptr) return Evaluation::fetch(cut, rrtype::kDs);
    if (entry->state == ChainEntry::State::insecure || entry->state == ChainEntry::State::failed) {
      return Evaluation::finished(entry->verdict);
    }
  }
  return Evaluation::finished(Verdict::secure());
}

Validator::SignedSet Validator::verify_with(const RrSet& rrset, const std::vector<PublicKey>& keys,
                                            DnameView zone, std::uint32_t now) {
  SignedSet out;
  bool key_matched = false;
  bool expired = false;
  bool not_yet_valid = false;
  for (const Record* record : rrset.rrsigs) {
    const auto rrsig = read_rrsig(*record);
    if (!rrsig || rrsig->signer != zone || rrsig->labels > label_count(rrset.owner)) continue;
    for (const PublicKey& key : keys) {
      if (key.tag() != rrsig->key_tag || key.algorithm() != rrsig->algorithm) continue;
      key_matched = true;
      const Window window = validity(*rrsig, now);
      if (window != Window::inside) {
        (window == Window::expired ? expired : not_yet_valid) = true;
        continue;
      }
      if (!signed_data(*rrsig, rrset, scratch_)) continue;
      memo_key_.assign(scratch_);
      memo_key_.append(reinterpret_cast<const char*>(rrsig->signature.data()),
                       rrsig->signature.size());
      memo_key_.append(key.rdata());
      bool valid = verified_.contains(memo_key_);
      if (valid) {
        ++counters_.remembered;
      } else {
        ++counters_.verifications;
        valid = key.verify(bytes_of(scratch_), rrsig->signature);
        if (valid) verified_.insert(memo_key_);
      }
      if (valid) {
        ++counters_.valid_signatures;
        out.evaluation = Evaluation::finished(Verdict::secure());
        out.signer = rrsig->signer;
        out.labels = rrsig->labels;
        out.seconds = trusted_seconds(*rrsig, rrset, now);
        return out;
      }
    }
  }
  std::uint16_t detail = ede::kNone;
  const char* why = "signature does not verify";
  if (!key_matched) {
    detail = ede::kDnskeyMissing;
    why = "no DNSKEY matches the RRSIGs";
  } else if (expired) {
    detail = ede::kSignatureExpired;
    why = "signature expired";
  } else if (not_yet_valid) {
    detail = ede::kSignatureNotYetValid;
    why = "signature not yet valid";
  }
  out.evaluation = Evaluation::finished(Verdict::bogus(detail, why));
  return out;
}

Validator::SignedSet Validator::verify_rrset(const RrSet& rrset, std::uint32_t now,
                                             bool signer_above_owner) {
  SignedSet out;
  if (rrset.rrsigs.empty()) {
    // Unsigned data is fine only in a provably unsigned zone. A DS belongs
    // to the parent's zone.
    const DnameView holder = rrset.type == rrtype::kDs ? parent_of(rrset.owner) : rrset.owner;
    Evaluation zone = zone_of(holder, now);
    if (zone.done && zone.verdict.state == DnssecState::secure) {
      zone = Evaluation::finished(Verdict::bogus(ede::kRrsigsMissing, "RRSIGs missing"));
    }
    out.evaluation = zone;
    return out;
  }
  std::vector<DnameView> tried;
  Verdict failure = Verdict::bogus(ede::kDnskeyMissing, "no usable RRSIG");
  for (const Record* record : rrset.rrsigs) {
    const auto rrsig = read_rrsig(*record);
    if (!rrsig || !is_at_or_below(rrset.owner, rrsig->signer)) continue;
    if (signer_above_owner && rrsig->signer == rrset.owner) continue;
    if (std::find(tried.begin(), tried.end(), rrsig->signer) != tried.end()) continue;
    tried.push_back(rrsig->signer);
    const std::vector<PublicKey>* keys = nullptr;
    const Evaluation zone = zone_keys(rrsig->signer, now, keys);
    if (!zone.done || zone.verdict.state == DnssecState::insecure) {
      out.evaluation = zone;
      return out;
    }
    if (zone.verdict.failed()) {
      failure = zone.verdict;
      continue;
    }
    // verify_with stores nothing in the cache, so `keys` stays valid through it.
    SignedSet signed_set = verify_with(rrset, *keys, rrsig->signer, now);
    if (signed_set.evaluation.verdict.state == DnssecState::secure) return signed_set;
    failure = signed_set.evaluation.verdict;
  }
  out.evaluation = Evaluation::finished(failure);
  return out;
}

// Verifies the SOA, NSEC and NSEC3 RRsets of the authority section and
// gathers the NSEC/NSEC3 records of the first zone that signed some.
// Unsigned ones are judged by the zone of `holder`.
Evaluation Validator::denial_records(const Message& answer, std::vector<RrSet>& sets,
                                     DenialRecords& records, std::uint32_t now) {
  (void)answer;
  Verdict overall = Verdict::secure();
  for (RrSet& set : sets) {
    if (!is_denial_type(set.type)) continue;
    const SignedSet checked = verify_rrset(set, now);
    if (!checked.evaluation.done || checked.evaluation.verdict.failed()) return checked.evaluation;
    if (checked.evaluation.verdict.state == DnssecState::insecure) {
      merge(overall, checked.evaluation.verdict);
      continue;
    }
    if (set.type == rrtype::kSoa) continue;
    // An NSEC(3) that is itself a wildcard expansion proves nothing (RFC 4035 5.4).
    if (checked.labels < rrsig_labels(set.owner)) continue;
    if (records.zone.empty()) records.zone = checked.signer;
    if (checked.signer != records.zone) continue;
    auto& into = set.type == rrtype::kNsec ? records.nsec : records.nsec3;
    into.insert(into.end(), set.records.begin(), set.records.end());
  }
  return Evaluation::finished(overall);
}

Evaluation Validator::prove_negative(const Message& answer, DnameView sname, bool nxdomain,
                                     std::uint32_t now) {
  std::vector<RrSet> sets = rrsets_of(answer, Section::authority);
  DenialRecords records;
  Evaluation gathered = denial_records(answer, sets, records, now);
  if (!gathered.done || gathered.verdict.state != DnssecState::secure) return gathered;
  if (records.nsec.empty() && records.nsec3.empty()) {
    Evaluation zone = zone_of(sname, now);
    if (zone.done && zone.verdict.state == DnssecState::secure) {
      zone = Evaluation::finished(
          Verdict::bogus(ede::kNsecMissing, "negative answer without NSEC or NSEC3"));
    }
    return zone;
  }
  const DenialOutcome outcome =
      nxdomain ? prove_nxdomain(records, sname) : prove_nodata(records, sname, answer.qtype);
  return Evaluation::finished(from_denial(outcome));
}

Evaluation Validator::prove_wildcard(const Message& answer, DnameView sname, std::size_t labels,
                                     std::uint32_t now) {
  std::vector<RrSet> sets = rrsets_of(answer, Section::authority);
  DenialRecords records;
  Evaluation gathered = denial_records(answer, sets, records, now);
  if (!gathered.done || gathered.verdict.failed()) return gathered;
  if (records.nsec.empty() && records.nsec3.empty()) {
    return Evaluation::finished(
        Verdict::bogus(ede::kNsecMissing, "wildcard answer without its NSEC or NSEC3"));
  }
  const DnameView closest_encloser = ancestor_with_labels(sname, labels);
  return Evaluation::finished(
      from_denial(prove_wildcard_expansion(records, sname, closest_encloser)));
}

Evaluation Validator::check_answer(const Message& answer, std::uint32_t now) {
  const std::uint8_t rcode = answer.rcode();
  if ((rcode != 0 && rcode != 3) || answer.qclass != kClassIn) {
    return Evaluation::finished(Verdict{});  // nothing a validator can check
  }
  if (anchor_for(answer.qname) == nullptr) {
    return Evaluation::finished(Verdict::insecure(ede::kNone, "no anchor"));
  }
  std::vector<RrSet> sets = rrsets_of(answer, Section::answer);
  std::vector<bool> checked(sets.size(), false);
  Verdict overall = Verdict::secure();
  const auto index_of = [&](const RrSet* set) {
    return static_cast<std::size_t>(set - sets.data());
  };

  // Checks one RRset of the chain, and the proof that goes with a
  // wildcard expansion. False when `result` is final.
  Evaluation result;
  const auto check_link = [&](RrSet& set, DnameView sname) -> bool {
    checked[index_of(&set)] = true;
    const SignedSet signed_set = verify_rrset(set, now);
    if (!signed_set.evaluation.done || signed_set.evaluation.verdict.failed()) {
      result = signed_set.evaluation;
      return false;
    }
    merge(overall, signed_set.evaluation.verdict);
    if (signed_set.evaluation.verdict.state == DnssecState::secure &&
        signed_set.labels < rrsig_labels(set.owner)) {
      const Evaluation proof = prove_wildcard(answer, sname, signed_set.labels, now);
      if (!proof.done || proof.verdict.failed()) {
        result = proof;
        return false;
      }
      merge(overall, proof.verdict);
    }
    return true;
  };

  Dname sname = answer.qname;
  bool answered = false;
  for (std::size_t link = 0; link < kMaxChainLinks && !answered; ++link) {
    if (answer.qtype == rrtype::kAny) {
      for (RrSet& set : sets) {
        if (set.owner != sname) continue;
        if (!check_link(set, sname)) return result;
        answered = true;
      }
      break;
    }
    if (RrSet* data = find_set(sets, sname, answer.qtype)) {
      if (!check_link(*data, sname)) return result;
      answered = true;
      break;
    }
    // A DNAME above sname: its synthesized CNAME is unsigned (RFC 6672 5.3.1).
    RrSet* dname = nullptr;
    for (RrSet& set : sets) {
      if (set.type == rrtype::kDname && set.owner != sname && is_at_or_below(sname, set.owner)) {
        dname = &set;
      }
    }
    if (dname == nullptr) {
      RrSet* cname = find_set(sets, sname, rrtype::kCname);
      if (cname == nullptr) break;
      if (!check_link(*cname, sname)) return result;
      sname = cname->records.front()->rdata;
      continue;
    }
    if (!check_link(*dname, sname)) return result;
    Dname target(sname.substr(0, sname.size() - dname->owner.size()));
    target += dname->records.front()->rdata;
    if (target.size() > 255) break;
    if (RrSet* synthesized = find_set(sets, sname, rrtype::kCname)) {
      if (synthesized->records.front()->rdata != target) {
        return Evaluation::finished(Verdict::bogus(ede::kNone, "CNAME disagrees with DNAME"));
      }
      checked[index_of(synthesized)] = true;
    }
    sname = target;
  }
  for (std::size_t i = 0; i < sets.size(); ++i) {
    if (checked[i]) continue;
    const SignedSet signed_set = verify_rrset(sets[i], now);
    if (!signed_set.evaluation.done || signed_set.evaluation.verdict.failed()) {
      return signed_set.evaluation;
    }
    merge(overall, signed_set.evaluation.verdict);
  }
  if (!answered) {
    Evaluation negative = prove_negative(answer, sname, rcode == 3, now);
    if (!negative.done || negative.verdict.failed()) return negative;
    merge(overall, negative.verdict);
  }
  return Evaluation::finished(overall);
}

Evaluation Validator::store_failure(const ChainNeed& fetched, Verdict verdict, std::uint32_t now) {
  ChainEntry entry;
  entry.state = ChainEntry::State::failed;
  entry.verdict = verdict;
  entry.expires =
      now + (verdict.state == DnssecState::bogus ? kBogusSeconds : kIndeterminateSeconds);
  cache_.store(fetched.name, fetched.type, std::move(entry));
  return Evaluation::finished(verdict);
}

void Validator::fetch_failed(const ChainNeed& fetched, std::uint32_t now) {
  store_failure(fetched, Verdict::indeterminate("chain material could not be fetched"), now);
}

Evaluation Validator::absorb(const ChainNeed& fetched, const Message& answer, std::uint32_t now) {
  const std::uint8_t rcode = answer.rcode();
  if (rcode != 0 && rcode != 3) {
    return store_failure(fetched, Verdict::indeterminate("the resolver failed a chain fetch"), now);
  }
  return fetched.type == rrtype::kDs ? absorb_ds(fetched, answer, now)
                                     : absorb_dnskey(fetched, answer, now);
}

Evaluation Validator::absorb_ds(const ChainNeed& fetched, const Message& answer,
                                std::uint32_t now) {
  const DnameView name = fetched.name;
  ChainEntry entry;
  std::vector<RrSet> sets = rrsets_of(answer, Section::answer);
  if (RrSet* ds = find_set(sets, name, rrtype::kDs); ds != nullptr && answer.rcode() == 0) {
    const SignedSet checked = verify_rrset(*ds, now, true);
    if (!checked.evaluation.done) return checked.evaluation;
    if (checked.evaluation.verdict.failed()) {
      return store_failure(fetched, checked.evaluation.verdict, now);
    }
    entry.verdict = checked.evaluation.verdict;
    if (checked.evaluation.verdict.state == DnssecState::insecure) {
      entry.state = ChainEntry::State::insecure;
      entry.expires = now + capped(ds->records.front()->ttl);
    } else {
      bool algorithm_ok = false;
      for (const Record* record : ds->records) {
        const auto rdata = record->rdata_bytes();
        if (rdata.size() < 5 || !algorithm_supported(rdata[2])) continue;
        algorithm_ok = true;
        if (digest_supported(rdata[3])) entry.ds.push_back(record->rdata);
      }
      entry.expires = now + capped(checked.seconds);
      if (entry.ds.empty()) {
        entry.state = ChainEntry::State::insecure;
        entry.verdict = Verdict::insecure(
            algorithm_ok ? ede::kUnsupportedDsDigest : ede::kUnsupportedDnskeyAlgorithm,
            "DS of unsupported algorithms or digests only");
      } else {
        entry.state = ChainEntry::State::secure;
      }
    }
    const Verdict verdict = entry.verdict;
    cache_.store(name, rrtype::kDs, std::move(entry));
    return Evaluation::finished(verdict);
  }

  // No DS: the parent's proof of its absence.
  std::vector<RrSet> authority = rrsets_of(answer, Section::authority);
  DenialRecords records;
  Verdict overall = Verdict::secure();
  std::uint32_t ttl = kMaxChainSeconds;
  for (RrSet& set : authority) {
    if (!is_denial_type(set.type)) continue;
    // Signed at or below `name`: the child's own records, which prove
    // nothing about its DS, and whose keys would wait on this very fetch.
    const bool from_below = std::any_of(set.rrsigs.begin(), set.rrsigs.end(), [&](const Record* r) {
      const auto rrsig = read_rrsig(*r);
      return rrsig && is_at_or_below(rrsig->signer, name);
    });
    if (from_below) continue;
    for (const Record* record : set.records) ttl = std::min(ttl, record->ttl);
    SignedSet checked;
    if (set.rrsigs.empty()) {
      // Unsigned: judged by the parent's zone (asking about `name` itself
      // would wait on this very fetch).
      Evaluation zone = zone_of(parent_of(name), now);
      if (zone.done && zone.verdict.state == DnssecState::secure) {
        zone = Evaluation::finished(Verdict::bogus(ede::kRrsigsMissing, "RRSIGs missing"));
      }
      checked.evaluation = zone;
    } else {
      checked = verify_rrset(set, now, set.owner == name);
    }
    if (!checked.evaluation.done) return checked.evaluation;
    if (checked.evaluation.verdict.failed()) {
      return store_failure(fetched, checked.evaluation.verdict, now);
    }
    if (checked.evaluation.verdict.state == DnssecState::insecure) {
      merge(overall, checked.evaluation.verdict);
      continue;
    }
    if (set.type == rrtype::kSoa) continue;
    if (checked.signer == name) continue;  // the child's own NSEC proves nothing about its DS
    if (checked.labels < rrsig_labels(set.owner)) continue;  // a wildcard expansion (RFC 4035 5.4)
    if (records.zone.empty()) records.zone = checked.signer;
    if (checked.signer != records.zone) continue;
    auto& into = set.type == rrtype::kNsec ? records.nsec : records.nsec3;
    into.insert(into.end(), set.records.begin(), set.records.end());
  }
  entry.expires = now + std::min(ttl, kMaxChainSeconds);
  if (overall.state == DnssecState::insecure) {
    entry.state = ChainEntry::State::insecure;
    entry.verdict = overall;
  } else if (records.nsec.empty() && records.nsec3.empty()) {
    Evaluation zone = zone_of(parent_of(name), now);
    if (!zone.done) return zone;
    if (zone.verdict.state == DnssecState::secure) {
      return store_failure(fetched, Verdict::bogus(ede::kNsecMissing, "no proof that DS is absent"),
                           now);
    }
    if (zone.verdict.failed()) return store_failure(fetched, zone.verdict, now);
    entry.state = ChainEntry::State::insecure;
    entry.verdict = zone.verdict;
  } else {
    switch (prove_no_ds(records, name)) {
      case DsAbsence::insecure_delegation:
        entry.state = ChainEntry::State::insecure;
        entry.verdict = Verdict::insecure(ede::kNone, "unsigned delegation");
        break;
      case DsAbsence::not_a_delegation:
      case DsAbsence::nonexistent:
        entry.state = ChainEntry::State::not_a_cut;
        entry.verdict = Verdict::secure();
        break;
      case DsAbsence::opt_out:
        entry.state = ChainEntry::State::insecure;
        entry.verdict = Verdict::insecure(ede::kNone, "NSEC3 opt-out");
        break;
      case DsAbsence::too_many_iterations:
        entry.state = ChainEntry::State::insecure;
        entry.verdict =
            Verdict::insecure(ede::kUnsupportedNsec3Iterations, "NSEC3 iterations above 150");
        break;
      case DsAbsence::unsupported_hash:
        entry.state = ChainEntry::State::insecure;
        entry.verdict = Verdict::insecure(ede::kNone, "unsupported NSEC3 hash");
        break;
      case DsAbsence::not_proven:
        return store_failure(fetched,
                             Verdict::bogus(ede::kNsecMissing, "no proof that DS is absent"), now);
    }
  }
  const Verdict verdict = entry.verdict;
  cache_.store(name, rrtype::kDs, std::move(entry));
  return Evaluation::finished(verdict);
}

Evaluation Validator::absorb_dnskey(const ChainNeed& fetched, const Message& answer,
                                    std::uint32_t now) {
  const DnameView zone = fetched.name;
  std::vector<RrSet> sets = rrsets_of(answer, Section::answer);
  RrSet* dnskeys = find_set(sets, zone, rrtype::kDnskey);
  if (dnskeys == nullptr || answer.rcode() != 0) {
    return store_failure(fetched, Verdict::bogus(ede::kDnskeyMissing, "no DNSKEY RRset"), now);
  }
  const TrustAnchor* anchor = anchor_for(zone);
  if (anchor == nullptr) return Evaluation::finished(Verdict::insecure(ede::kNone, "no anchor"));
  std::vector<std::string> trusted_ds;
  const std::vector<std::string>* trusted_keys = nullptr;
  if (anchor->zone == zone) {
    trusted_ds = anchor->ds;
    trusted_keys = &anchor->dnskeys;
  } else {
    const ChainEntry* ds = cache_.find(zone, rrtype::kDs, now);
    if (ds == nullptr) return Evaluation::fetch(zone, rrtype::kDs);
    if (ds->state != ChainEntry::State::secure) {
      const Verdict verdict = ds->state == ChainEntry::State::not_a_cut
                                  ? Verdict::bogus(ede::kNone, "DNSKEY below no zone cut")
                                  : ds->verdict;
      return verdict.failed() ? store_failure(fetched, verdict, now)
                              : Evaluation::finished(verdict);
    }
    trusted_ds = ds->ds;
  }
  std::vector<PublicKey> zone_keys;
  std::vector<PublicKey> entry_keys;
  for (const Record* record : dnskeys->records) {
    auto key = PublicKey::from_dnskey(zone, record->rdata_bytes());
    if (!key || !key->is_zone_key() || key->is_revoked()) continue;
    bool trusted = false;
    for (const std::string& ds : trusted_ds) trusted = trusted || key->matches_ds(bytes_of(ds));
    if (trusted_keys != nullptr) {
      for (const std::string& rdata : *trusted_keys) trusted = trusted || rdata == record->rdata;
    }
    if (trusted) entry_keys.push_back(*key);
    zone_keys.push_back(std::move(*key));
  }
  if (entry_keys.empty()) {
    return store_failure(fetched, Verdict::bogus(ede::kDnskeyMissing, "no DNSKEY matches the DS"),
                         now);
  }
  const SignedSet checked = verify_with(*dnskeys, entry_keys, zone, now);
  if (checked.evaluation.verdict.state != DnssecState::secure) {
    return store_failure(fetched, checked.evaluation.verdict, now);
  }
  ChainEntry entry;
  entry.state = ChainEntry::State::secure;
  entry.verdict = Verdict::secure();
  entry.keys = std::move(zone_keys);
  entry.expires = now + capped(checked.seconds);
  cache_.store(zone, rrtype::kDnskey, std::move(entry));
  return Evaluation::finished(Verdict::secure());
}

}  // namespace dnsgate::dnssec
