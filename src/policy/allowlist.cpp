#include "dnsgate/allowlist.hpp"

#include <idn2.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>

#include "dns/ascii.hpp"
#include "policy/name_hash.hpp"

namespace dnsgate {

namespace {

// Which bytes a hostname label may hold, and their folded form, as build()
// validates entries; allows() screens query names 16 octets at a time with
// the same ranges, and a unit test holds the two to the same answer for
// every byte value. 0 means "not a hostname byte"; NUL itself is therefore
// rejected too.
constexpr std::array<std::uint8_t, 256> make_hostname_fold_table() {
  std::array<std::uint8_t, 256> table{};
  for (int c = 'a'; c <= 'z'; ++c) table[c] = static_cast<std::uint8_t>(c);
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = ascii_lower(static_cast<std::uint8_t>(c));
  for (int c = '0'; c <= '9'; ++c) table[c] = static_cast<std::uint8_t>(c);
  table['-'] = '-';
  table['_'] = '_';
  return table;
}

constexpr std::array<std::uint8_t, 256> kHostnameFold = make_hostname_fold_table();

// The shortest name a wildcard can match has one label of one octet in front
// of the suffix; counting the `*` label in the entry's length rejects
// wildcards that could only ever match names longer than 255 octets.
constexpr std::size_t kWildcardLabelOctets = 2;

bool has_non_ascii(std::string_view text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) > 0x7F) return true;
  }
  return false;
}

// Printable form of one byte for an error message.
std::string describe_byte(unsigned char c) {
  if (c >= 0x21 && c <= 0x7E) return std::string{'\''} + static_cast<char>(c) + '\'';
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{"byte 0x"} + kHex[c >> 4] + kHex[c & 0x0F];
}

struct IdnResult {
  std::string ascii;
  std::string error;  // empty on success
};

// IDNA 2008 with UTS #46 non-transitional processing, as browsers, curl and
// libidn2's own default resolve names today. There is deliberately no
// fallback to transitional processing: it maps names to a different domain
// ("faß.de" becomes "fass.de", not "xn--fa-hia.de"; a joiner is silently
// dropped, so "a<ZWJ>.com" becomes "a.com"). For an allowlist that would
// widen policy to a name the operator did not write; rejecting the entry is
// the safe outcome, and the operator can still write the A-label directly.
IdnResult to_a_labels(const std::string& unicode) {
  char* raw = nullptr;
  const int rc = idn2_to_ascii_8z(unicode.c_str(), &raw, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  const std::unique_ptr<char, decltype(&idn2_free)> owned(raw, &idn2_free);
  if (rc != IDN2_OK || raw == nullptr) {
    return {{},
            std::string{"cannot convert to A-labels (IDNA 2008, UTS #46 non-transitional): "} +
                idn2_strerror(rc)};
  }
  return {std::string{raw}, {}};
}

// Checks a dotted ASCII name (no trailing dot) and appends its lower-cased
// wire form, root octet included, to `wire`. Returns an error message or
// nothing.
std::optional<std::string> append_wire_name(std::string_view dotted, std::size_t extra_octets,
                                            std::string& wire) {
  // Text "a.b" is wire "\1a\1b\0": one length octet per label plus the root.
  const std::size_t wire_octets = dotted.size() + 2 + extra_octets;
  std::size_t label_start = 0;
  while (true) {
    const std::size_t dot = dotted.find('.', label_start);
    const std::size_t label_end = dot == std::string_view::npos ? dotted.size() : dot;
    const std::string_view label = dotted.substr(label_start, label_end - label_start);
    if (label.empty()) {
      return std::string{"empty label (a leading dot, or two dots in a row)"};
    }
    if (label.size() > kMaxLabelOctets) {
      return "label \"" + std::string{label} + "\" is " + std::to_string(label.size()) +
             " octets long; the limit is " + std::to_string(kMaxLabelOctets);
    }
    wire.push_back(static_cast<char>(label.size()));
    for (const char c : label) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte == '*') {
        return std::string{"'*' is allowed only as the whole first label, as in \"*.example.com\""};
      }
      const std::uint8_t folded = kHostnameFold[byte];
      if (folded == 0) {
        return "label \"" + std::string{label} + "\" contains " + describe_byte(byte) +
               "; a label may hold only ASCII letters, digits, '-' and '_'";
      }
      wire.push_back(static_cast<char>(folded));
    }
    if (dot == std::string_view::npos) break;
    label_start = dot + 1;
  }
  wire.push_back('\0');
  if (wire_octets > kMaxNameOctets) {
    return "name is " + std::to_string(wire_octets) +
           " octets long in wire form (length octets and root included" +
           (extra_octets != 0 ? ", with the shortest label the wildcard can match" : "") +
           "); the limit is " + std::to_string(kMaxNameOctets);
  }
  return std::nullopt;
}

