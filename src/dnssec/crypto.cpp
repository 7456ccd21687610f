#include "dnssec/crypto.hpp"

// libdnssec's headers declare C functions without extern "C".
extern "C" {
#include <libdnssec/binary.h>
#include <libdnssec/crypto.h>
#include <libdnssec/error.h>
#include <libdnssec/key.h>
#include <libdnssec/keytag.h>
#include <libdnssec/sign.h>
}

#include <algorithm>
#include <cstring>
#include <mutex>

namespace dnsgate::dnssec {

namespace {

void init_once() {
  static std::once_flag once;
  std::call_once(once, [] { dnssec_crypto_init(); });
}

dnssec_binary_t binary_of(std::span<const std::uint8_t> bytes) noexcept {
  // libdnssec takes non-const pointers but does not write through them here.
  return {bytes.size(), const_cast<std::uint8_t*>(bytes.data())};
}

struct SignContext {
  dnssec_sign_ctx_t* ctx = nullptr;
  ~SignContext() {
    if (ctx != nullptr) dnssec_sign_free(ctx);
  }
};

}  // namespace

void init_crypto() {
  init_once();
}

bool algorithm_supported(std::uint8_t algorithm) noexcept {
  switch (algorithm) {
    case 8:
    case 10:
    case 13:
    case 14:
    case 15:
    case 16:
      init_once();
      return dnssec_algorithm_key_support(static_cast<dnssec_key_algorithm_t>(algorithm));
    default:
      return false;
  }
}

bool digest_supported(std::uint8_t digest) noexcept {
  return digest == 2 || digest == 4;
}

std::uint16_t key_tag(std::span<const std::uint8_t> dnskey_rdata) noexcept {
  // RFC 4034 Appendix B; for algorithm 1 the rule differs, but it is never trusted here.
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < dnskey_rdata.size(); ++i) {
    sum += (i & 1) != 0 ? dnskey_rdata[i] : static_cast<std::uint32_t>(dnskey_rdata[i]) << 8;
  }
  sum += (sum >> 16) & 0xFFFF;
  return static_cast<std::uint16_t>(sum & 0xFFFF);
}

void PublicKey::Free::operator()(dnssec_key* key) const noexcept {
  dnssec_key_free(key);
}

std::optional<PublicKey> PublicKey::from_dnskey(DnameView owner,
                                                std::span<const std::uint8_t> rdata) {
  if (rdata.size() < 5 || rdata[2] != 3 || !algorithm_supported(rdata[3])) return std::nullopt;
  init_once();
  dnssec_key_t* raw = nullptr;
  if (dnssec_key_new(&raw) != DNSSEC_EOK) return std::nullopt;
  PublicKey key;
  key.key_ = std::shared_ptr<dnssec_key>(raw, Free{});
  const dnssec_binary_t wire = binary_of(rdata);
  if (dnssec_key_set_rdata(raw, &wire) != DNSSEC_EOK) return std::nullopt;
  if (dnssec_key_set_dname(raw, bytes_of(owner).data()) != DNSSEC_EOK) return std::nullopt;
  if (!dnssec_key_can_verify(raw)) return std::nullopt;
  key.rdata_ = std::make_shared<const std::string>(reinterpret_cast<const char*>(rdata.data()),
                                                   rdata.size());
  key.tag_ = key_tag(rdata);
  key.flags_ = static_cast<std::uint16_t>(rdata[0] << 8 | rdata[1]);
  key.algorithm_ = rdata[3];
  return key;
}

bool PublicKey::verify(std::span<const std::uint8_t> data,
                       std::span<const std::uint8_t> signature) const {
  if (!key_ || signature.empty()) return false;
  SignContext sign;
  if (dnssec_sign_new(&sign.ctx, key_.get()) != DNSSEC_EOK) return false;
  const dnssec_binary_t input = binary_of(data);
  if (dnssec_sign_add(sign.ctx, &input) != DNSSEC_EOK) return false;
  const dnssec_binary_t sig = binary_of(signature);
  return dnssec_sign_verify(sign.ctx, false, &sig) == DNSSEC_EOK;
}

bool PublicKey::matches_ds(std::span<const std::uint8_t> ds_rdata) const {
  if (!key_ || ds_rdata.size() < 5) return false;
  const std::uint16_t tag = static_cast<std::uint16_t>(ds_rdata[0] << 8 | ds_rdata[1]);
  if (tag != tag_ || ds_rdata[2] != algorithm_ || !digest_supported(ds_rdata[3])) return false;
  dnssec_binary_t made{};
  if (dnssec_key_create_ds(key_.get(), static_cast<dnssec_key_digest_t>(ds_rdata[3]), &made) !=
      DNSSEC_EOK) {
    return false;
  }
  const bool same =
      made.size == ds_rdata.size() && std::memcmp(made.data, ds_rdata.data(), made.size) == 0;
  dnssec_binary_free(&made);
  return same;
}

}  // namespace dnsgate::dnssec
