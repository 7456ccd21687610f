// The cryptography of DNSSEC, from Knot's libdnssec (on GnuTLS, the TLS
// upstreams' library too): DNSKEY public keys, RRSIG verification, DS
// digests. docs/dnssec.md says why this library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "dnssec/dname.hpp"

struct dnssec_key;

namespace dnsgate::dnssec {

// Initializes libdnssec's crypto once per process; done by the Validator's
// constructor so the first answer does not pay for it.
void init_crypto();

// Algorithms 8, 10, 13, 14, 15, 16 when GnuTLS has them (DESIGN §9).
bool algorithm_supported(std::uint8_t algorithm) noexcept;
// DS digests 2 (SHA-256) and 4 (SHA-384).
bool digest_supported(std::uint8_t digest) noexcept;

// RFC 4034 Appendix B, over the DNSKEY RDATA.
std::uint16_t key_tag(std::span<const std::uint8_t> dnskey_rdata) noexcept;

// One DNSKEY, parsed once and kept for as long as the key is trusted.
class PublicKey {
 public:
  // None when the RDATA is not a key of a supported algorithm.
  static std::optional<PublicKey> from_dnskey(DnameView owner, std::span<const std::uint8_t> rdata);

  std::uint16_t tag() const noexcept { return tag_; }
  std::uint8_t algorithm() const noexcept { return algorithm_; }
  std::uint16_t flags() const noexcept { return flags_; }
  bool is_zone_key() const noexcept { return (flags_ & 0x0100) != 0; }
  bool is_revoked() const noexcept { return (flags_ & 0x0080) != 0; }
  // The DNSKEY RDATA: what tells this key from another of the same tag.
  const std::string& rdata() const noexcept { return *rdata_; }

  // True when `signature` (RRSIG wire format) signs `data` with this key.
  bool verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) const;

  // True when `ds_rdata` (key tag, algorithm, digest type, digest) is this key's.
  bool matches_ds(std::span<const std::uint8_t> ds_rdata) const;

 private:
  struct Free {
    void operator()(dnssec_key* key) const noexcept;
  };
  std::shared_ptr<dnssec_key> key_;  // shared: a key set is copied into several waiters' views
  std::shared_ptr<const std::string> rdata_;
  std::uint16_t tag_ = 0;
  std::uint16_t flags_ = 0;
  std::uint8_t algorithm_ = 0;
};

}  // namespace dnsgate::dnssec
