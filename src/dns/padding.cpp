#include "dns/padding.hpp"

#include "dns/opt_record.hpp"
#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

namespace {

constexpr std::uint16_t kOptionPadding = 12;
constexpr std::size_t kOptionHeader = 4;

}  // namespace

PaddingPlan plan_padding(std::span<const std::uint8_t> query, std::size_t block) noexcept {
  if (block == 0) return {};
  // Only an OPT that is the last record, with nothing after it (a TSIG
  // would break): the option goes at the very end.
  const auto opt = find_opt(query);
  if (!opt || !opt->last) return {};
  const std::size_t last_rdlength_at = opt->rdlength_at;
  const std::size_t last_rdata = last_rdlength_at + 2;
  const std::size_t at = opt->end;
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
