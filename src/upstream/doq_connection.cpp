// The QUIC connection of the doq upstream: ngtcp2's callbacks, opening the
// connection with its TLS 1.3 session, moving packets between the socket
// and ngtcp2, and how a connection ends. doq.cpp holds the queries and
// their streams.
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "upstream/doq.hpp"
#include "upstream/doq_frame.hpp"
#include "upstream/doq_quic.hpp"

namespace dnsgate {

namespace {

constexpr std::uint64_t kConnectionWindow = 1 << 20;
constexpr ngtcp2_duration kIdleTimeout = 30 * NGTCP2_SECONDS;
constexpr std::size_t kMaxPacketsPerWrite = 64;  // then the timer comes back for more
constexpr std::size_t kMaxReadsPerWake = 64;
constexpr std::uint8_t kAlertBadCertificate = 42;

// TLS 1.3 only, without the middlebox compatibility mode (RFC 9001 8.4),
// and the AEADs QUIC defines packet protection for.
constexpr const char* kQuicPriority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"
    "%DISABLE_TLS13_COMPAT_MODE";
constexpr std::string_view kAlpn = "doq";

bool random_bytes(std::uint8_t* out, std::size_t size) noexcept {
  return gnutls_rnd(GNUTLS_RND_RANDOM, out, size) == 0;
}

// QUIC errors the server caused by breaking the protocol.
bool peer_violation(int code) noexcept {
  switch (code) {
    case NGTCP2_ERR_PROTO:
    case NGTCP2_ERR_FLOW_CONTROL:
    case NGTCP2_ERR_STREAM_LIMIT:
    case NGTCP2_ERR_FINAL_SIZE:
    case NGTCP2_ERR_FRAME_ENCODING:
    case NGTCP2_ERR_STREAM_STATE:
    case NGTCP2_ERR_ACK_FRAME:
    case NGTCP2_ERR_TRANSPORT_PARAM:
    case NGTCP2_ERR_MALFORMED_TRANSPORT_PARAM:
    case NGTCP2_ERR_REQUIRED_TRANSPORT_PARAM:
    case NGTCP2_ERR_CONNECTION_ID_LIMIT:
    case NGTCP2_ERR_CRYPTO_BUFFER_EXCEEDED:
      return true;
    default:
      return false;
  }
}

}  // namespace

// ngtcp2's callbacks. They record, and touch nothing but this upstream's
// own state: the listener is told once ngtcp2 has returned.
struct DoqCallbacks {
  static DoqUpstream& self(void* user_data) { return *static_cast<DoqUpstream*>(user_data); }

  static ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref) {
    return static_cast<DoqUpstream*>(ref->user_data)->conn_.get();
  }

  static void rand(std::uint8_t* dest, std::size_t size, const ngtcp2_rand_ctx*) {
    (void)random_bytes(dest, size);
  }

