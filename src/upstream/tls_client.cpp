#include "upstream/tls_client.hpp"

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include <cstring>

namespace dnsgate {

TlsSession& TlsSession::operator=(TlsSession&& other) noexcept {
  if (this != &other) {
    if (session_ != nullptr) gnutls_deinit(session_);
    session_ = other.session_;
    other.session_ = nullptr;
  }
  return *this;
}

TlsSession::~TlsSession() {
  if (session_ != nullptr) gnutls_deinit(session_);
}

std::unique_ptr<TlsClientContext> TlsClientContext::create(const ResolverConfig& resolver,
                                                           std::string& error) {
  std::unique_ptr<TlsClientContext> context(new TlsClientContext());
  if (gnutls_certificate_allocate_credentials(&context->credentials_) < 0) {
    error = "cannot allocate TLS credentials";
    return nullptr;
  }
  if (resolver.ca_file.empty()) {
    const int loaded = gnutls_certificate_set_x509_system_trust(context->credentials_);
    if (loaded <= 0) {
      error = "the system's CA store holds no certificate (set caFile)";
      return nullptr;
    }
  } else {
    const int loaded = gnutls_certificate_set_x509_trust_file(
        context->credentials_, resolver.ca_file.c_str(), GNUTLS_X509_FMT_PEM);
    if (loaded <= 0) {
      error = "caFile " + resolver.ca_file + " holds no PEM certificate" +
              (loaded < 0 ? std::string(" (") + gnutls_strerror(loaded) + ")" : std::string());
      return nullptr;
    }
  }
  context->server_name_ = resolver.tls_server_name;
  sockaddr_storage address{};
  resolver.address.to_sockaddr(address);
  if (address.ss_family == AF_INET6) {
    std::memcpy(context->address_.data(),
                &reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr, 16);
    context->address_size_ = 16;
  } else {
    std::memcpy(context->address_.data(), &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr,
                4);
    context->address_size_ = 4;
  }
  for (const std::string& pin : resolver.spki_pins) {
    std::array<std::uint8_t, 32> digest{};
    if (!decode_pin(pin, digest)) {
      error = "spkiPins: \"" + pin + "\" is not a base64 SHA-256 digest";
      return nullptr;
    }
    context->pins_.push_back(digest);
  }
  return context;
}

TlsClientContext::~TlsClientContext() {
  if (credentials_ != nullptr) gnutls_certificate_free_credentials(credentials_);
}

TlsSession TlsClientContext::new_session(std::string_view alpn, unsigned flags) const {
  gnutls_session_t raw = nullptr;
  if (gnutls_init(&raw, GNUTLS_CLIENT | GNUTLS_NONBLOCK | flags) < 0) return {};
  TlsSession session(raw);
  if (gnutls_priority_set_direct(raw, kPriority, nullptr) < 0 ||
      gnutls_credentials_set(raw, GNUTLS_CRD_CERTIFICATE, credentials_) < 0) {
    return {};
  }
  if (!server_name_.empty()) {
    gnutls_server_name_set(raw, GNUTLS_NAME_DNS, server_name_.data(), server_name_.size());
    gnutls_session_set_verify_cert(raw, server_name_.c_str(), 0);
  } else {
    // No name configured: the chain is verified here and the IP address in
    // check_peer(); no SNI is sent (RFC 6066 forbids IP literals in SNI).
    gnutls_session_set_verify_cert(raw, nullptr, 0);
  }
  if (!alpn.empty()) {
    gnutls_datum_t protocol{reinterpret_cast<unsigned char*>(const_cast<char*>(alpn.data())),
                            static_cast<unsigned>(alpn.size())};
    gnutls_alpn_set_protocols(raw, &protocol, 1, GNUTLS_ALPN_MANDATORY);
  }
  if (!saved_session_.empty()) {
    gnutls_session_set_data(raw, saved_session_.data(), saved_session_.size());
  }
  return session;
}

UpstreamError TlsClientContext::handshake_error(gnutls_session_t session, int code) const noexcept {
  if (code == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || code == GNUTLS_E_CERTIFICATE_ERROR) {
    return {UpstreamErrorKind::tls_certificate, 0};
  }
  // The peer went away mid-handshake (a restart, a listener closing):
  // nothing was wrong with TLS itself, and another attempt may work.
  if (code == GNUTLS_E_PREMATURE_TERMINATION || code == GNUTLS_E_PULL_ERROR ||
      code == GNUTLS_E_PUSH_ERROR) {
    return {UpstreamErrorKind::connection_closed, 0};
  }
  // (unsigned)-1: no verification took place.
  const unsigned status =
      session != nullptr ? gnutls_session_get_verify_cert_status(session) : 0U - 1U;
  if (status != 0 && status != 0U - 1U) return {UpstreamErrorKind::tls_certificate, 0};
  return {UpstreamErrorKind::tls_handshake, 0};
}

UpstreamError TlsClientContext::check_peer(gnutls_session_t session) const noexcept {
  // A resumed session shows no certificate (TLS 1.3 sends none); it
  // resumes one that passed these checks, since only such are saved.
  if (gnutls_session_is_resumed(session) != 0) return {};
  unsigned count = 0;
  const gnutls_datum_t* chain = gnutls_certificate_get_peers(session, &count);
  if (chain == nullptr || count == 0) return {UpstreamErrorKind::tls_certificate, 0};
  if (server_name_.empty()) {
    gnutls_x509_crt_t leaf = nullptr;
    if (gnutls_x509_crt_init(&leaf) < 0) return {UpstreamErrorKind::tls_certificate, 0};
    const bool carries_ip = gnutls_x509_crt_import(leaf, &chain[0], GNUTLS_X509_FMT_DER) >= 0 &&
                            gnutls_x509_crt_check_ip(leaf, address_.data(), address_size_, 0) != 0;
    gnutls_x509_crt_deinit(leaf);
    if (!carries_ip) return {UpstreamErrorKind::tls_certificate, 0};
  }
  if (pins_.empty()) return {};
  for (unsigned i = 0; i < count; ++i) {
    std::array<std::uint8_t, 32> digest{};
    if (!spki_sha256(chain[i], digest)) continue;
    for (const auto& pin : pins_) {
      if (pin == digest) return {};
    }
  }
  return {UpstreamErrorKind::tls_pin_mismatch, 0};
}

bool TlsClientContext::save_session(gnutls_session_t session) {
  // TLS 1.3 tickets come after the handshake; only a session for which one
  // arrived (or a TLS 1.2 session) can be resumed. GnuTLS invalidates a
  // session that ends without close_notify, so callers save early: as soon
  // as data has been read.
  const bool tls13 = gnutls_protocol_get_version(session) == GNUTLS_TLS1_3;
  if (tls13 && (gnutls_session_get_flags(session) & GNUTLS_SFLAGS_SESSION_TICKET) == 0) {
    return false;
  }
  gnutls_datum_t data{};
  if (gnutls_session_get_data2(session, &data) < 0) return false;
  saved_session_.assign(data.data, data.data + data.size);
  gnutls_free(data.data);
  return true;
}

bool spki_sha256(const gnutls_datum_t& certificate, std::array<std::uint8_t, 32>& digest) noexcept {
  gnutls_pubkey_t key = nullptr;
  if (gnutls_pubkey_init(&key) < 0) return false;
  bool ok = false;
  gnutls_datum_t spki{};
  if (gnutls_pubkey_import_x509_raw(key, &certificate, GNUTLS_X509_FMT_DER, 0) >= 0 &&
      gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, &spki) >= 0) {
    ok = gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, digest.data()) >= 0;
    gnutls_free(spki.data);
  }
  gnutls_pubkey_deinit(key);
  return ok;
}

bool decode_pin(std::string_view base64, std::array<std::uint8_t, 32>& digest) noexcept {
  if (base64.size() != 44 || base64[43] != '=') return false;
  const auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::uint32_t bits = 0;
  int held = 0;
  std::size_t out = 0;
  for (std::size_t i = 0; i < 43; ++i) {
    const int v = value(base64[i]);
    if (v < 0) return false;
    bits = bits << 6 | static_cast<std::uint32_t>(v);
    held += 6;
    if (held >= 8) {
      held -= 8;
      if (out < digest.size()) digest[out++] = static_cast<std::uint8_t>(bits >> held);
    }
  }
  // 43 characters carry 258 bits: 256 of digest and 2 that must be zero.
  return out == digest.size() && (bits & ((1U << held) - 1)) == 0;
}

std::string tls_setup_error(const ResolverConfig& resolver) {
  if (resolver.protocol != UpstreamProtocol::dot && resolver.protocol != UpstreamProtocol::doh &&
      resolver.protocol != UpstreamProtocol::doq) {
    return {};
  }
  std::string error;
  return TlsClientContext::create(resolver, error) ? std::string() : error;
}

}  // namespace dnsgate
