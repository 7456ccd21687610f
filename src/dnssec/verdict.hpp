// What validation concluded about one answer or one piece of chain
// material, with the Extended DNS Errors (RFC 8914) that say why.
#pragma once

#include <cstdint>

#include "dnsgate/events.hpp"

namespace dnsgate::dnssec {

namespace ede {
inline constexpr std::uint16_t kNone = 0xFFFF;
inline constexpr std::uint16_t kUnsupportedDnskeyAlgorithm = 1;
inline constexpr std::uint16_t kUnsupportedDsDigest = 2;
inline constexpr std::uint16_t kIndeterminate = 5;
inline constexpr std::uint16_t kBogus = 6;
inline constexpr std::uint16_t kSignatureExpired = 7;
inline constexpr std::uint16_t kSignatureNotYetValid = 8;
inline constexpr std::uint16_t kDnskeyMissing = 9;
inline constexpr std::uint16_t kRrsigsMissing = 10;
inline constexpr std::uint16_t kNsecMissing = 12;
inline constexpr std::uint16_t kUnsupportedNsec3Iterations = 27;
}  // namespace ede

struct Verdict {
  DnssecState state = DnssecState::unchecked;
  std::uint16_t ede = ede::kNone;     // the first EDE: 6, 5, or 1, 2, 27 for insecure
  std::uint16_t detail = ede::kNone;  // the second, more specific one: 7, 8, 9, 10, 12
  const char* why = "";               // for the log: a static string

  static Verdict secure() { return {DnssecState::secure, ede::kNone, ede::kNone, ""}; }
  static Verdict insecure(std::uint16_t code = ede::kNone, const char* why = "") {
    return {DnssecState::insecure, code, ede::kNone, why};
  }
  static Verdict bogus(std::uint16_t detail, const char* why) {
    return {DnssecState::bogus, ede::kBogus, detail, why};
  }
  static Verdict indeterminate(const char* why) {
    return {DnssecState::indeterminate, ede::kIndeterminate, ede::kNone, why};
  }
  bool failed() const noexcept {
    return state == DnssecState::bogus || state == DnssecState::indeterminate;
  }
};

}  // namespace dnsgate::dnssec
