#include "dnsgate/name.hpp"

#include <algorithm>

#include "dns/ascii.hpp"

namespace dnsgate {

std::optional<QueryName> QueryName::from_wire(std::span<const std::uint8_t> wire) noexcept {
  if (wire.empty() || wire.size() > kMaxNameOctets) return std::nullopt;
  std::size_t at = 0;
  while (true) {
    if (at >= wire.size()) return std::nullopt;
    const std::uint8_t length = wire[at];
    if (length == 0) break;
    if (length > kMaxLabelOctets) return std::nullopt;  // pointers and label types included
    at += 1 + length;
  }
  if (at + 1 != wire.size()) return std::nullopt;
  QueryName name;
  std::copy(wire.begin(), wire.end(), name.octets_.begin());
  name.length_ = static_cast<std::uint8_t>(wire.size());
  return name;
}

std::size_t QueryName::label_count() const noexcept {
  std::size_t count = 0;
  for (std::size_t at = 0; octets_[at] != 0; at += 1 + octets_[at]) ++count;
  return count;
}

namespace {

bool needs_backslash(std::uint8_t c) noexcept {
  switch (c) {
    case '.':
    case '\\':
    case '"':
    case '(':
    case ')':
    case ';':
    case '@':
    case '$':
      return true;
    default:
      return false;
  }
}

}  // namespace

void QueryName::append_to(std::string& out) const {
  if (is_root()) {
    out.push_back('.');
    return;
  }
  for (std::size_t at = 0; octets_[at] != 0; at += 1 + octets_[at]) {
    if (at != 0) out.push_back('.');
    const std::size_t end = at + 1 + octets_[at];
    for (std::size_t i = at + 1; i < end; ++i) {
      const std::uint8_t c = octets_[i];
      if (c < 0x21 || c > 0x7E) {
        out.push_back('\\');
        out.push_back(static_cast<char>('0' + c / 100));
        out.push_back(static_cast<char>('0' + (c / 10) % 10));
        out.push_back(static_cast<char>('0' + c % 10));
      } else {
        if (needs_backslash(c)) out.push_back('\\');
        out.push_back(static_cast<char>(c));
      }
    }
  }
}

std::string QueryName::to_string() const {
  std::string out;
  out.reserve(length_ + 8);
  append_to(out);
  return out;
}

bool QueryName::equals_ignore_case(const QueryName& other) const noexcept {
  if (length_ != other.length_) return false;
  // Length octets are < 64, so lower-casing them is harmless and the
  // comparison still sees label boundaries.
  for (std::size_t i = 0; i < length_; ++i) {
    if (ascii_lower(octets_[i]) != ascii_lower(other.octets_[i])) return false;
  }
  return true;
}

}  // namespace dnsgate
