// Responses dnsgate writes itself: REFUSED, NXDOMAIN, NOTIMP, SERVFAIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dnsgate/parser.hpp"

namespace dnsgate {

enum class Rcode : std::uint8_t {
  noerror = 0,
  formerr = 1,
  servfail = 2,
  nxdomain = 3,
  notimp = 4,
  refused = 5,
};

// Extended DNS Errors (RFC 8914) dnsgate attaches to what it synthesizes.
enum class ExtendedError : std::uint16_t {
  none = 0xFFFF,  // attach no EDE option
  blocked = 15,
  no_reachable_authority = 22,
  network_error = 23,
};

// The UDP payload size dnsgate advertises in its own OPT records (the DNS
// flag day 2020 value: no fragmentation on common paths).
inline constexpr std::uint16_t kAdvertisedUdpPayload = 1232;

// Enough room for any synthesized response: header, a 255-octet name, type,
// class, and an OPT record with one EDE option.
inline constexpr std::size_t kMaxSynthesizedOctets = 12 + 255 + 4 + 11 + 6;

// What a synthesized response needs to know about the query it answers.
// Small and copyable, so the in-flight table can keep it for a timeout.
struct QueryEcho {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;                 // the query's header flags
  std::span<const std::uint8_t> question;  // QNAME QTYPE QCLASS exactly as asked
  EdnsInfo edns;
};

// Builds the view of a parsed query's packet that synthesis needs.
QueryEcho echo_of(const ParsedQuery& query, std::span<const std::uint8_t> packet) noexcept;

// Writes the response to `out`: the query's id, QR=1, its opcode, RD and CD
// copied, RA=1, `rcode`, the question as asked; when the query had EDNS, an
// OPT (payload 1232, DO copied) carrying `ede` unless it is `none`.
// Returns the octets written, 0 when `out` is too small.
std::size_t synthesize_response(const QueryEcho& query, Rcode rcode, ExtendedError ede,
                                std::span<std::uint8_t> out) noexcept;

}  // namespace dnsgate
