// The cell's hostname allowlist.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "dnsgate/name.hpp"

namespace dnsgate {

// Why an allowlist entry was rejected at load time.
struct AllowlistError {
  std::size_t index = 0;  // position of the entry in the list given to build()
  std::string entry;      // the entry as written
  std::string message;    // what is wrong with it, for an operator
};

// Literal names ("api.example.com") and one-leading-wildcard suffixes
// ("*.example.com": one or more labels in front, never the suffix itself).
// Matching compares label sequences ASCII case-insensitively; a query name
// with any label holding a byte other than ASCII letters, digits, `-`, `_`
// matches nothing. A lookup allocates nothing and probes one flat table at
// most once per label count at which the list holds an entry, whatever the
// number of entries: the whole name if a literal that long exists, each
// proper suffix whose label count some wildcard has.
class Allowlist {
 public:
  Allowlist() = default;  // allows nothing

  // Validates and compiles entries as an operator writes them: one trailing
  // dot ignored, Unicode converted to A-labels (IDNA 2008 via libidn2),
  // labels <= 63 octets, names <= 255. Any `*` other than one leading
  // wildcard label, an empty label, or a byte outside letters, digits, `-`,
  // `_` is an error naming the entry. So is a list whose distinct names take
  // more than 4 GiB, which no config file can hold.
  static std::variant<Allowlist, AllowlistError> build(std::span<const std::string> entries);

  bool allows(const QueryName& name) const noexcept;

  // allowed[i] = allows(*names[i]) for every i below the smaller of the two
  // sizes; the rest of `allowed` is left as it is. The same answers as
  // allows() one name at a time, at about the same cost when the list is in
  // cache; on a large list, where each name costs a cache miss or two, it
  // overlaps the misses of up to 32 names instead of paying them in turn.
  // Meant for the names of one receive batch. A name may appear more than
  // once; no pointer may be null. Allocates nothing.
  void allows_batch(std::span<const QueryName* const> names,
                    std::span<bool> allowed) const noexcept;

  // Distinct names: equivalent entries ("a.com", "A.COM.") count once.
  std::size_t literal_count() const noexcept { return literal_count_; }
  std::size_t wildcard_count() const noexcept { return wildcard_count_; }

 private:
  // The table: open addressing with linear probing over slots, a power of
  // two of them, at least one line, at most half full; one slot per distinct
  // name, literal, wildcard suffix or both. A name's probe starts at the
  // first slot of the line its hash picks, so it reads one cache line unless
  // that line is full, and all eight tags of a line are compared at once.
  // A tag holds high bits of the name's hash and, in its low two bits, the
  // kinds the name is allowlisted as; a free slot's tag is zero, as no stored
  // name is of no kind.
  static constexpr std::size_t kLineSlots = 8;
  struct alignas(64) Line {
    std::array<std::uint32_t, kLineSlots> tags;
    std::array<std::uint32_t, kLineSlots> offsets;  // of each slot's name in keys_
  };
  // One suffix of a query name to look up. No member initializers: lookups
  // keep arrays of these on the stack, and declaring them must cost nothing.
  struct Probe {
    std::uint64_t hash;
    std::uint32_t found_tag;     // allows_batch: the first slot holding the hash's
    std::uint32_t found_offset;  // tag, if any (found_tag 0: none)
    std::uint8_t kind;           // what the suffix must be allowlisted as
    std::uint8_t at;             // where the suffix starts in the folded name
  };
  // A query name lower-cased, plus the zero octets the hash reads past it.
  static constexpr std::size_t kFoldedOctets = kMaxNameOctets + 16;

  std::size_t prepare(const QueryName& name, unsigned char* folded, Probe* probes,
                      std::size_t capacity) const noexcept;
  std::size_t home_line(std::uint64_t hash) const noexcept {
    return (hash & slot_mask_) / kLineSlots;
  }
  void prefetch_line(std::uint64_t hash) const noexcept {
    __builtin_prefetch(&lines_[home_line(hash)]);
  }
  bool key_equals(std::uint32_t offset, const unsigned char* name,
                  std::size_t octets) const noexcept;
  bool find(std::uint64_t hash, const unsigned char* name, std::size_t octets,
            std::uint32_t kind) const noexcept;
  bool insert(const unsigned char* name, std::size_t octets, std::uint64_t hash,
              std::uint32_t kind);

  std::vector<Line> lines_;
  std::size_t slot_mask_ = 0;
  // The farthest, in lines, any name sits from the line its hash picks: no
  // lookup looks further, so a query, whatever its hash, reads at most
  // max_lines_ + 1 lines per probe, a bound the operator's list alone sets.
  std::size_t max_lines_ = 0;
  // Every name back to back, each a length octet then the lower-cased
  // uncompressed wire name (length octets included, so a `.` inside a label
  // can never match a label boundary).
  std::vector<unsigned char> keys_;
  // Bit d set: some literal (wildcard suffix) has d labels. A lookup probes
  // nothing at a label count no entry has.
  std::array<std::uint64_t, 2> literal_depths_{};
  std::array<std::uint64_t, 2> wildcard_depths_{};
  std::size_t literal_count_ = 0;
  std::size_t wildcard_count_ = 0;
};

}  // namespace dnsgate
