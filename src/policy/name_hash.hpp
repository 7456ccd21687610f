// The hash the allowlist's table is keyed by. It runs over a lower-cased
// wire name label by label from the right, so one pass over a query name
// yields the hash of every suffix of it: the hash of a name is `extend` of
// the hash of its parent with its first label.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dnsgate::name_hash {

// Labels are read in 16-octet chunks straight from the name's buffer, without
// masking the octets past the label's end: they are the labels that follow
// (part of the same suffix) or, past the root octet, this many zero octets
// that the buffer must hold. Either way a suffix hashes the same wherever the
// copy of it sits, and no chunk needs a byte-by-byte tail.
inline constexpr std::size_t kPadding = 16;

// The hash of the root name, where every chain starts: any constant will do.
inline constexpr std::uint64_t kRoot = 0x243F6A8885A308D3ULL;

// No octet of a name that gets hashed has its top bit set (label lengths are
// at most 63, label octets are folded ASCII, the padding is zero) and every
// octet of this constant has: `chunk ^ kSalt` is never zero, so the product
// below can never collapse every name under one suffix to a single hash.
inline constexpr std::uint64_t kSalt = 0x9E3779B97F4A7C15ULL | 0x8080808080808080ULL;

__extension__ typedef unsigned __int128 Wide;

inline std::uint64_t load64(const unsigned char* at) noexcept {
  std::uint64_t word;
  std::memcpy(&word, at, sizeof word);
  return word;
}

// The two halves of the full 128-bit product folded together: the high half
// carries every input bit into the low bits the table indexes by, and one
// multiply covers 16 octets, which is a whole label for most hostnames.
inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept {
  const Wide product = static_cast<Wide>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
}

// The hash of the name made of `label` (its length octet, then its octets)
// in front of the name whose hash is `parent`.
inline std::uint64_t extend(std::uint64_t parent, const unsigned char* label) noexcept {
  const std::size_t octets = 1 + std::size_t{label[0]};
  std::uint64_t hash = parent;
  for (std::size_t at = 0; at < octets; at += 16) {
    hash = mix(hash ^ load64(label + at), load64(label + at + 8) ^ kSalt);
  }
  return hash;
}

}  // namespace dnsgate::name_hash
