#include "dnsgate/response.hpp"

#include <algorithm>

#include "dns/wire.hpp"

namespace dnsgate {

namespace {

constexpr std::uint16_t kOptionExtendedError = 15;  // RFC 8914
constexpr std::uint16_t kEdnsDoBit = 0x8000;
constexpr std::size_t kOptFixedOctets = 11;  // root, TYPE, CLASS, TTL, RDLENGTH
constexpr std::size_t kEdeOptionOctets = 6;  // code, length, INFO-CODE

}  // namespace

QueryEcho echo_of(const ParsedQuery& query, std::span<const std::uint8_t> packet) noexcept {
  QueryEcho echo;
  echo.id = query.header.id;
  echo.flags = query.header.flags;
  echo.question = packet.subspan(kHeaderOctets, query.question_end - kHeaderOctets);
  echo.edns = query.edns;
  return echo;
}

Rcode response_rcode(const QueryEcho& query, Rcode rcode) noexcept {
  return query.edns.present && query.edns.version > 0 ? Rcode::badvers : rcode;
}

std::size_t synthesize_response(const QueryEcho& query, Rcode rcode, ExtendedError ede,
                                std::span<std::uint8_t> out, ExtendedError second_ede) noexcept {
  const auto sent = static_cast<std::uint16_t>(response_rcode(query, rcode));
  // BADVERS says only which version to speak: the verdict comes with the retry.
  const bool with_ede = query.edns.present && ede != ExtendedError::none &&
                        sent != static_cast<std::uint16_t>(Rcode::badvers);
  const bool with_second = with_ede && second_ede != ExtendedError::none;
  const std::size_t ede_octets =
      (with_ede ? kEdeOptionOctets : 0) + (with_second ? kEdeOptionOctets : 0);
  const std::size_t size = kHeaderOctets + query.question.size() +
                           (query.edns.present ? kOptFixedOctets : 0) + ede_octets;
  if (out.size() < size) return 0;

  const std::uint16_t opcode = query.flags & flag::kOpcodeMask;
  auto flags = static_cast<std::uint16_t>(flag::kQr | opcode | (sent & flag::kRcodeMask));
  if (opcode >> flag::kOpcodeShift == kOpcodeQuery) {
    flags |= static_cast<std::uint16_t>((query.flags & (flag::kRd | flag::kCd)) | flag::kRa);
  }
  write_u16(out, 0, query.id);
  write_u16(out, 2, flags);
  write_u16(out, 4, query.question.empty() ? 0 : 1);
  write_u16(out, 6, 0);
  write_u16(out, 8, 0);
  write_u16(out, 10, query.edns.present ? 1 : 0);
  std::copy(query.question.begin(), query.question.end(), out.begin() + kHeaderOctets);

  std::size_t at = kHeaderOctets + query.question.size();
  if (query.edns.present) {
    out[at] = 0;  // the root owns OPT
    write_u16(out, at + 1, kTypeOpt);
    write_u16(out, at + 3, kAdvertisedUdpPayload);
    out[at + 5] = static_cast<std::uint8_t>(sent >> 4);  // the extended rcode's upper 8 bits
    out[at + 6] = 0;                                     // version 0
    write_u16(out, at + 7, query.edns.dnssec_ok ? kEdnsDoBit : 0);
    write_u16(out, at + 9, static_cast<std::uint16_t>(ede_octets));
    at += kOptFixedOctets;
    for (const ExtendedError code : {ede, second_ede}) {
      if (!with_ede || code == ExtendedError::none) continue;
      write_u16(out, at, kOptionExtendedError);
      write_u16(out, at + 2, 2);
      write_u16(out, at + 4, static_cast<std::uint16_t>(code));
      at += kEdeOptionOctets;
    }
  }
  return at;
}

}  // namespace dnsgate
