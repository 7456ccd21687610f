// TLS for the encrypted upstreams (DoT, DoH, DoQ), on GnuTLS: one context
// per resolver holds what every connection to it shares (trust, the name
// or address to verify, the SPKI pins, the last session for resumption).
#pragma once

#include <gnutls/gnutls.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/upstream_error.hpp"

namespace dnsgate {

// Owns one gnutls_session_t.
class TlsSession {
 public:
  TlsSession() = default;
  explicit TlsSession(gnutls_session_t session) noexcept : session_(session) {}
  TlsSession(TlsSession&& other) noexcept : session_(other.session_) { other.session_ = nullptr; }
  TlsSession& operator=(TlsSession&& other) noexcept;
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  ~TlsSession();

  gnutls_session_t get() const noexcept { return session_; }
  explicit operator bool() const noexcept { return session_ != nullptr; }

 private:
  gnutls_session_t session_ = nullptr;
};

class TlsClientContext {
 public:
  // Loads the CA file (or the system store); on failure returns nullptr
  // and says why in `error`.
  static std::unique_ptr<TlsClientContext> create(const ResolverConfig& resolver,
                                                  std::string& error);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // A client session with the credentials, the verification target, SNI,
  // `alpn` (empty: none) and the last saved session to resume. `flags` are
  // added to GNUTLS_CLIENT | GNUTLS_NONBLOCK.
  TlsSession new_session(std::string_view alpn, unsigned flags = 0) const;

  // Why a handshake that returned `code` failed: the certificate, or the
  // handshake itself.
  UpstreamError handshake_error(gnutls_session_t session, int code) const noexcept;

  // After a handshake (the chain and, with a name, the name verified by
  // GnuTLS): without a name, the certificate must carry the resolver's IP
  // (tls_certificate); with pins, a certificate of the chain must have a
  // pinned SubjectPublicKeyInfo (tls_pin_mismatch). No error when both hold.
  UpstreamError check_peer(gnutls_session_t session) const noexcept;

  // Keeps the session's resumption data, once a ticket has come; true when
  // there was something new to keep. Only for sessions check_peer() passed.
  bool save_session(gnutls_session_t session);
  bool has_saved_session() const noexcept { return !saved_session_.empty(); }

  // The priority string: TLS 1.2 or 1.3 (QUIC sets its own, 1.3 only).
  static constexpr const char* kPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";

 private:
  TlsClientContext() = default;

  gnutls_certificate_credentials_t credentials_ = nullptr;
  std::string server_name_;                 // SNI and the name to verify; empty: the IP
  std::array<std::uint8_t, 16> address_{};  // the IP to verify when there is no name
  unsigned address_size_ = 0;
  std::vector<std::array<std::uint8_t, 32>> pins_;
  std::vector<std::uint8_t> saved_session_;
};

// The SHA-256 of the DER SubjectPublicKeyInfo of a DER certificate; false
// when it cannot be read.
bool spki_sha256(const gnutls_datum_t& certificate, std::array<std::uint8_t, 32>& digest) noexcept;

// Decodes a 44-character base64 SHA-256 pin; false when it is not one.
bool decode_pin(std::string_view base64, std::array<std::uint8_t, 32>& digest) noexcept;

// Empty when the resolver's TLS settings load (CA file, system store);
// else why not, for `check` and for `run` to say before it starts.
std::string tls_setup_error(const ResolverConfig& resolver);

}  // namespace dnsgate
