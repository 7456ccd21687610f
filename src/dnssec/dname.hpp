// Domain names as the validator handles them: uncompressed wire form,
// lower-cased (RFC 4034 6.2), held in std::string so they can be map keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dnsgate::dnssec {

// A name in canonical wire form: length-prefixed labels, ASCII lower case,
// ending with the root label. The root is "\0".
using Dname = std::string;
using DnameView = std::string_view;

inline constexpr std::size_t kMaxLabels = 128;

// Lower-cases a wire name in place (ASCII only, RFC 4034 6.2).
void lowercase_wire_name(std::span<std::uint8_t> name) noexcept;

// The number of labels, the root not counted ("." is 0, "a.b." is 2).
std::size_t label_count(DnameView name) noexcept;

// The name without its first label; the root is its own parent.
DnameView parent_of(DnameView name) noexcept;

// `name` with its `count` leftmost labels removed.
DnameView strip_labels(DnameView name, std::size_t count) noexcept;

// The ancestor of `name` that has `labels` labels (name itself when it has
// no more than that).
DnameView ancestor_with_labels(DnameView name, std::size_t labels) noexcept;

// True when `name` is `ancestor` or below it (whole labels).
bool is_at_or_below(DnameView name, DnameView ancestor) noexcept;

// RFC 4034 6.1 canonical order: <0, 0, >0.
int canonical_compare(DnameView a, DnameView b) noexcept;

// True when the first label is "*".
inline bool is_wildcard(DnameView name) noexcept {
  return name.size() >= 2 && name[0] == 1 && name[1] == '*';
}

// The labels an RRSIG counts for `name` (RFC 4034 3.1.3: not a leading "*").
inline std::size_t rrsig_labels(DnameView name) noexcept {
  return label_count(name) - (is_wildcard(name) ? 1 : 0);
}

// "*." + `closest_encloser`.
Dname wildcard_of(DnameView closest_encloser);

// Presentation form with a trailing dot ("." for the root), for logs.
std::string to_text(DnameView name);

// Parses a presentation name ("example.com." or "example.com", "." for the
// root; `\.` and `\DDD` escapes) into canonical wire form.
std::optional<Dname> from_text(std::string_view text);

inline std::span<const std::uint8_t> bytes_of(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace dnsgate::dnssec
