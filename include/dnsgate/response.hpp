// Responses dnsgate writes itself: REFUSED, NXDOMAIN, NOTIMP, SERVFAIL, and
// BADVERS in place of any of them for an EDNS version it does not speak.
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
  badvers = 16,  // extended (RFC 6891 6.1.3): 0 in the header, 1 in the OPT
};

// Extended DNS Errors (RFC 8914) dnsgate attaches to what it synthesizes.
enum class ExtendedError : std::uint16_t {
  none = 0xFFFF,  // attach no EDE option
  dnssec_indeterminate = 5,
  dnssec_bogus = 6,  // with, where one fits, a second, more specific code (DESIGN §9)
  blocked = 15,
  no_reachable_authority = 22,
  network_error = 23,
};

// The UDP payload size dnsgate advertises in its own OPT records (the DNS
// flag day 2020 value: no fragmentation on common paths).
inline constexpr std::uint16_t kAdvertisedUdpPayload = 1232;

// Enough room for any synthesized response: header, a 255-octet name, type,
// class, and an OPT record with two EDE options.
inline constexpr std::size_t kMaxSynthesizedOctets = 12 + 255 + 4 + 11 + 2 * 6;

// What a synthesized response needs to know about the query it answers.
// Small and copyable, so the in-flight table can keep it for a timeout.
struct QueryEcho {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;                 // the query's header flags
  std::span<const std::uint8_t> question;  // QNAME QTYPE QCLASS exactly as asked; empty: none
  EdnsInfo edns;
};

// Builds the view of a parsed query's packet that synthesis needs.
QueryEcho echo_of(const ParsedQuery& query, std::span<const std::uint8_t> packet) noexcept;

// The rcode an answer to `query` carries when dnsgate means `rcode`: BADVERS
// when the query's OPT asks for an EDNS version above 0, which dnsgate does
// not implement (RFC 6891 6.1.3), else `rcode` itself.
Rcode response_rcode(const QueryEcho& query, Rcode rcode) noexcept;

// Writes the response to `out`: the query's id, QR=1, its opcode,
// response_rcode(query, rcode), and the question as asked (QDCOUNT 1), or no
// question when the echo has none (QDCOUNT 0). For a QUERY, RD and CD are
// copied and RA is 1; for any other opcode no flag but QR is set (the others
// are defined for QUERY). AA, TC, Z and AD are always 0. When the query had
// EDNS, one OPT (RFC 6891): payload 1232, the extended rcode, version 0, DO
// copied, no other flag, and one option at most, the EDE `ede` unless it is
// `none` or the answer is BADVERS. Returns the octets written, 0 when `out`
// is too small.
std::size_t synthesize_response(const QueryEcho& query, Rcode rcode, ExtendedError ede,
                                std::span<std::uint8_t> out,
                                ExtendedError second_ede = ExtendedError::none) noexcept;

}  // namespace dnsgate
