// ASCII helpers for DNS names: DNS case-insensitivity is ASCII-only
// (RFC 4343), never locale-dependent.
#pragma once

#include <cstdint>

namespace dnsgate {

constexpr std::uint8_t ascii_lower(std::uint8_t c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c | 0x20) : c;
}

}  // namespace dnsgate