constexpr std::uint32_t kLiteral = 1;
constexpr std::uint32_t kWildcard = 2;
constexpr std::uint32_t kKinds = kLiteral | kWildcard;

// The table indexes by the hash's low bits; the tag takes its high ones, so
// the two filter independently for any table up to 2^34 slots.
std::uint32_t tag_of(std::uint64_t hash) noexcept {
  return static_cast<std::uint32_t>(hash >> 32) & ~kKinds;
}

using Depths = name_hash::Wide;  // bit d: label count d

Depths depths_of(const std::array<std::uint64_t, 2>& halves) noexcept {
  return static_cast<Depths>(halves[1]) << 64 | halves[0];
}

void add_depth(std::array<std::uint64_t, 2>& halves, std::size_t depth) noexcept {
  halves[depth >> 6] |= std::uint64_t{1} << (depth & 63);
}

unsigned lowest_bit(Depths bits) noexcept {
  const auto low = static_cast<std::uint64_t>(bits);
  if (low != 0) return static_cast<unsigned>(std::countr_zero(low));
  return 64 + static_cast<unsigned>(std::countr_zero(static_cast<std::uint64_t>(bits >> 64)));
}

// A query name is folded and screened 16 octets at a time, with the
// vector extension GCC and Clang share (SSE2 on x86-64, NEON on arm64).
// Octets are signed here: those from 0x80 up are negative and so fall in no
// range below, as they are no hostname octet.
typedef signed char Chunk __attribute__((vector_size(16)));

inline Chunk load_chunk(const unsigned char* at) noexcept {
  Chunk chunk;
  std::memcpy(&chunk, at, sizeof chunk);
  return chunk;
}

inline Chunk fold_chunk(Chunk chunk) noexcept {
  return chunk | ((chunk >= 'A') & (chunk <= 'Z') & 0x20);
}

// Whether every octet of a folded chunk is a hostname octet.
inline bool hostname_chunk(Chunk folded) noexcept {
  const Chunk ok = ((folded >= 'a') & (folded <= 'z')) | ((folded >= '0') & (folded <= '9')) |
                   (folded == '-') | (folded == '_');
  std::uint64_t halves[2];
  std::memcpy(halves, &ok, sizeof halves);
  return (halves[0] & halves[1]) == ~std::uint64_t{0};
}

// The eight tags of a line are compared in two vectors of four.
typedef std::uint32_t Tags __attribute__((vector_size(16)));
typedef std::int32_t TagMask __attribute__((vector_size(16)));

// Bit i set for each of the eight lanes i that is true (all ones).
inline unsigned lane_bits(TagMask low, TagMask high) noexcept {
  TagMask bits = (low & TagMask{1, 2, 4, 8}) | (high & TagMask{16, 32, 64, 128});
  bits |= __builtin_shufflevector(bits, bits, 2, 3, 2, 3);
  bits |= __builtin_shufflevector(bits, bits, 1, 1, 1, 1);
  return static_cast<unsigned>(bits[0]);
}

struct LineScan {
  unsigned matches;  // bit i: slot i holds the tag and comes before any free slot
  bool ends;         // the line has a free slot: the probe stops here
};

