#include "upstream/doq.hpp"

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>

#include "dns/padding.hpp"
#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"
#include "upstream/doq_frame.hpp"

namespace dnsgate {

namespace {

// RFC 9250 4.3: DoQ error codes.
constexpr std::uint64_t kDoqNoError = 0x0;
constexpr std::uint64_t kDoqProtocolError = 0x2;
constexpr std::uint64_t kDoqRequestCancelled = 0x3;

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

// ngtcp2 counts nanoseconds from any fixed origin: ours is steady_clock's.
ngtcp2_tstamp to_tstamp(SteadyTime time) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch());
  return ns.count() < 0 ? 0 : static_cast<ngtcp2_tstamp>(ns.count());
}

SteadyTime from_tstamp(ngtcp2_tstamp stamp) noexcept {
  if (stamp >= static_cast<ngtcp2_tstamp>(std::numeric_limits<std::int64_t>::max())) return kNever;
  return SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(
      std::chrono::nanoseconds(static_cast<std::int64_t>(stamp))));
}

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
    ngtcp2_ccerr_set_application_error(&doq.callback_close_, kDoqProtocolError, nullptr, 0);
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
    ngtcp2_ccerr_set_application_error(&reason, kDoqNoError, nullptr, 0);
    close_with(reason, std::chrono::steady_clock::now());
  }
}

UpstreamError DoqUpstream::send(std::span<const std::uint8_t> query, Transport client,
                                SteadyTime now) {
  (void)client;
  if (query.size() < kHeaderOctets || query.size() > 0xFFFF) {
    return {UpstreamErrorKind::send_failed, 0};
  }
  if (!conn_) {
    if (backoff_.waiting(now)) return backoff_.last_failure();
    if (const UpstreamError error = open_connection(now)) return error;
  }
  const std::uint16_t id = read_u16(query, 0);
  queue(id, query);
  queries_.sent(id, generation_);
  return {};
}

void DoqUpstream::cancel(std::uint16_t upstream_id) noexcept {
  queries_.forget(upstream_id);
  const auto placed = placed_.find(upstream_id);
  if (placed == placed_.end()) return;
  const std::int64_t stream_id = placed->second.stream;
  placed_.erase(placed);
  // A query still waiting for a stream is skipped when its turn comes; one
  // on a stream that may still be answered has the stream reset by the
  // next write, outside whatever callback we may be in now.
  if (stream_id < 0) return;
  const auto it = streams_.find(stream_id);
  if (it == streams_.end() || it->second.done || it->second.closed) return;
  it->second.done = true;
  shutdown_.push_back(stream_id);
  dirty_ = true;
}

void DoqUpstream::queue(std::uint16_t id, std::span<const std::uint8_t> query) {
  Waiting waiting;
  waiting.id = id;
  waiting.serial = ++serial_;
  const PaddingPlan plan = plan_padding(query);
  const std::size_t length = query.size() + plan.extra;
  waiting.framed.reserve(2 + length);
  waiting.framed.push_back(static_cast<std::uint8_t>(length >> 8));
  waiting.framed.push_back(static_cast<std::uint8_t>(length));
  append_padded(waiting.framed, query, plan);
  waiting.framed[2] = 0;  // RFC 9250 4.2.1: the id is 0 on the wire
  waiting.framed[3] = 0;
  placed_[id] = {waiting.serial, -1};
  waiting_.push_back(std::move(waiting));
  dirty_ = true;
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
  settings.initial_ts = to_tstamp(now);
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

IoInterest DoqUpstream::io_interest(std::size_t slot) const noexcept {
  (void)slot;
  if (!socket_.valid()) return {};
  return {socket_.get(), EPOLLIN | (blocked_.empty() ? 0U : static_cast<std::uint32_t>(EPOLLOUT)),
          generation_};
}

SteadyTime DoqUpstream::next_timer() const noexcept {
  if (!conn_) return kNever;
  if (dirty_) return SteadyTime{};
  SteadyTime next = from_tstamp(ngtcp2_conn_get_expiry(conn_.get()));
  if (!handshake_done_) next = std::min(next, handshake_deadline_);
  return next;
}

void DoqUpstream::on_timer(SteadyTime now) {
  if (!conn_) return;
  if (!handshake_done_ && now >= handshake_deadline_) {
    ngtcp2_ccerr reason;
    ngtcp2_ccerr_default(&reason);
    close_with(reason, now);
    connection_failed({UpstreamErrorKind::connect_timeout, 0}, now, false);
    return;
  }
  if (from_tstamp(ngtcp2_conn_get_expiry(conn_.get())) <= now) {
    const int code = ngtcp2_conn_handle_expiry(conn_.get(), to_tstamp(now));
    if (code != 0) {
      handle_error(code, now);
      return;
    }
  }
  if (write_packets(now)) process_events(now);
}

void DoqUpstream::flush(SteadyTime now) {
  if (!conn_ || !dirty_) return;
  if (write_packets(now)) process_events(now);
}

void DoqUpstream::on_io(std::size_t slot, std::uint32_t events, SteadyTime now) {
  (void)slot;
  if (!conn_) return;
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0 && !read_packets(now)) return;
  if (write_packets(now)) process_events(now);
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
                                          static_cast<std::size_t>(got), to_tstamp(now));
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
  const ngtcp2_tstamp stamp = to_tstamp(now);
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

