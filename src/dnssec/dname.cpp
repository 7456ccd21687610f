#include "dnssec/dname.hpp"

#include <algorithm>
#include <array>

namespace dnsgate::dnssec {

namespace {

std::uint8_t lower(std::uint8_t c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<std::uint8_t>(c + ('a' - 'A')) : c;
}

// Offsets of each label's length octet, leftmost first; the count.
std::size_t label_offsets(DnameView name, std::array<std::uint8_t, kMaxLabels>& at) noexcept {
  std::size_t count = 0;
  std::size_t i = 0;
  while (i < name.size() && name[i] != 0 && count < kMaxLabels) {
    at[count++] = static_cast<std::uint8_t>(i);
    i += 1 + static_cast<std::uint8_t>(name[i]);
  }
  return count;
}

}  // namespace

void lowercase_wire_name(std::span<std::uint8_t> name) noexcept {
  std::size_t i = 0;
  while (i < name.size() && name[i] != 0) {
    const std::size_t length = name[i];
    for (std::size_t k = 1; k <= length && i + k < name.size(); ++k) {
      name[i + k] = lower(name[i + k]);
    }
    i += 1 + length;
  }
}

std::size_t label_count(DnameView name) noexcept {
  std::size_t count = 0;
  std::size_t i = 0;
  while (i < name.size() && name[i] != 0) {
    ++count;
    i += 1 + static_cast<std::uint8_t>(name[i]);
  }
  return count;
}

DnameView parent_of(DnameView name) noexcept {
  if (name.empty() || name[0] == 0) return name;
  const std::size_t skip = 1 + static_cast<std::uint8_t>(name[0]);
  return skip < name.size() ? name.substr(skip) : DnameView{};
}

DnameView strip_labels(DnameView name, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) name = parent_of(name);
  return name;
}

DnameView ancestor_with_labels(DnameView name, std::size_t labels) noexcept {
  const std::size_t have = label_count(name);
  return have <= labels ? name : strip_labels(name, have - labels);
}

bool is_at_or_below(DnameView name, DnameView ancestor) noexcept {
  const std::size_t have = label_count(name);
  const std::size_t want = label_count(ancestor);
  if (have < want) return false;
  return strip_labels(name, have - want) == ancestor;
}

int canonical_compare(DnameView a, DnameView b) noexcept {
  std::array<std::uint8_t, kMaxLabels> at_a{};
  std::array<std::uint8_t, kMaxLabels> at_b{};
  std::size_t na = label_offsets(a, at_a);
  std::size_t nb = label_offsets(b, at_b);
  while (na > 0 && nb > 0) {
    --na;
    --nb;
    const DnameView la = a.substr(at_a[na] + 1, static_cast<std::uint8_t>(a[at_a[na]]));
    const DnameView lb = b.substr(at_b[nb] + 1, static_cast<std::uint8_t>(b[at_b[nb]]));
    // Octet order of the lower-cased labels, shorter first on a common prefix.
    const std::size_t common = std::min(la.size(), lb.size());
    for (std::size_t i = 0; i < common; ++i) {
      const auto ca = lower(static_cast<std::uint8_t>(la[i]));
      const auto cb = lower(static_cast<std::uint8_t>(lb[i]));
      if (ca != cb) return ca < cb ? -1 : 1;
    }
    if (la.size() != lb.size()) return la.size() < lb.size() ? -1 : 1;
  }
  if (na == nb) return 0;
  return na < nb ? -1 : 1;
}

Dname wildcard_of(DnameView closest_encloser) {
  Dname out;
  out.reserve(closest_encloser.size() + 2);
  out.push_back('\1');
  out.push_back('*');
  out.append(closest_encloser);
  return out;
}

std::string to_text(DnameView name) {
  if (name.empty() || name[0] == 0) return ".";
  std::string out;
  std::size_t i = 0;
  while (i < name.size() && name[i] != 0) {
    const std::size_t length = static_cast<std::uint8_t>(name[i]);
    for (std::size_t k = 1; k <= length && i + k < name.size(); ++k) {
      const auto c = static_cast<std::uint8_t>(name[i + k]);
      if (c == '.' || c == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(c));
      } else if (c < 0x21 || c > 0x7E) {
        out.push_back('\\');
        out.push_back(static_cast<char>('0' + c / 100));
        out.push_back(static_cast<char>('0' + c / 10 % 10));
        out.push_back(static_cast<char>('0' + c % 10));
      } else {
        out.push_back(static_cast<char>(c));
      }
    }
    out.push_back('.');
    i += 1 + length;
  }
  return out;
}

std::optional<Dname> from_text(std::string_view text) {
  Dname out;
  if (text == ".") return Dname(1, '\0');
  std::string label;
  auto close_label = [&]() -> bool {
    if (label.empty() || label.size() > 63) return false;
    out.push_back(static_cast<char>(label.size()));
    for (const char c : label)
      out.push_back(static_cast<char>(lower(static_cast<std::uint8_t>(c))));
    label.clear();
    return true;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (!close_label()) return std::nullopt;
    } else if (c == '\\') {
      if (i + 1 >= text.size()) return std::nullopt;
      if (text[i + 1] >= '0' && text[i + 1] <= '9') {
        if (i + 3 >= text.size()) return std::nullopt;
        int value = 0;
        for (std::size_t k = 1; k <= 3; ++k) {
          const char d = text[i + k];
          if (d < '0' || d > '9') return std::nullopt;
          value = value * 10 + (d - '0');
        }
        if (value > 255) return std::nullopt;
        label.push_back(static_cast<char>(value));
        i += 3;
      } else {
        label.push_back(text[++i]);
      }
    } else {
      label.push_back(c);
    }
  }
  if (!label.empty() && !close_label()) return std::nullopt;
  out.push_back('\0');
  if (out.size() > 255) return std::nullopt;
  return out;
}

}  // namespace dnsgate::dnssec
