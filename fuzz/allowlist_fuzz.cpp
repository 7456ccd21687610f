// Allowlist::allows on arbitrary wire names, checked against a slow matcher
// written here from the contract alone (DESIGN.md, "Allowlist matching"):
// split the name into labels, refuse any label holding a byte other than an
// ASCII letter, digit, '-' or '_', lower-case, then compare label lists with
// each entry: a literal matches the same labels, "*.suffix" matches one or
// more labels in front of the suffix and never the suffix itself. The batch
// path (Allowlist::allows_batch) must agree too; wildcards at many label
// counts give some names more probes than a batch keeps per name.
//
// Input: the first octet picks how the rest becomes a name.
//   even: the rest is taken as a complete wire name (QueryName::from_wire);
//   odd:  the rest is read as labels, each a length octet (mod 64, cut at
//         the end of the input) and its octets, until 255 wire octets, so
//         almost every input is a valid name to compare.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dnsgate/allowlist.hpp"
#include "dnsgate/name.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace dnsgate;
using Labels = std::vector<std::string>;

// As an operator would write them; the reference gets the same entries
// already as labels (the IDN entry in its A-label form).
const std::vector<std::string> kEntries = {
    "example.com",    "www.example.com.",
    "*.example.org",  "API.Example.NET",
    "*.a.b.c",        "_dmarc.example.com",
    "x-y.z",          "*.deep.x-y.z",
    "bücher.example", "*.0",
    "*.ab",           "*.d.c.b.a",
    "*.e.d.c.b.a",    "f.e.d.c.b.a",
};

struct RefEntry {
  bool wildcard = false;
  Labels labels;  // lower case; for a wildcard, the suffix after "*."
};

const std::vector<RefEntry> kReference = {
    {false, {"example", "com"}},
    {false, {"www", "example", "com"}},
    {true, {"example", "org"}},
    {false, {"api", "example", "net"}},
    {true, {"a", "b", "c"}},
    {false, {"_dmarc", "example", "com"}},
    {false, {"x-y", "z"}},
    {true, {"deep", "x-y", "z"}},
    {false, {"xn--bcher-kva", "example"}},
    {true, {"0"}},
    {true, {"ab"}},
    {true, {"d", "c", "b", "a"}},
    {true, {"e", "d", "c", "b", "a"}},
    {false, {"f", "e", "d", "c", "b", "a"}},
};

const Allowlist& allowlist() {
  static const Allowlist built = [] {
    auto result = Allowlist::build(kEntries);
    FUZZ_CHECK(std::holds_alternative<Allowlist>(result));
    return std::get<Allowlist>(std::move(result));
  }();
  return built;
}

bool hostname_byte(std::uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// nullopt: a label holds a byte that can match nothing.
std::optional<Labels> reference_labels(std::span<const std::uint8_t> wire) {
  Labels labels;
  std::size_t at = 0;
  while (wire[at] != 0) {
    std::string label;
    for (std::size_t i = 0; i < wire[at]; ++i) {
      const std::uint8_t c = wire[at + 1 + i];
      if (!hostname_byte(c)) return std::nullopt;
      label.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
    }
    labels.push_back(label);
    at += 1 + wire[at];
  }
  return labels;
}

bool reference_allows(std::span<const std::uint8_t> wire) {
  const auto labels = reference_labels(wire);
  if (!labels || labels->empty()) return false;
  for (const RefEntry& entry : kReference) {
    if (!entry.wildcard) {
      if (*labels == entry.labels) return true;
      continue;
    }
    if (labels->size() <= entry.labels.size()) continue;
    const std::size_t front = labels->size() - entry.labels.size();
    if (Labels(labels->begin() + static_cast<std::ptrdiff_t>(front), labels->end()) ==
        entry.labels) {
      return true;
    }
  }
  return false;
}

std::optional<QueryName> name_from(std::span<const std::uint8_t> input) {
  if (input.empty()) return std::nullopt;
  const auto rest = input.subspan(1);
  if ((input[0] & 1) == 0) return QueryName::from_wire(rest);
  std::vector<std::uint8_t> wire;
  std::size_t at = 0;
  while (at < rest.size()) {
    std::size_t length = rest[at] % 64;
    ++at;
    if (length == 0) break;
    if (length > rest.size() - at) length = rest.size() - at;
    if (length == 0 || wire.size() + 1 + length + 1 > kMaxNameOctets) break;
    wire.push_back(static_cast<std::uint8_t>(length));
    wire.insert(wire.end(), rest.begin() + static_cast<std::ptrdiff_t>(at),
                rest.begin() + static_cast<std::ptrdiff_t>(at + length));
    at += length;
  }
  wire.push_back(0);
  return QueryName::from_wire(wire);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> input(data, data + size);
  const auto name = name_from(input);
  if (!name) return 0;
  const bool fast = allowlist().allows(*name);
  const bool slow = reference_allows(name->wire());
  if (fast != slow) {
    std::fprintf(stderr,
                 "allowlist disagrees with the reference on \"%s\": allows=%d expected=%d\n",
                 name->to_string().c_str(), fast, slow);
  }
  FUZZ_CHECK(fast == slow);
  // The batch path answers the same, among other names and repeated.
  static const QueryName kOther = *QueryName::from_wire(std::vector<std::uint8_t>{
      3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'o', 'r', 'g', 0});
  const std::array<const QueryName*, 3> batch = {&kOther, &*name, &*name};
  std::array<bool, 3> allowed{};
  allowlist().allows_batch(batch, allowed);
  FUZZ_CHECK(allowed[0] && allowed[1] == slow && allowed[2] == slow);
  // The empty allowlist allows nothing.
  FUZZ_CHECK(!Allowlist{}.allows(*name));
  return 0;
}