void DoqUpstream::apply_shutdowns() {
  for (const std::int64_t stream_id : shutdown_) {
    const auto it = streams_.find(stream_id);
    if (it == streams_.end() || it->second.closed) continue;
    ngtcp2_conn_shutdown_stream(conn_.get(), 0, stream_id, kDoqRequestCancelled);
  }
  shutdown_.clear();
}

void DoqUpstream::open_streams() {
  if (!handshake_done_) return;
  while (!waiting_.empty()) {
    Waiting& waiting = waiting_.front();
    const auto placed = placed_.find(waiting.id);
    if (placed == placed_.end() || placed->second.serial != waiting.serial) {
      waiting_.pop_front();  // cancelled while it waited
      continue;
    }
    if (ngtcp2_conn_get_streams_bidi_left(conn_.get()) == 0) return;
    std::int64_t stream_id = -1;
    if (ngtcp2_conn_open_bidi_stream(conn_.get(), &stream_id, nullptr) != 0) return;
    Stream stream;
    stream.id = waiting.id;
    stream.out = std::move(waiting.framed);
    streams_.emplace(stream_id, std::move(stream));
    // cancel() (noexcept) queues each stream at most once: room for all.
    shutdown_.reserve(shutdown_.size() + streams_.size());
    placed->second.stream = stream_id;
    to_write_.push_back(stream_id);
    waiting_.pop_front();
  }
}

DoqUpstream::Stream* DoqUpstream::next_to_write() {
  while (!to_write_.empty()) {
    const auto it = streams_.find(to_write_.front());
    if (it != streams_.end() && !it->second.done && !it->second.closed &&
        it->second.sent < it->second.out.size()) {
      return &it->second;
    }
    to_write_.pop_front();
  }
  return nullptr;
}

bool DoqUpstream::owns(const Stream& stream, std::int64_t stream_id) const {
  const auto placed = placed_.find(stream.id);
  return placed != placed_.end() && placed->second.stream == stream_id;
}

void DoqUpstream::fail_stream(Stream& stream, std::int64_t stream_id, UpstreamError error,
                              SteadyTime now) {
  stream.done = true;
  if (!owns(stream, stream_id)) return;
  placed_.erase(stream.id);
  queries_.forget(stream.id);
  listener_.on_failure(stream.id, error, now);
}

// Handles what the callbacks recorded; false when the connection ended
// (and was handled). The listener may call cancel() and send(), which
// only queue: no stream is erased but here.
bool DoqUpstream::process_events(SteadyTime now) {
  for (std::size_t i = 0; i < events_.size(); ++i) {
    const StreamEvent event = events_[i];
    const auto it = streams_.find(event.stream);
    if (it == streams_.end()) continue;
    Stream& stream = it->second;
    switch (event.kind) {
      case StreamEvent::Kind::data:
        if (!stream.done && !take_answer(stream, event.stream, now)) return false;
        break;
      case StreamEvent::Kind::reset:
        if (!stream.done)
          fail_stream(stream, event.stream, {UpstreamErrorKind::doq_stream_reset, 0}, now);
        break;
      case StreamEvent::Kind::closed:
        if (!stream.done) {
          fail_stream(stream, event.stream,
                      {event.error_code_set ? UpstreamErrorKind::doq_stream_reset
                                            : UpstreamErrorKind::doq_protocol_error,
                       0},
                      now);
        }
        streams_.erase(it);
        break;
    }
  }
  events_.clear();
  return true;
}