LineScan scan_line(const std::array<std::uint32_t, 8>& tags, std::uint32_t tag) noexcept {
  Tags low;
  Tags high;
  std::memcpy(&low, tags.data(), sizeof low);
  std::memcpy(&high, tags.data() + 4, sizeof high);
  const unsigned matches = lane_bits((low & ~kKinds) == tag, (high & ~kKinds) == tag);
  const unsigned free = lane_bits(low == 0, high == 0);
  const unsigned before_free = (free & (0U - free)) - 1U;
  return {matches & before_free, free != 0};
}

// A name of 255 wire octets has at most 127 labels of one octet.
constexpr std::size_t kMaxLabels = (kMaxNameOctets - 1) / 2;

// A large list is read at random, a cache miss or two per lookup; with 4 KiB
// pages each is a TLB miss too, which in a virtual machine adds about half
// again to its cost. Asking for 2 MiB pages over the part of a new, untouched
// buffer that spans whole ones removes most of those; a buffer smaller than
// that is left alone, so a small list takes no more memory than it uses.
void advise_huge_pages(const void* data, std::size_t octets) noexcept {
  constexpr std::uintptr_t kHugePage = std::uintptr_t{2} << 20;
  const auto start = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (start + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t end = (start + octets) & ~(kHugePage - 1);
  // Advice only: where the kernel has no huge pages to give, nothing changes.
  if (end > first) madvise(reinterpret_cast<void*>(first), end - first, MADV_HUGEPAGE);
}

// The hash of a whole lower-cased wire name held in a buffer padded as
// name_hash requires, and its label count.
std::uint64_t hash_name(const unsigned char* name, std::size_t& labels) noexcept {
  std::array<std::uint8_t, kMaxLabels> starts;
  labels = 0;
  for (std::size_t at = 0; name[at] != 0; at += 1 + name[at]) {
    starts[labels++] = static_cast<std::uint8_t>(at);
  }
  std::uint64_t hash = name_hash::kRoot;
  for (std::size_t label = labels; label > 0; --label) {
    hash = name_hash::extend(hash, name + starts[label - 1]);
  }
  return hash;
}

}  // namespace

