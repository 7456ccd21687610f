// The cell's hostname allowlist.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <variant>

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
// matches nothing. Cost per lookup is one hash probe per label of the query
// name, whatever the number of entries, and allocates nothing.
class Allowlist {
 public:
  Allowlist() = default;  // allows nothing

  // Validates and compiles entries as an operator writes them: one trailing
  // dot ignored, Unicode converted to A-labels (IDNA 2008 via libidn2),
  // labels <= 63 octets, names <= 255. Any `*` other than one leading
  // wildcard label, an empty label, or a byte outside letters, digits, `-`,
  // `_` is an error naming the entry.
  static std::variant<Allowlist, AllowlistError> build(std::span<const std::string> entries);

  bool allows(const QueryName& name) const noexcept;

  std::size_t literal_count() const noexcept { return literals_.size(); }
  std::size_t wildcard_count() const noexcept { return wildcard_suffixes_.size(); }

 private:
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const noexcept;
  };
  struct KeyEqual {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };
  using KeySet = std::unordered_set<std::string, KeyHash, KeyEqual>;

  // Keys are lower-cased uncompressed wire names (length octets included),
  // so a `.` inside a label can never match a label boundary.
  KeySet literals_;
  KeySet wildcard_suffixes_;
};

}  // namespace dnsgate
