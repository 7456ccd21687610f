// EDNS(0) Padding (RFC 7830) of queries sent over encrypted transports,
// with RFC 8467's block-length policy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dnsgate {

inline constexpr std::size_t kPaddingBlock = 128;  // RFC 8467 4.1, for queries

// How a query would be padded: `extra` octets (the option's 4-octet header
// and its zeros) go at the end of the OPT record whose RDLENGTH is at
// `rdlength_at`. extra == 0 when the query is left as it is: no OPT, OPT
// not the last record (a TSIG or SIG(0) follows and would break), options
// that do not fill the OPT's RDATA exactly, or the query already carries a
// Padding option.
struct PaddingPlan {
  std::size_t extra = 0;
  std::size_t rdlength_at = 0;
};

// `query` must be well formed (parse_query accepted it).
PaddingPlan plan_padding(std::span<const std::uint8_t> query,
                         std::size_t block = kPaddingBlock) noexcept;

// Appends `query` to `out` padded by `plan` (as it is when plan.extra == 0).
void append_padded(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> query,
                   const PaddingPlan& plan);

}  // namespace dnsgate