std::variant<Allowlist, AllowlistError> Allowlist::build(std::span<const std::string> entries) {
  Allowlist allowlist;
  if (!entries.empty()) {
    // Sized once for the worst case, every entry distinct, so the table is
    // never rehashed and stays at most half full.
    const std::size_t slots = std::bit_ceil(std::max(2 * entries.size(), kLineSlots));
    static_assert(sizeof(Line) == 64);
    allowlist.lines_.reserve(slots / kLineSlots);
    advise_huge_pages(allowlist.lines_.data(), slots / kLineSlots * sizeof(Line));
    allowlist.lines_.resize(slots / kLineSlots);
    allowlist.slot_mask_ = slots - 1;
    // An ASCII entry takes at most its own length plus three octets (the
    // wire form's first length octet and root, and the key's length octet);
    // only IDN entries can outgrow this. Reserved before anything is written
    // so that the huge-page advice covers it.
    std::size_t key_octets = 0;
    for (const std::string& entry : entries) key_octets += entry.size() + 3;
    allowlist.keys_.reserve(key_octets);
    advise_huge_pages(allowlist.keys_.data(), key_octets);
  }
  std::string wire;
  wire.reserve(kMaxNameOctets);
  std::array<unsigned char, kMaxNameOctets + name_hash::kPadding> padded{};
  for (std::size_t index = 0; index < entries.size(); ++index) {
    const std::string& entry = entries[index];
    const auto fail = [&](std::string message) -> std::variant<Allowlist, AllowlistError> {
      return AllowlistError{index, entry, std::move(message)};
    };

    if (entry.empty()) return fail("empty entry");
    if (entry == "*" || entry == "*.") {
      return fail("a bare '*' would allow every name; write a suffix, as in \"*.example.com\"");
    }
    const bool wildcard = entry.starts_with("*.");
    std::string_view name = entry;
    if (wildcard) name.remove_prefix(2);
    // Checked before IDN conversion so the message is about what the
    // operator wrote; a fullwidth asterisk that the conversion maps to `*`
    // is caught by the label check below.
    if (name.find('*') != std::string_view::npos) {
      return fail("'*' is allowed only as the whole first label, as in \"*.example.com\"");
    }

    std::string converted;
    const bool internationalized = has_non_ascii(name);
    if (internationalized) {
      IdnResult idn = to_a_labels(std::string{name});
      if (!idn.error.empty()) return fail(std::move(idn.error));
      converted = std::move(idn.ascii);
      name = converted;
    }

    // After conversion, so that an ideographic full stop written as the
    // trailing dot counts as the one trailing dot.
    if (name.ends_with('.')) name.remove_suffix(1);
    if (name.empty()) {
      return fail(wildcard ? "the wildcard has no suffix" : "the root name cannot be allowlisted");
    }

    wire.clear();
    if (auto error = append_wire_name(name, wildcard ? kWildcardLabelOctets : 0, wire)) {
      if (internationalized) {
        return fail("after IDN conversion to \"" + converted + "\": " + *error);
      }
      return fail(std::move(*error));
    }
    // The previous name's octets past this one's end must not reach the
    // hash: the padding has to read as zeros.
    std::memcpy(padded.data(), wire.data(), wire.size());
    std::memset(padded.data() + wire.size(), 0, name_hash::kPadding);
    std::size_t labels = 0;
    const std::uint64_t hash = hash_name(padded.data(), labels);
    if (!allowlist.insert(padded.data(), wire.size(), hash, wildcard ? kWildcard : kLiteral)) {
      return fail("the allowlist is too large: its distinct names take more than 4 GiB");
    }
    add_depth(wildcard ? allowlist.wildcard_depths_ : allowlist.literal_depths_, labels);
  }
  // Wildcards and trailing dots leave a few octets of the estimate unused;
  // only a list with many duplicates leaves enough to be worth a copy.
  if (allowlist.keys_.capacity() - allowlist.keys_.size() > allowlist.keys_.size() / 4) {
    allowlist.keys_.shrink_to_fit();
  }
  return allowlist;
}

bool Allowlist::key_equals(std::uint32_t offset, const unsigned char* name,
                           std::size_t octets) const noexcept {
  return keys_[offset] == octets && std::memcmp(&keys_[offset + 1], name, octets) == 0;
}

bool Allowlist::insert(const unsigned char* name, std::size_t octets, std::uint64_t hash,
                       std::uint32_t kind) {
  const std::uint32_t tag = tag_of(hash);
  const std::size_t line_mask = slot_mask_ / kLineSlots;
  for (std::size_t distance = 0, line = home_line(hash);;
       ++distance, line = (line + 1) & line_mask) {
    Line& slots = lines_[line];
    for (std::size_t slot = 0; slot < kLineSlots; ++slot) {
      if (slots.tags[slot] == 0) {
        if (keys_.size() > std::numeric_limits<std::uint32_t>::max()) return false;
        slots.tags[slot] = tag | kind;
        slots.offsets[slot] = static_cast<std::uint32_t>(keys_.size());
        keys_.push_back(static_cast<unsigned char>(octets));
        keys_.insert(keys_.end(), name, name + octets);
        max_lines_ = std::max(max_lines_, distance);
        ++(kind == kLiteral ? literal_count_ : wildcard_count_);
        return true;
      }
      if ((slots.tags[slot] & ~kKinds) == tag && key_equals(slots.offsets[slot], name, octets)) {
        if ((slots.tags[slot] & kind) == 0) {
          slots.tags[slot] |= kind;
          ++(kind == kLiteral ? literal_count_ : wildcard_count_);
        }
        return true;  // the same name again, or now as the other kind too
      }
    }
  }
}

