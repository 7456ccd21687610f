#include "dnsgate/allowlist.hpp"

#include <idn2.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "dns/ascii.hpp"

namespace dnsgate {

namespace {

// One table serves both sides: build() validates entries with it and
// allows() folds and screens query labels with it, so the two can never
// disagree about which bytes a hostname label may hold. 0 means "not a
// hostname byte"; NUL itself is therefore rejected too.
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

}  // namespace

std::size_t Allowlist::KeyHash::operator()(std::string_view key) const noexcept {
  // The sets are fixed after build() and queries only probe them, so an
  // unseeded hash cannot be flooded; libstdc++'s murmur-style byte hash is
  // fast on the short keys DNS names make.
  return std::hash<std::string_view>{}(key);
}

std::variant<Allowlist, AllowlistError> Allowlist::build(std::span<const std::string> entries) {
  Allowlist allowlist;
  std::string wire;
  wire.reserve(kMaxNameOctets);
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
    (wildcard ? allowlist.wildcard_suffixes_ : allowlist.literals_).insert(wire);
  }
  return allowlist;
}

bool Allowlist::allows(const QueryName& name) const noexcept {
  const std::span<const std::uint8_t> wire = name.wire();
  if (wire.size() < 2 || wire.size() > kMaxNameOctets) return false;  // root, or not a name

  // Fold into a stack copy while screening every label byte: a label holding
  // `.`, NUL, `*` or any byte a hostname cannot hold matches nothing, which
  // is the contract, and it stops a one-label "www.example" from ever being
  // read as two labels by anything downstream that prints the name.
  std::array<char, kMaxNameOctets> folded;
  std::size_t at = 0;
  while (true) {
    const std::uint8_t length = wire[at];
    if (length == 0) {
      if (at + 1 != wire.size()) return false;
      folded[at] = '\0';
      break;
    }
    // QueryName guarantees the shape; checking again keeps this function
    // safe on its own.
    if (length > kMaxLabelOctets || at + 1 + length >= wire.size()) return false;
    folded[at] = static_cast<char>(length);
    const std::size_t label_end = at + 1 + length;
    for (std::size_t i = at + 1; i < label_end; ++i) {
      const std::uint8_t byte = kHostnameFold[wire[i]];
      if (byte == 0) return false;
      folded[i] = static_cast<char>(byte);
    }
    at = label_end;
  }
  const std::string_view key(folded.data(), wire.size());

  if (literals_.find(key) != literals_.end()) return true;
  if (wildcard_suffixes_.empty()) return false;

  // Each proper suffix with at least one label in front of it, down to the
  // last real label; the root alone is never a wildcard suffix.
  for (std::size_t suffix = 1 + static_cast<std::uint8_t>(folded[0]); folded[suffix] != '\0';
       suffix += 1 + static_cast<std::uint8_t>(folded[suffix])) {
    const std::string_view suffix_key(folded.data() + suffix, wire.size() - suffix);
    if (wildcard_suffixes_.find(suffix_key) != wildcard_suffixes_.end()) return true;
  }
  return false;
}

}  // namespace dnsgate
