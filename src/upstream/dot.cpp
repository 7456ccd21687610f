#include "upstream/dot.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "dns/padding.hpp"
#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{100};
constexpr milliseconds kMaxBackoff{10000};
constexpr std::uint8_t kMaxAttempts = 2;       // writes on connections that answer nothing
constexpr std::size_t kReadChunk = 16 * 1024;  // one TLS record

// A failure another attempt may not repeat: the resolver restarting, a
// network blip. Certificate and handshake failures would.
bool is_transient(UpstreamError error) {
  return error.kind == UpstreamErrorKind::connect_refused ||
         error.kind == UpstreamErrorKind::connect_failed ||
         error.kind == UpstreamErrorKind::connect_timeout ||
         error.kind == UpstreamErrorKind::connection_closed;
}

UpstreamError connect_error(int error) {
  return {error == ECONNREFUSED ? UpstreamErrorKind::connect_refused
                                : UpstreamErrorKind::connect_failed,
          0};
}

}  // namespace

DotUpstream::DotUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
                         std::chrono::milliseconds timeout, UpstreamListener& listener)
    : address_(resolver.address),
      tls_(std::move(tls)),
      timeout_(timeout),
      listener_(listener),
      backoff_(kFirstBackoff) {}

UpstreamError DotUpstream::send(std::span<const std::uint8_t> query, Transport client,
                                SteadyTime now) {
  (void)client;
  if (waiting_ != 0) {
    // Joins the queries waiting for the next attempt.
    queries_.sent(read_u16(query, 0), waiting_, false);
    return {};
  }
  if (state_ == State::closed) {
    if (now < retry_after_) return last_failure_;
    if (const UpstreamError error = open_connection(now)) return error;
  }
  queue(query);
  queries_.sent(read_u16(query, 0), generation_);
  if (state_ == State::open && !write_pending()) broken_ = true;
  return {};
}

void DotUpstream::queue(std::span<const std::uint8_t> query) {
  if (written_ == out_.size() && !resend_write_) {
    out_.clear();
    written_ = 0;
  }
  const PaddingPlan plan = plan_padding(query);
  const std::size_t length = query.size() + plan.extra;
  out_.push_back(static_cast<std::uint8_t>(length >> 8));
  out_.push_back(static_cast<std::uint8_t>(length));
  append_padded(out_, query, plan);
}

UpstreamError DotUpstream::open_connection(SteadyTime now) {
  UniqueFd fd(socket(address_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return {UpstreamErrorKind::connect_failed, 0};
  const int on = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  sockaddr_storage address{};
  const socklen_t length = address_.to_sockaddr(address);
  ++counters_.connects;
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0 &&
      errno != EINPROGRESS) {
    back_off(connect_error(errno), now);
    return last_failure_;
  }
  socket_ = std::move(fd);
  state_ = State::connecting;
  ++generation_;
  handshake_deadline_ = now + timeout_;
  answers_on_connection_ = 0;
  session_saved_ = false;
  carrying_resends_ = false;
  resend_write_ = false;
  out_.clear();
  written_ = 0;
  in_.clear();
  in_begin_ = 0;
  return {};
}

IoInterest DotUpstream::io_interest(std::size_t slot) const noexcept {
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
    case State::open:
      events = EPOLLIN | (written_ < out_.size() || resend_write_ ? EPOLLOUT : 0U);
      break;
    case State::closed:
      return {};
  }
  return {socket_.get(), events, generation_};
}

SteadyTime DotUpstream::next_timer() const noexcept {
  if (broken_) return SteadyTime{};
  if (waiting_ != 0) return retry_after_;
  if (state_ == State::connecting || state_ == State::handshaking) return handshake_deadline_;
  return kNever;
}