// Folds and screens the name into `folded`, then hashes the suffixes worth
// probing into `probes`, at most `capacity` of them. Returns how many there
// are, which may exceed `capacity`; 0 when the name can match nothing.
std::size_t Allowlist::prepare(const QueryName& name, unsigned char* folded, Probe* probes,
                               std::size_t capacity) const noexcept {
  static_assert(kFoldedOctets >= kMaxNameOctets + name_hash::kPadding);
  const std::span<const std::uint8_t> wire = name.wire();
  const std::size_t octets = wire.size();
  if (octets < 2 || octets > kMaxNameOctets) return 0;  // root, or not a name

  std::memcpy(folded, wire.data(), octets);
  std::array<std::uint8_t, kMaxLabels> starts;
  std::size_t labels = 0;
  std::size_t at = 0;
  for (std::uint8_t length; (length = folded[at]) != 0; at += 1 + length) {
    // QueryName guarantees the shape; checking again keeps this function
    // safe on its own.
    if (length > kMaxLabelOctets || at + 1 + length >= octets) return 0;
    starts[labels++] = static_cast<std::uint8_t>(at);
  }
  if (at + 1 != octets) return 0;

  // The whole name is a literal's label count, each proper suffix with at
  // least one label in front of it a wildcard's; the root alone never is.
  const Depths below = (Depths{1} << labels) - 1;
  const Depths wanted = (depths_of(wildcard_depths_) & below & ~Depths{1}) |
                        (depths_of(literal_depths_) & (Depths{1} << labels));
  if (wanted == 0) return 0;

  // Screen every label octet and fold it, 16 at a time, with the length
  // octets, the root and the tail of the last chunk standing in as an octet
  // that passes: a label holding `.`, NUL, `*` or any other octet a hostname
  // cannot hold matches nothing, which is the contract, and it stops a
  // one-label "www.example" from ever being read as two labels.
  for (std::size_t label = 0; label < labels; ++label) folded[starts[label]] = 'a';
  std::memset(folded + octets - 1, 'a', 1 + sizeof(Chunk));
  for (std::size_t chunk_at = 0; chunk_at < octets; chunk_at += sizeof(Chunk)) {
    const Chunk chunk = fold_chunk(load_chunk(folded + chunk_at));
    if (!hostname_chunk(chunk)) return 0;
    std::memcpy(folded + chunk_at, &chunk, sizeof chunk);
  }
  for (std::size_t label = 0; label < labels; ++label) folded[starts[label]] = wire[starts[label]];
  std::memset(folded + octets - 1, 0, 1 + name_hash::kPadding);

  std::size_t count = 0;
  std::size_t depth = 0;
  std::uint64_t hash = name_hash::kRoot;
  for (Depths left = wanted; left != 0; left &= left - 1) {
    const std::size_t probe_depth = lowest_bit(left);
    while (depth < probe_depth) hash = name_hash::extend(hash, folded + starts[labels - ++depth]);
    if (count < capacity) {
      probes[count] = {hash, 0, 0,
                       static_cast<std::uint8_t>(depth == labels ? kLiteral : kWildcard),
                       starts[labels - depth]};
    }
    ++count;
  }
  return count;
}

bool Allowlist::find(std::uint64_t hash, const unsigned char* name, std::size_t octets,
                     std::uint32_t kind) const noexcept {
  const std::uint32_t tag = tag_of(hash);
  const std::size_t line_mask = slot_mask_ / kLineSlots;
  std::size_t line = home_line(hash);
  for (std::size_t distance = 0; distance <= max_lines_;
       ++distance, line = (line + 1) & line_mask) {
    const Line& slots = lines_[line];
    const LineScan scan = scan_line(slots.tags, tag);
    for (unsigned matches = scan.matches; matches != 0; matches &= matches - 1) {
      const auto slot = static_cast<unsigned>(std::countr_zero(matches));
      // Names are stored once, so the first one equal to this is the only one.
      if (key_equals(slots.offsets[slot], name, octets)) return (slots.tags[slot] & kind) != 0;
    }
    if (scan.ends) return false;
  }
  return false;
}

