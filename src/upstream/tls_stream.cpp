#include "upstream/tls_stream.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dns/wire.hpp"

namespace dnsgate {

namespace {

constexpr std::size_t kReadChunk = std::size_t{16} * 1024;  // one TLS record

UpstreamError connect_error(int error) {
  return {error == ECONNREFUSED ? UpstreamErrorKind::connect_refused
                                : UpstreamErrorKind::connect_failed,
          0};
}

}  // namespace

TlsStreamUpstream::TlsStreamUpstream(const ResolverConfig& resolver,
                                     std::unique_ptr<TlsClientContext> tls,
                                     std::chrono::milliseconds timeout, UpstreamListener& listener,
                                     std::string alpn)
    : address_(resolver.address),
      tls_(std::move(tls)),
      timeout_(timeout),
      listener_(listener),
      alpn_(std::move(alpn)) {}

UpstreamError TlsStreamUpstream::send(std::span<const std::uint8_t> query, Transport client,
                                      SteadyTime now) {
  (void)client;
  const std::uint16_t id = read_u16(query, 0);
  if (waiting_ != 0) {
    // Joins the queries waiting for the next attempt.
    queries_.sent(id, waiting_, false);
    return {};
  }
  if (state_ == State::closed) {
    if (backoff_.waiting(now)) return backoff_.last_failure();
    if (const UpstreamError error = open_connection(now)) return error;
  }
  queries_.sent(id, generation_);
  if (state_ == State::open) {
    submit(query);
    if (!write_pending()) broken_ = true;
  }
  return {};
}

void TlsStreamUpstream::cancel(std::uint16_t upstream_id) noexcept {
  if (!queries_.pending(upstream_id)) return;
  queries_.forget(upstream_id);
  on_cancel(upstream_id);
}

UpstreamError TlsStreamUpstream::open_connection(SteadyTime now) {
  UniqueFd fd(socket(address_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return {UpstreamErrorKind::connect_failed, 0};
  const int on = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  sockaddr_storage address{};
  const socklen_t length = address_.to_sockaddr(address);
  ++counters_.connects;
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0 &&
      errno != EINPROGRESS) {
    backoff_.failed(connect_error(errno), now);
    return backoff_.last_failure();
  }
  socket_ = std::move(fd);
  state_ = State::connecting;
  ++generation_;
  handshake_deadline_ = now + timeout_;
  answers_on_connection_ = 0;
  session_saved_ = false;
  carrying_resends_ = false;
  closing_ = {};
  resend_write_ = false;
  out_.clear();
  written_ = 0;
  return {};
}

IoInterest TlsStreamUpstream::io_interest(std::size_t slot) const noexcept {
  (void)slot;
  if (!socket_.valid()) return {};
  std::uint32_t events = 0;
  switch (state_) {
    case State::connecting:
      events = EPOLLOUT;
      break;
    case State::handshaking:
      events = gnutls_record_get_direction(session_.get()) == 0 ? EPOLLIN : EPOLLOUT;
      break;
    case State::open: {
      const bool more = written_ < out_.size() || resend_write_ || wants_write();
      events = EPOLLIN | (more ? EPOLLOUT : 0U);
      break;
    }
    case State::closed:
      return {};
  }
  return {socket_.get(), events, generation_};
}

SteadyTime TlsStreamUpstream::next_timer() const noexcept {
  if (broken_) return SteadyTime{};
  if (waiting_ != 0) return backoff_.retry_after();
  if (state_ == State::connecting || state_ == State::handshaking) return handshake_deadline_;
  return kNever;
}

void TlsStreamUpstream::on_timer(SteadyTime now) {
  if (waiting_ != 0 && !backoff_.waiting(now)) {
    const std::uint32_t generation = waiting_;
    waiting_ = 0;
    resend(generation, false, backoff_.last_failure(), now);
    return;
  }
  if (broken_) {
    broken_ = false;
    connection_failed({UpstreamErrorKind::connection_closed, 0}, now);
    return;
  }
  if ((state_ == State::connecting || state_ == State::handshaking) && now >= handshake_deadline_) {
    connection_failed({UpstreamErrorKind::connect_timeout, 0}, now);
  }
}

void TlsStreamUpstream::on_io(std::size_t slot, std::uint32_t events, SteadyTime now) {
  (void)slot;
  switch (state_) {
    case State::closed:
      return;
    case State::connecting: {
      int error = 0;
      socklen_t length = sizeof error;
      if (getsockopt(socket_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
      if (error != 0) {
        connection_failed(connect_error(error), now);
        return;
      }
      start_handshake(now);
      return;
    }
    case State::handshaking:
      continue_handshake(now);
      return;
    case State::open:
      break;
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0 && !read(now)) return;
  if (state_ == State::open && !write_pending()) {
    connection_failed({UpstreamErrorKind::connection_closed, 0}, now);
  }
}

void TlsStreamUpstream::start_handshake(SteadyTime now) {
  session_ = tls_->new_session(alpn_);
  if (!session_) {
    connection_failed({UpstreamErrorKind::tls_handshake, 0}, now);
    return;
  }
  gnutls_transport_set_int(session_.get(), socket_.get());
  gnutls_handshake_set_timeout(session_.get(), 0);  // our own deadline applies
  state_ = State::handshaking;
  continue_handshake(now);
}

void TlsStreamUpstream::continue_handshake(SteadyTime now) {
  const int code = gnutls_handshake(session_.get());
  if (code == GNUTLS_E_AGAIN || code == GNUTLS_E_INTERRUPTED) return;
  if (code < 0) {
    connection_failed(tls_->handshake_error(session_.get(), code), now);
    return;
  }
  if (const UpstreamError error = tls_->check_peer(session_.get())) {
    connection_failed(error, now);
    return;
  }
  if (!alpn_.empty()) {
    gnutls_datum_t selected{};
    if (gnutls_alpn_get_selected_protocol(session_.get(), &selected) < 0 ||
        std::string_view(reinterpret_cast<const char*>(selected.data), selected.size) != alpn_) {
      connection_failed({UpstreamErrorKind::tls_handshake, 0}, now);
      return;
    }
  }
  ++counters_.handshakes;
  if (gnutls_session_is_resumed(session_.get()) != 0) ++counters_.resumed;
  state_ = State::open;
  carrying_resends_ = false;
  backoff_.succeeded();
  on_established();
  queries_.for_each_on(generation_, [&](std::uint16_t id) {
    const auto query = listener_.pending_query(id);
    if (query.empty()) {
      queries_.forget(id);
      return;
    }
    submit(query);
  });
  if (!write_pending()) connection_failed({UpstreamErrorKind::connection_closed, 0}, now);
}

// Hands what is queued to TLS; false when the connection broke.
bool TlsStreamUpstream::write_pending() {
  while (true) {
    if (!resend_write_ && written_ == out_.size()) {
      out_.clear();
      written_ = 0;
      if (!wants_write()) return true;
      produce();
      if (out_.empty()) return true;
    }
    // After EAGAIN GnuTLS wants the same call again, or one with no data.
    const ssize_t sent = resend_write_ ? gnutls_record_send(session_.get(), nullptr, 0)
                                       : gnutls_record_send(session_.get(), out_.data() + written_,
                                                            out_.size() - written_);
    if (sent == GNUTLS_E_AGAIN || sent == GNUTLS_E_INTERRUPTED) {
      resend_write_ = true;
      return true;
    }
    resend_write_ = false;
    if (sent < 0) return false;
    written_ += static_cast<std::size_t>(sent);
  }
}

// Reads until the socket is drained and hands the octets to the protocol;
// false when the connection ended (and was handled).
bool TlsStreamUpstream::read(SteadyTime now) {
  in_.resize(kReadChunk);
  while (state_ == State::open) {
    const ssize_t got = gnutls_record_recv(session_.get(), in_.data(), in_.size());
    if (got > 0) {
      // Now, before a close without close_notify invalidates the session.
      if (!session_saved_) session_saved_ = tls_->save_session(session_.get());
      if (const UpstreamError error = consume({in_.data(), static_cast<std::size_t>(got)}, now)) {
        connection_failed(error, now);
        return false;
      }
      continue;
    }
    if (got == GNUTLS_E_AGAIN) break;
    if (got == GNUTLS_E_INTERRUPTED) continue;
    if (got < 0 && gnutls_error_is_fatal(static_cast<int>(got)) == 0) continue;
    // 0: close_notify; else the connection failed.
    connection_failed({UpstreamErrorKind::connection_closed, 0}, now);
    return false;
  }
  if (state_ != State::open) return false;  // a callback ended it
  if (closing_) {
    connection_failed(closing_, now);
    return false;
  }
  return true;
}

void TlsStreamUpstream::answered(std::span<std::uint8_t> answer, SteadyTime now) {
  ++answers_on_connection_;
  listener_.on_answer(answer, now);
}

void TlsStreamUpstream::query_failed(std::uint16_t upstream_id, UpstreamError error,
                                     SteadyTime now) {
  if (!queries_.pending(upstream_id)) return;
  queries_.forget(upstream_id);
  listener_.on_failure(upstream_id, error, now);
}

void TlsStreamUpstream::close() noexcept {
  if (session_ && state_ == State::open) gnutls_bye(session_.get(), GNUTLS_SHUT_WR);
  on_closed();
  session_ = TlsSession{};
  socket_ = UniqueFd{};
  state_ = State::closed;
  out_.clear();
  written_ = 0;
  resend_write_ = false;
}

void TlsStreamUpstream::fail_all(std::uint32_t generation, UpstreamError error, SteadyTime now) {
  queries_.for_each_on(generation, [&](std::uint16_t id) {
    queries_.forget(id);
    listener_.on_failure(id, error, now);
  });
}

void TlsStreamUpstream::connection_failed(UpstreamError error, SteadyTime now) {
  const bool established = state_ == State::open;
  const bool carried = carrying_resends_;
  const std::uint32_t generation = generation_;
  const bool progressed = answers_on_connection_ > 0;
  if (!session_saved_ && established) session_saved_ = tls_->save_session(session_.get());
  close();
  if (established) {
    // Lost after it worked: a resolver may close any time (RFC 7766
    // 6.2.1). Its queries go again on a new connection; a connection that
    // answered nothing counts against them.
    resend(generation, !progressed, error, now);
    return;
  }
  backoff_.failed(error, now);
  if (carried && is_transient(error)) {
    // Queries of a lost connection, and the resolver not back yet: they
    // wait for the next attempt.
    waiting_ = generation;
    return;
  }
  // A new connection that never worked: its queries fail now, and new ones
  // fail at once until the backoff is over.
  fail_all(generation, error, now);
}

// Records the queries of generation `from` on a new connection, which
// writes them once it is authenticated.
void TlsStreamUpstream::resend(std::uint32_t from, bool count_attempt, UpstreamError error,
                               SteadyTime now) {
  UpstreamError reopen;
  queries_.for_each_on(from, [&](std::uint16_t id) {
    if (listener_.pending_query(id).empty()) {
      queries_.forget(id);
      return;
    }
    if (count_attempt && queries_.attempts(id) >= kMaxStrandedAttempts) {
      queries_.forget(id);
      listener_.on_failure(id, error, now);
      return;
    }
    if (state_ == State::closed && !reopen) {
      reopen = open_connection(now);
      if (!reopen) carrying_resends_ = true;
    }
    if (reopen) return;  // dealt with below, all together
    queries_.sent(id, generation_, count_attempt);
  });
  if (!reopen) return;
  if (is_transient(reopen)) {
    waiting_ = from;  // those not moved stay recorded on `from`
  } else {
    fail_all(from, reopen, now);
  }
}

}  // namespace dnsgate