void DotUpstream::on_timer(SteadyTime now) {
  if (waiting_ != 0 && now >= retry_after_) {
    const std::uint32_t generation = waiting_;
    waiting_ = 0;
    resend(generation, false, last_failure_, now);
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

void DotUpstream::on_io(std::size_t slot, std::uint32_t events, SteadyTime now) {
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
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0 && !read_answers(now)) return;
  if ((events & EPOLLOUT) != 0 && state_ == State::open && !write_pending()) {
    connection_failed({UpstreamErrorKind::connection_closed, 0}, now);
  }
}

void DotUpstream::start_handshake(SteadyTime now) {
  session_ = tls_->new_session("");
  if (!session_) {
    connection_failed({UpstreamErrorKind::tls_handshake, 0}, now);
    return;
  }
  gnutls_transport_set_int(session_.get(), socket_.get());
  gnutls_handshake_set_timeout(session_.get(), 0);  // our own deadline applies
  state_ = State::handshaking;
  continue_handshake(now);
}

void DotUpstream::continue_handshake(SteadyTime now) {
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
  ++counters_.handshakes;
  if (gnutls_session_is_resumed(session_.get()) != 0) ++counters_.resumed;
  state_ = State::open;
  carrying_resends_ = false;
  backoff_ = kFirstBackoff;
  if (!write_pending()) connection_failed({UpstreamErrorKind::connection_closed, 0}, now);
}

// Hands queued queries to TLS; false when the connection broke.
bool DotUpstream::write_pending() {
  while (resend_write_ || written_ < out_.size()) {
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
  out_.clear();
  written_ = 0;
  return true;
}

// Reads and relays every complete answer; false when the connection ended
// (and was handled).
bool DotUpstream::read_answers(SteadyTime now) {
  bool closed = false;
  while (true) {
    if (in_.size() - in_begin_ + kReadChunk > in_.capacity() && in_begin_ > 0) {
      in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(in_begin_));
      in_begin_ = 0;
    }
    const std::size_t had = in_.size();
    in_.resize(had + kReadChunk);
    const ssize_t got = gnutls_record_recv(session_.get(), in_.data() + had, kReadChunk);
    in_.resize(had + static_cast<std::size_t>(std::max<ssize_t>(got, 0)));
    if (got > 0) {
      // Now, before a close without close_notify invalidates the session.
      if (!session_saved_) session_saved_ = tls_->save_session(session_.get());
      continue;
    }
    if (got == GNUTLS_E_AGAIN) break;
    if (got == GNUTLS_E_INTERRUPTED) continue;
    if (got < 0 && gnutls_error_is_fatal(static_cast<int>(got)) == 0) continue;
    closed = true;  // 0: close_notify; else the connection failed
    break;
  }
  const std::uint32_t generation = generation_;
  while (in_.size() - in_begin_ >= 2) {
    const std::size_t length = read_u16(in_, in_begin_);
    if (in_.size() - in_begin_ - 2 < length) break;
    const std::span<std::uint8_t> answer(in_.data() + in_begin_ + 2, length);
    in_begin_ += 2 + length;
    if (length < kHeaderOctets || queries_.generation(read_u16(answer, 0)) != generation) {
      ++counters_.unsolicited;
      continue;
    }
    ++answers_on_connection_;
    listener_.on_answer(answer, now);
  }
  if (in_begin_ == in_.size()) {
    in_.clear();
    in_begin_ = 0;
  }
  if (closed) {
    connection_failed({UpstreamErrorKind::connection_closed, 0}, now);
    return false;
  }
  return true;
}

void DotUpstream::close() noexcept {
  if (session_ && state_ == State::open) gnutls_bye(session_.get(), GNUTLS_SHUT_WR);
  session_ = TlsSession{};
  socket_ = UniqueFd{};
  state_ = State::closed;
  out_.clear();
  written_ = 0;
  resend_write_ = false;
  in_.clear();
  in_begin_ = 0;
}

void DotUpstream::back_off(UpstreamError error, SteadyTime now) {
  last_failure_ = error;
  retry_after_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
}

void DotUpstream::fail_all(std::uint32_t generation, UpstreamError error, SteadyTime now) {
  queries_.for_each_on(generation, [&](std::uint16_t id) {
    queries_.forget(id);
    listener_.on_failure(id, error, now);
  });
}

void DotUpstream::connection_failed(UpstreamError error, SteadyTime now) {
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
  back_off(error, now);
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

// Sends the queries recorded on generation `from` again on a new
// connection.
void DotUpstream::resend(std::uint32_t from, bool count_attempt, UpstreamError error,
                         SteadyTime now) {
  UpstreamError reopen;
  queries_.for_each_on(from, [&](std::uint16_t id) {
    const auto query = listener_.pending_query(id);
    if (query.empty()) {
      queries_.forget(id);
      return;
    }
    if (count_attempt && queries_.attempts(id) >= kMaxAttempts) {
      queries_.forget(id);
      listener_.on_failure(id, error, now);
      return;
    }
    if (state_ == State::closed && !reopen) {
      reopen = open_connection(now);
      if (!reopen) carrying_resends_ = true;
    }
    if (reopen) return;  // dealt with below, all together
    queue(query);
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