bool Allowlist::allows(const QueryName& name) const noexcept {
  std::array<unsigned char, kFoldedOctets> folded;
  std::array<Probe, kMaxLabels> probes;
  const std::size_t count = prepare(name, folded.data(), probes.data(), probes.size());
  // Every line first, so that on a large list their cache misses overlap.
  if (count > 1) {
    for (std::size_t i = 0; i < count; ++i) prefetch_line(probes[i].hash);
  }
  const std::size_t octets = name.wire_length();
  for (std::size_t i = 0; i < count; ++i) {
    const Probe& probe = probes[i];
    if (find(probe.hash, folded.data() + probe.at, octets - probe.at, probe.kind)) return true;
  }
  return false;
}

void Allowlist::allows_batch(std::span<const QueryName* const> names,
                             std::span<bool> allowed) const noexcept {
  // Three passes over a group of names, each starting the memory loads the
  // next one needs: hash every name and load its lines; read the lines and
  // load the entries whose tags match; compare those. A name needing more
  // probes than a group keeps (wildcards at many label counts) is left to
  // allows(), which has room for any.
  constexpr std::size_t kGroup = 32;
  constexpr std::size_t kProbes = 4;
  struct Pending {
    std::array<unsigned char, kFoldedOctets> folded;
    std::array<Probe, kProbes> probes;
    std::size_t count;
  };
  std::array<Pending, kGroup> group;
  const std::size_t line_mask = slot_mask_ / kLineSlots;
  const std::size_t total = std::min(names.size(), allowed.size());
  for (std::size_t base = 0; base < total; base += kGroup) {
    const std::size_t size = std::min(kGroup, total - base);
    for (std::size_t j = 0; j < size; ++j) {
      Pending& name = group[j];
      name.count = prepare(*names[base + j], name.folded.data(), name.probes.data(), kProbes);
      for (std::size_t i = 0; i < std::min(name.count, kProbes); ++i) {
        prefetch_line(name.probes[i].hash);
      }
    }
    for (std::size_t j = 0; j < size; ++j) {
      Pending& name = group[j];
      if (name.count > kProbes) continue;
      for (std::size_t i = 0; i < name.count; ++i) {
        Probe& probe = name.probes[i];
        probe.found_tag = 0;
        const std::uint32_t tag = tag_of(probe.hash);
        std::size_t line = home_line(probe.hash);
        for (std::size_t distance = 0; distance <= max_lines_;
             ++distance, line = (line + 1) & line_mask) {
          const Line& slots = lines_[line];
          const LineScan scan = scan_line(slots.tags, tag);
          if (scan.matches != 0) {
            const auto slot = static_cast<unsigned>(std::countr_zero(scan.matches));
            probe.found_tag = slots.tags[slot];
            probe.found_offset = slots.offsets[slot];
            __builtin_prefetch(&keys_[probe.found_offset]);
            break;
          }
          if (scan.ends) break;
        }
      }
    }
    for (std::size_t j = 0; j < size; ++j) {
      const Pending& name = group[j];
      const QueryName& query = *names[base + j];
      if (name.count > kProbes) {
        allowed[base + j] = allows(query);
        continue;
      }
      const std::size_t octets = query.wire_length();
      bool allows_name = false;
      for (std::size_t i = 0; i < name.count && !allows_name; ++i) {
        const Probe& probe = name.probes[i];
        if (probe.found_tag == 0) continue;  // no slot with its tag: not on the list
        const unsigned char* suffix = name.folded.data() + probe.at;
        const std::size_t suffix_octets = octets - probe.at;
        if (key_equals(probe.found_offset, suffix, suffix_octets)) {
          allows_name = (probe.found_tag & probe.kind) != 0;
        } else {
          // Another name with the same tag came first; look further.
          allows_name = find(probe.hash, suffix, suffix_octets, probe.kind);
        }
      }
      allowed[base + j] = allows_name;
    }
  }
}

}  // namespace dnsgate
