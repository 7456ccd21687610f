// QueryName: the one domain-name type of dnsgate.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace dnsgate {

// RFC 1035 limits, in wire octets (a name's length counts its length octets
// and the terminating root label).
inline constexpr std::size_t kMaxNameOctets = 255;
inline constexpr std::size_t kMaxLabelOctets = 63;

// A domain name kept in uncompressed wire form (length-prefixed labels ending
// with the root label) in a fixed buffer: no allocation, cheap to copy.
// Case is kept exactly as received; comparison ignores ASCII case; output is
// RFC 1035 presentation format with escapes, so a label that contains a `.`
// can never be confused with two labels.
class QueryName {
 public:
  QueryName() = default;  // the root name

  // Accepts a complete, uncompressed wire name: every label length <= 63,
  // ends with the root label exactly at the end of `wire`, total <= 255.
  static std::optional<QueryName> from_wire(std::span<const std::uint8_t> wire) noexcept;

  std::span<const std::uint8_t> wire() const noexcept { return {octets_.data(), length_}; }
  std::size_t wire_length() const noexcept { return length_; }
  std::size_t label_count() const noexcept;
  bool is_root() const noexcept { return length_ == 1; }

  // Presentation format without a trailing dot ("." for the root):
  // `.` inside a label as `\.`, `\` as `\\`, other bytes outside 0x21-0x7E
  // as `\DDD`; `"();@$` are escaped too, so the output reads back as the
  // same name in a zone file.
  std::string to_string() const;
  void append_to(std::string& out) const;

  // ASCII case-insensitive comparison of the label sequences.
  bool equals_ignore_case(const QueryName& other) const noexcept;

 private:
  std::array<std::uint8_t, kMaxNameOctets> octets_{};
  std::uint8_t length_ = 1;  // the root label alone
};

}  // namespace dnsgate
