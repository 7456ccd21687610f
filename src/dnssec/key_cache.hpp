// What the validator has learnt about the chain of trust: validated DNSKEY
// and DS RRsets, proven absences of DS, and recent failures. Bounded
// (least recently used out first) and TTL-capped. Never an answer cache.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dnssec/crypto.hpp"
#include "dnssec/dname.hpp"
#include "dnssec/verdict.hpp"

namespace dnsgate::dnssec {

// The longest any chain material is trusted, whatever its TTL says.
inline constexpr std::uint32_t kMaxChainSeconds = 86400;
// How long a failure is remembered, so that the queries of a storm share
// one verdict instead of each fetching the chain again.
inline constexpr std::uint32_t kBogusSeconds = 5;
inline constexpr std::uint32_t kIndeterminateSeconds = 1;

struct ChainEntry {
  enum class State : std::uint8_t {
    secure,     // DNSKEY: `keys` are the zone's; DS: `ds` are the delegation's
    insecure,   // provably unsigned from here down (`verdict` may carry EDE 1, 2, 27)
    not_a_cut,  // DS only: the name is no delegation (or does not exist)
    failed,     // `verdict` is bogus or indeterminate
  };
  State state = State::failed;
  Verdict verdict;
  std::vector<PublicKey> keys;
  std::vector<std::string> ds;
  std::uint32_t expires = 0;  // seconds, the validator's clock
};

class KeyCache {
 public:
  explicit KeyCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // The entry for (name, type) if there is one that has not expired at `now`.
  const ChainEntry* find(DnameView name, std::uint16_t type, std::uint32_t now);
  void store(DnameView name, std::uint16_t type, ChainEntry entry);

  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  struct Slot {
    std::string key;
    ChainEntry entry;
  };
  static std::string key_of(DnameView name, std::uint16_t type);

  std::size_t capacity_;
  std::list<Slot> order_;  // most recently used first
  std::unordered_map<std::string, std::list<Slot>::iterator> entries_;
};

// Signatures already verified: the exact octets signed, the signature and
// the key's RDATA. A signature seen again (the same RRset answered again, a
// wildcard's expansions) costs a lookup instead of a public-key operation.
// It holds no answer: the bytes must match exactly, and the RRSIG's
// validity window is checked on every use. Bounded, least recently used
// out first.
class SignatureMemo {
 public:
  explicit SignatureMemo(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  bool contains(const std::string& key);
  void insert(const std::string& key);
  std::size_t size() const noexcept { return index_.size(); }

 private:
  std::size_t capacity_;
  std::list<std::string> order_;  // most recently used first
  std::unordered_map<std::string_view, std::list<std::string>::iterator> index_;
};

}  // namespace dnsgate::dnssec
