#include "dns/padding.hpp"

#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

namespace {

constexpr std::uint16_t kOptionPadding = 12;
constexpr std::size_t kOptionHeader = 4;

// The offset past the name at `at`, or 0 when it runs off the end.
std::size_t skip_name(std::span<const std::uint8_t> packet, std::size_t at) noexcept {
  while (at < packet.size()) {
    const std::uint8_t length = packet[at];
    if ((length & 0xC0) == 0xC0) return at + 2 <= packet.size() ? at + 2 : 0;
    if (length == 0) return at + 1;
    at += 1 + length;
  }
  return 0;
}

}  // namespace

PaddingPlan plan_padding(std::span<const std::uint8_t> query, std::size_t block) noexcept {
  if (query.size() < kHeaderOctets || block == 0) return {};
  const std::size_t records =
      std::size_t{read_u16(query, 6)} + read_u16(query, 8) + read_u16(query, 10);
  std::size_t at = kHeaderOctets;
  for (std::uint16_t q = read_u16(query, 4); q > 0; --q) {
    at = skip_name(query, at);
    if (at == 0 || at + 4 > query.size()) return {};
    at += 4;
  }
  std::size_t last_type = 0;
  std::size_t last_rdlength_at = 0;
  std::size_t last_rdata = 0;
  for (std::size_t r = 0; r < records; ++r) {
    at = skip_name(query, at);
    if (at == 0 || at + 10 > query.size()) return {};
    last_type = read_u16(query, at);
    last_rdlength_at = at + 8;
    last_rdata = at + 10;
    at = last_rdata + read_u16(query, last_rdlength_at);
    if (at > query.size()) return {};
  }
  // The OPT counts only in the additional section (RFC 6891 6.1.1).
  if (read_u16(query, 10) == 0 || last_type != kTypeOpt || at != query.size()) return {};
  // Options must fill the RDATA exactly: one that claims more than is
  // there would swallow the Padding option added after it.
  std::size_t option = last_rdata;
  while (option + kOptionHeader <= at) {
    if (read_u16(query, option) == kOptionPadding) return {};
    option += kOptionHeader + read_u16(query, option + 2);
  }
  if (option != at) return {};
  const std::size_t unpadded = query.size() + kOptionHeader;
  const std::size_t zeros = (block - unpadded % block) % block;
  const std::size_t rdlength = read_u16(query, last_rdlength_at) + kOptionHeader + zeros;
  if (rdlength > 0xFFFF || unpadded + zeros > 0xFFFF) return {};
  return {kOptionHeader + zeros, last_rdlength_at};
}

void append_padded(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> query,
                   const PaddingPlan& plan) {
  const std::size_t start = out.size();
  out.insert(out.end(), query.begin(), query.end());
  if (plan.extra == 0) return;
  const std::span<std::uint8_t> copy(out.data() + start, query.size());
  write_u16(copy, plan.rdlength_at,
            static_cast<std::uint16_t>(read_u16(copy, plan.rdlength_at) + plan.extra));
  const std::size_t zeros = plan.extra - kOptionHeader;
  out.push_back(0);
  out.push_back(kOptionPadding);
  out.push_back(static_cast<std::uint8_t>(zeros >> 8));
  out.push_back(static_cast<std::uint8_t>(zeros));
  out.insert(out.end(), zeros, 0);
}

}  // namespace dnsgate
