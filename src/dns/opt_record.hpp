// Finding a message's OPT record (RFC 6891) without parsing the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace dnsgate {

// The OPT record of the additional section: where it starts (its owner
// name), where its RDLENGTH is, where it ends, and whether it is the
// message's last record with nothing after it.
struct OptLocation {
  std::size_t start = 0;
  std::size_t rdlength_at = 0;
  std::size_t end = 0;
  bool last = false;
};

// Walks the records the header announces over the octets present; none
// when the additional section holds no OPT or the message is cut short.
std::optional<OptLocation> find_opt(std::span<const std::uint8_t> message) noexcept;

// The whole RCODE of a response: the header's 4 bits and, with an OPT, its
// 8 extended bits above them (RFC 6891 6.1.3): BADVERS is 16.
std::uint16_t full_rcode(std::span<const std::uint8_t> message) noexcept;

}  // namespace dnsgate