// A stream's frame is whole: relays the answer; false when its id broke
// the protocol and the connection was closed for it.
bool DoqUpstream::take_answer(Stream& stream, std::int64_t stream_id, SteadyTime now) {
  if (stream.in.size() < 2 || stream.in.size() != 2 + std::size_t{read_u16(stream.in, 0)}) {
    return true;  // only whole frames come here: doq_answer_append says so
  }
  const std::size_t length = stream.in.size() - 2;
  const std::span<std::uint8_t> answer(stream.in.data() + 2, length);
  stream.answered = true;
  if (length < kHeaderOctets) {
    ++counters_.unsolicited;
    fail_stream(stream, stream_id, {UpstreamErrorKind::answer_malformed, 0}, now);
    return true;
  }
  if (read_u16(answer, 0) != 0) {
    protocol_error(now);  // RFC 9250 4.2.1: the id must be 0
    return false;
  }
  stream.done = true;
  if (!owns(stream, stream_id)) {
    ++counters_.unsolicited;  // its query was cancelled
    return true;
  }
  const std::uint16_t id = stream.id;
  placed_.erase(id);
  queries_.forget(id);
  write_u16(answer, 0, id);
  ++answers_on_connection_;
  listener_.on_answer(answer, now);
  // TLS 1.3 tickets come after the handshake: by the first answer there
  // usually is one to keep for the next connection.
  if (!session_saved_ && session_) session_saved_ = tls_->save_session(session_.get());
  return true;
}

void DoqUpstream::protocol_error(SteadyTime now) {
  ngtcp2_ccerr reason;
  ngtcp2_ccerr_default(&reason);
  ngtcp2_ccerr_set_application_error(&reason, kDoqProtocolError, nullptr, 0);
  close_with(reason, now);
  connection_failed({UpstreamErrorKind::doq_protocol_error, 0}, now, false);
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
  if (reason->type == NGTCP2_CCERR_TYPE_APPLICATION && reason->error_code == kDoqProtocolError) {
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
      conn_.get(), &storage.path, &info, tx_.data(), tx_.size(), &reason, to_tstamp(now));
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

void DoqUpstream::connection_failed(UpstreamError error, SteadyTime now, bool resend) {
  const bool established = handshake_done_;
  const std::uint32_t generation = generation_;
  const bool progressed = answers_on_connection_ > 0;
  if (established && !session_saved_ && session_) {
    session_saved_ = tls_->save_session(session_.get());
  }
  close();
  if (!established || !resend) {
    // Never carried a query, or the server broke the protocol: those
    // waiting fail now, and the next attempt waits.
    backoff_.failed(error, now);
    queries_.for_each_on(generation, [&](std::uint16_t id) {
      queries_.forget(id);
      listener_.on_failure(id, error, now);
    });
    return;
  }
  // Lost after it worked (closed by the server, idle, gone): its queries
  // go again on a new connection; one that answered nothing counts
  // against them.
  UpstreamError reopen;
  queries_.for_each_on(generation, [&](std::uint16_t id) {
    const auto query = listener_.pending_query(id);
    if (query.empty()) {
      queries_.forget(id);
      return;
    }
    if (!progressed && queries_.attempts(id) >= kMaxStrandedAttempts) {
      queries_.forget(id);
      listener_.on_failure(id, error, now);
      return;
    }
    if (!conn_ && !reopen) reopen = open_connection(now);
    if (reopen) {
      queries_.forget(id);
      listener_.on_failure(id, reopen, now);
      return;
    }
    queue(id, query);
    queries_.sent(id, generation_, !progressed);
  });
}

}  // namespace dnsgate