  static int new_connection_id(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token,
                               std::size_t length, void*) {
    if (!random_bytes(cid->data, length) || !random_bytes(token, NGTCP2_STATELESS_RESET_TOKENLEN)) {
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    cid->datalen = length;
    return 0;
  }

  static int handshake_completed(ngtcp2_conn*, void* user_data) {
    DoqUpstream& doq = self(user_data);
    gnutls_session_t session = doq.session_.get();
    gnutls_datum_t alpn{};
    if (gnutls_alpn_get_selected_protocol(session, &alpn) != 0 ||
        std::string_view(reinterpret_cast<const char*>(alpn.data), alpn.size) != kAlpn) {
      doq.callback_error_ = {UpstreamErrorKind::tls_handshake, 0};
      ngtcp2_ccerr_set_transport_error(&doq.callback_close_, NGTCP2_CONNECTION_REFUSED, nullptr, 0);
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    // The chain and the name were verified by GnuTLS in the handshake; the
    // IP (without a name) and the pins are checked here.
    if (const UpstreamError error = doq.tls_->check_peer(session)) {
      doq.callback_error_ = error;
      ngtcp2_ccerr_set_tls_alert(&doq.callback_close_, kAlertBadCertificate, nullptr, 0);
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    doq.handshake_done_ = true;
    ++doq.counters_.handshakes;
    if (gnutls_session_is_resumed(session) != 0) ++doq.counters_.resumed;
    doq.backoff_.succeeded();
    doq.dirty_ = true;
    return 0;
  }

  static int recv_stream_data(ngtcp2_conn* conn, std::uint32_t flags, std::int64_t stream_id,
                              std::uint64_t, const std::uint8_t* data, std::size_t size,
                              void* user_data, void*) {
    DoqUpstream& doq = self(user_data);
    // What we copy out is consumed: the connection's window moves on.
    // Each stream's window is one frame, so none can hold more.
    ngtcp2_conn_extend_max_offset(conn, size);
    const auto it = doq.streams_.find(stream_id);
    if (it == doq.streams_.end()) {
      ++doq.counters_.unsolicited;
      return 0;
    }
    DoqUpstream::Stream& stream = it->second;
    if (stream.done) {
      // Answered: only its FIN may follow. Cancelled: whatever still comes.
      return stream.answered && size > 0 ? violation(doq) : 0;
    }
    const bool fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
    switch (doq_answer_append(stream.in, {data, size}, fin)) {
      case DoqAnswer::partial:
        return 0;
      case DoqAnswer::violation:
        return violation(doq);  // octets after the message, or FIN inside it
      case DoqAnswer::whole:
        break;
    }
    doq.events_.push_back({DoqUpstream::StreamEvent::Kind::data, stream_id, false});
    return 0;
  }

  static int stream_reset(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, std::uint64_t,
                          void* user_data, void*) {
    self(user_data).events_.push_back({DoqUpstream::StreamEvent::Kind::reset, stream_id, true});
    return 0;
  }

  static int stream_close(ngtcp2_conn*, std::uint32_t flags, std::int64_t stream_id, std::uint64_t,
                          void* user_data, void*) {
    DoqUpstream& doq = self(user_data);
    const auto it = doq.streams_.find(stream_id);
    if (it != doq.streams_.end()) it->second.closed = true;
    doq.events_.push_back({DoqUpstream::StreamEvent::Kind::closed, stream_id,
                           (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0});
    return 0;
  }

  static int extend_max_streams(ngtcp2_conn*, std::uint64_t, void* user_data) {
    self(user_data).dirty_ = true;
    return 0;
  }

  static int violation(DoqUpstream& doq) {
    doq.callback_error_ = {UpstreamErrorKind::doq_protocol_error, 0};
    ngtcp2_ccerr_set_application_error(&doq.callback_close_, doq::kProtocolError, nullptr, 0);
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }

  static ngtcp2_callbacks table() {
    ngtcp2_callbacks callbacks{};
    callbacks.client_initial = ngtcp2_crypto_client_initial_cb;
    callbacks.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    callbacks.handshake_completed = handshake_completed;
    callbacks.encrypt = ngtcp2_crypto_encrypt_cb;
    callbacks.decrypt = ngtcp2_crypto_decrypt_cb;
    callbacks.hp_mask = ngtcp2_crypto_hp_mask_cb;
    callbacks.recv_stream_data = recv_stream_data;
    callbacks.stream_close = stream_close;
    callbacks.recv_retry = ngtcp2_crypto_recv_retry_cb;
    callbacks.extend_max_local_streams_bidi = extend_max_streams;
    callbacks.rand = rand;
    callbacks.get_new_connection_id = new_connection_id;
    callbacks.update_key = ngtcp2_crypto_update_key_cb;
    callbacks.stream_reset = stream_reset;
    callbacks.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    callbacks.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    callbacks.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    callbacks.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    return callbacks;
  }
};

DoqUpstream::DoqUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
                         std::chrono::milliseconds timeout, UpstreamListener& listener)
    : tls_(std::move(tls)), timeout_(timeout), listener_(listener), rx_(65536) {
  remote_length_ = resolver.address.to_sockaddr(remote_);
  conn_ref_.get_conn = DoqCallbacks::get_conn;
  conn_ref_.user_data = this;
  ngtcp2_ccerr_default(&callback_close_);
}

DoqUpstream::~DoqUpstream() {
  // A polite goodbye, so the server need not wait out its idle timeout.
  if (conn_ && handshake_done_) {
    ngtcp2_ccerr reason;
    ngtcp2_ccerr_default(&reason);
    ngtcp2_ccerr_set_application_error(&reason, doq::kNoError, nullptr, 0);
    close_with(reason, std::chrono::steady_clock::now());
  }
}

UpstreamError DoqUpstream::open_connection(SteadyTime now) {
  const auto failed = [&](UpstreamError error) {
    close();
    backoff_.failed(error, now);
    return error;
  };
  ++counters_.connects;
  socket_ = UniqueFd(::socket(remote_.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!socket_.valid()) return failed({UpstreamErrorKind::connect_failed, 0});
  if (::connect(socket_.get(), reinterpret_cast<const sockaddr*>(&remote_), remote_length_) != 0) {
    return failed({errno == ECONNREFUSED ? UpstreamErrorKind::connect_refused
                                         : UpstreamErrorKind::connect_failed,
                   0});
  }
  local_length_ = sizeof local_;
  if (::getsockname(socket_.get(), reinterpret_cast<sockaddr*>(&local_), &local_length_) != 0) {
    return failed({UpstreamErrorKind::connect_failed, 0});
  }

  // Verification target, SNI, ALPN and the session to resume come from the
  // context; QUIC wants its own priorities and GnuTLS's QUIC hooks.
  session_ = tls_->new_session(kAlpn, GNUTLS_NO_END_OF_EARLY_DATA);
  if (!session_ || gnutls_priority_set_direct(session_.get(), kQuicPriority, nullptr) < 0 ||
      ngtcp2_crypto_gnutls_configure_client_session(session_.get()) != 0) {
    return failed({UpstreamErrorKind::tls_handshake, 0});
  }
  gnutls_session_set_ptr(session_.get(), &conn_ref_);
  gnutls_handshake_set_timeout(session_.get(), 0);  // our own deadline applies

  ngtcp2_cid dcid{};
  ngtcp2_cid scid{};
  dcid.datalen = 18;
  scid.datalen = 16;
  if (!random_bytes(dcid.data, dcid.datalen) || !random_bytes(scid.data, scid.datalen)) {
    return failed({UpstreamErrorKind::connect_failed, 0});
  }
  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = doq::to_tstamp(now);
  settings.no_pmtud = 1;  // DNS messages fit the 1200 octets every path carries

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_streams_bidi = 0;  // RFC 9250 4.2: the server opens none
  params.initial_max_streams_uni = 0;
  params.initial_max_stream_data_bidi_local = kDoqMaxFrame;  // one answer per stream, no more
  params.initial_max_stream_data_bidi_remote = 0;
  params.initial_max_stream_data_uni = 0;
  params.initial_max_data = kConnectionWindow;
  params.max_idle_timeout = kIdleTimeout;

  ngtcp2_path path{};
  path.local.addr = reinterpret_cast<ngtcp2_sockaddr*>(&local_);
  path.local.addrlen = local_length_;
  path.remote.addr = reinterpret_cast<ngtcp2_sockaddr*>(&remote_);
  path.remote.addrlen = remote_length_;
  const ngtcp2_callbacks callbacks = DoqCallbacks::table();
  ngtcp2_conn* raw = nullptr;
  if (ngtcp2_conn_client_new(&raw, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &callbacks, &settings,
                             &params, nullptr, this) != 0) {
    return failed({UpstreamErrorKind::connect_failed, 0});
  }
  conn_.reset(raw);
  ngtcp2_conn_set_tls_native_handle(raw, session_.get());

  if (++generation_ == 0) ++generation_;  // 0 means "not pending" to StreamQueries
  handshake_deadline_ = now + timeout_;
  handshake_done_ = false;
  session_saved_ = false;
  answers_on_connection_ = 0;
  callback_error_ = {};
  ngtcp2_ccerr_default(&callback_close_);
  dirty_ = true;
  return {};
}

// Feeds every datagram waiting on the socket to ngtcp2, handling what each
// one brought; false when the connection ended (and was handled).
bool DoqUpstream::read_packets(SteadyTime now) {
  ngtcp2_path path{};
  path.local.addr = reinterpret_cast<ngtcp2_sockaddr*>(&local_);
  path.local.addrlen = local_length_;
  path.remote.addr = reinterpret_cast<ngtcp2_sockaddr*>(&remote_);
  path.remote.addrlen = remote_length_;
  for (std::size_t i = 0; i < kMaxReadsPerWake; ++i) {
    const ssize_t got = ::recv(socket_.get(), rx_.data(), rx_.size(), MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      connection_failed(socket_error(errno), now, true);
      return false;
    }
    const int code = ngtcp2_conn_read_pkt(conn_.get(), &path, nullptr, rx_.data(),
                                          static_cast<std::size_t>(got), doq::to_tstamp(now));
    // Answers the packet completed go out first, even when it also closed
    // the connection.
    if (!process_events(now)) return false;
    if (code != 0) {
      handle_error(code, now);
      return false;
    }
  }
  return true;  // more may be waiting: epoll (level-triggered) says so at once
}

// Opens streams for waiting queries, resets cancelled ones, and hands
// ngtcp2's packets to the socket; false when the connection ended (and
// was handled).
bool DoqUpstream::write_packets(SteadyTime now) {
  dirty_ = false;
  if (!blocked_.empty()) {
    if (!send_packet(blocked_.data(), blocked_.size(), now)) return false;
    if (!blocked_.empty()) return true;
  }
  apply_shutdowns();
  open_streams();
  const ngtcp2_tstamp stamp = doq::to_tstamp(now);
  ngtcp2_path_storage storage;
  ngtcp2_path_storage_zero(&storage);
  ngtcp2_pkt_info info{};
  bool data_blocked = false;
  std::size_t packets = 0;
  while (true) {
    Stream* stream = data_blocked ? nullptr : next_to_write();
    std::int64_t stream_id = -1;
    ngtcp2_vec data{};
    std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (stream != nullptr) {
      stream_id = to_write_.front();
      data.base = stream->out.data() + stream->sent;
      data.len = stream->out.size() - stream->sent;
      flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    ngtcp2_ssize accepted = -1;
    const ngtcp2_ssize wrote = ngtcp2_conn_writev_stream(
        conn_.get(), &storage.path, &info, tx_.data(), tx_.size(), &accepted, flags, stream_id,
        stream != nullptr ? &data : nullptr, stream != nullptr ? 1 : 0, stamp);
    if (stream != nullptr && accepted >= 0) {
      stream->sent += static_cast<std::size_t>(accepted);
      if (stream->sent == stream->out.size()) to_write_.pop_front();  // with its FIN
    }
    if (wrote == NGTCP2_ERR_WRITE_MORE) continue;
    if (wrote == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
      data_blocked = true;  // the server's window: MAX_STREAM_DATA will bring us back
      continue;
    }
    if (wrote == NGTCP2_ERR_STREAM_SHUT_WR || wrote == NGTCP2_ERR_STREAM_NOT_FOUND) {
      to_write_.pop_front();
      continue;
    }
    if (wrote < 0) {
      handle_error(static_cast<int>(wrote), now);
      return false;
    }
    if (wrote == 0) break;
    if (!send_packet(tx_.data(), static_cast<std::size_t>(wrote), now)) return false;
    if (!blocked_.empty()) break;
    // Only between whole packets: after WRITE_MORE ngtcp2 must be called
    // until the packet is finished.
    if (++packets == kMaxPacketsPerWrite) {
      dirty_ = true;  // the timer comes straight back for the rest
      break;
    }
  }
  ngtcp2_conn_update_pkt_tx_time(conn_.get(), stamp);
  return true;
}

// False when the socket failed and the connection with it (handled).
bool DoqUpstream::send_packet(const std::uint8_t* data, std::size_t size, SteadyTime now) {
  while (true) {
    if (::send(socket_.get(), data, size, MSG_DONTWAIT) >= 0) {
      blocked_.clear();
      return true;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // Keep it for EPOLLOUT; ngtcp2 counts it as sent either way.
      if (data != blocked_.data()) blocked_.assign(data, data + size);
      return true;
    }
    if (errno == ENOBUFS) {
      blocked_.clear();  // lost: QUIC's loss recovery sends it again
      return true;
    }
    connection_failed(socket_error(errno), now, true);
    return false;
  }
}

// After ngtcp2 returned `code`: says goodbye when there is still someone
// to say it to, and fails or resends the connection's queries.
void DoqUpstream::handle_error(int code, SteadyTime now) {
  ngtcp2_ccerr reason;
  ngtcp2_ccerr_default(&reason);
  bool say_goodbye = true;
  bool resend = false;
  UpstreamError error;
  switch (code) {
    case NGTCP2_ERR_DRAINING:
    case NGTCP2_ERR_CLOSING:
      say_goodbye = false;  // the server closed it
      error = peer_close_error();
      resend = error.kind == UpstreamErrorKind::connection_closed;
      break;
    case NGTCP2_ERR_IDLE_CLOSE:
      say_goodbye = false;  // silence on both sides: nothing to say
      error = {handshake_done_ ? UpstreamErrorKind::connection_closed
                               : UpstreamErrorKind::connect_timeout,
               0};
      resend = true;
      break;
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
      error = {UpstreamErrorKind::connect_timeout, 0};
      break;
    case NGTCP2_ERR_CRYPTO:
      ngtcp2_ccerr_set_tls_alert(&reason, ngtcp2_conn_get_tls_alert(conn_.get()), nullptr, 0);
      error =
          handshake_done_ ? UpstreamError{UpstreamErrorKind::connection_closed, 0} : tls_error();
      resend = true;
      break;
    case NGTCP2_ERR_CALLBACK_FAILURE:
      if (callback_error_) {
        error = callback_error_;
        reason = callback_close_;
        break;
      }
      [[fallthrough]];
    default:
      ngtcp2_ccerr_set_liberr(&reason, code, nullptr, 0);
      if (!handshake_done_) {
        error = {UpstreamErrorKind::tls_handshake, 0};  // the QUIC handshake failed
      } else if (peer_violation(code)) {
        error = {UpstreamErrorKind::doq_protocol_error, 0};
      } else {
        error = {UpstreamErrorKind::connection_closed, 0};
        resend = true;
      }
      break;
  }
  if (say_goodbye) close_with(reason, now);
  connection_failed(error, now, resend);
}

// Why the server closed the connection.
UpstreamError DoqUpstream::peer_close_error() const {
  const ngtcp2_ccerr* reason = ngtcp2_conn_get_ccerr(conn_.get());
  if (reason->type == NGTCP2_CCERR_TYPE_APPLICATION && reason->error_code == doq::kProtocolError) {
    return {UpstreamErrorKind::doq_protocol_error, 0};
  }
  if (!handshake_done_ && reason->type == NGTCP2_CCERR_TYPE_TRANSPORT) {
    if (reason->error_code == NGTCP2_CONNECTION_REFUSED) {
      return {UpstreamErrorKind::connect_refused, 0};
    }
    return {UpstreamErrorKind::tls_handshake, 0};  // a TLS alert or another handshake error
  }
  return {UpstreamErrorKind::connection_closed, 0};
}

// Why our TLS stack gave up on the handshake: the certificate when it was
// verified and found wanting, else the handshake. ngtcp2 keeps no GnuTLS
// error code; the verification status says enough.
UpstreamError DoqUpstream::tls_error() const {
  return tls_->handshake_error(session_.get(), 0);
}

UpstreamError DoqUpstream::socket_error(int error) const {
  if (handshake_done_) return {UpstreamErrorKind::connection_closed, 0};
  return {error == ECONNREFUSED ? UpstreamErrorKind::connect_refused
                                : UpstreamErrorKind::connect_failed,
          0};
}

// Sends one CONNECTION_CLOSE carrying `reason`, best effort.
void DoqUpstream::close_with(const ngtcp2_ccerr& reason, SteadyTime now) {
  if (!conn_ || !socket_.valid() || ngtcp2_conn_in_closing_period(conn_.get()) != 0 ||
      ngtcp2_conn_in_draining_period(conn_.get()) != 0) {
    return;
  }
  ngtcp2_path_storage storage;
  ngtcp2_path_storage_zero(&storage);
  ngtcp2_pkt_info info{};
  const ngtcp2_ssize wrote = ngtcp2_conn_write_connection_close(
      conn_.get(), &storage.path, &info, tx_.data(), tx_.size(), &reason, doq::to_tstamp(now));
  if (wrote > 0)
    (void)::send(socket_.get(), tx_.data(), static_cast<std::size_t>(wrote), MSG_DONTWAIT);
}

void DoqUpstream::close() noexcept {
  conn_.reset();
  session_ = TlsSession{};
  socket_ = UniqueFd{};
  handshake_done_ = false;
  dirty_ = false;
  streams_.clear();
  placed_.clear();
  waiting_.clear();
  to_write_.clear();
  shutdown_.clear();
  events_.clear();
  blocked_.clear();
}

}  // namespace dnsgate
