// Big-endian reads and writes on packet buffers; callers check bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace dnsgate {

inline std::uint16_t read_u16(std::span<const std::uint8_t> packet, std::size_t at) noexcept {
  return static_cast<std::uint16_t>(packet[at] << 8 | packet[at + 1]);
}

inline std::uint32_t read_u32(std::span<const std::uint8_t> packet, std::size_t at) noexcept {
  return std::uint32_t{read_u16(packet, at)} << 16 | read_u16(packet, at + 2);
}

inline void write_u16(std::span<std::uint8_t> packet, std::size_t at,
                      std::uint16_t value) noexcept {
  packet[at] = static_cast<std::uint8_t>(value >> 8);
  packet[at + 1] = static_cast<std::uint8_t>(value);
}

}  // namespace dnsgate
