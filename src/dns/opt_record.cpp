#include "dns/opt_record.hpp"

#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

namespace {

// The offset past the name at `at`, or 0 when it runs off the end.
std::size_t skip_name(std::span<const std::uint8_t> message, std::size_t at) noexcept {
  while (at < message.size()) {
    const std::uint8_t length = message[at];
    if ((length & 0xC0) == 0xC0) return at + 2 <= message.size() ? at + 2 : 0;
    if (length == 0) return at + 1;
    at += 1 + length;
  }
  return 0;
}

}  // namespace

std::optional<OptLocation> find_opt(std::span<const std::uint8_t> message) noexcept {
  if (message.size() < kHeaderOctets) return std::nullopt;
  const std::size_t additional = read_u16(message, 10);
  if (additional == 0) return std::nullopt;
  const std::size_t before = std::size_t{read_u16(message, 6)} + read_u16(message, 8);
  std::size_t at = kHeaderOctets;
  for (std::uint16_t q = read_u16(message, 4); q > 0; --q) {
    at = skip_name(message, at);
    if (at == 0 || at + 4 > message.size()) return std::nullopt;
    at += 4;
  }
  std::optional<OptLocation> found;
  for (std::size_t record = 0; record < before + additional; ++record) {
    const std::size_t start = at;
    at = skip_name(message, at);
    if (at == 0 || at + 10 > message.size()) return std::nullopt;
    const std::uint16_t type = read_u16(message, at);
    const std::size_t rdlength_at = at + 8;
    at = at + 10 + read_u16(message, rdlength_at);
    if (at > message.size()) return std::nullopt;
    if (record >= before && type == kTypeOpt && !found) {
      found = OptLocation{start, rdlength_at, at, false};
    }
  }
  if (found) found->last = found->end == at && at == message.size();
  return found;
}

std::uint16_t full_rcode(std::span<const std::uint8_t> message) noexcept {
  if (message.size() < kHeaderOctets) return 0;
  const auto low = static_cast<std::uint16_t>(read_u16(message, 2) & flag::kRcodeMask);
  const auto opt = find_opt(message);
  if (!opt) return low;
  // TTL: extended RCODE, version, flags; the TTL starts 4 octets before RDLENGTH.
  return static_cast<std::uint16_t>(message[opt->rdlength_at - 4] << 4 | low);
}

}  // namespace dnsgate
