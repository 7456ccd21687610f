// The doq upstream's queries: each on its own stream of the connection
// (doq_connection.cpp), id 0 and padded on the wire, answers taken back
// with their upstream id, failures and resends.
#include "upstream/doq.hpp"

#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>

#include "dns/padding.hpp"
#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"
#include "upstream/doq_frame.hpp"
#include "upstream/doq_quic.hpp"

namespace dnsgate {

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

IoInterest DoqUpstream::io_interest(std::size_t slot) const noexcept {
  (void)slot;
  if (!socket_.valid()) return {};
  return {socket_.get(), EPOLLIN | (blocked_.empty() ? 0U : static_cast<std::uint32_t>(EPOLLOUT)),
          generation_};
}

SteadyTime DoqUpstream::next_timer() const noexcept {
  if (!conn_) return kNever;
  if (dirty_) return SteadyTime{};
  SteadyTime next = doq::from_tstamp(ngtcp2_conn_get_expiry(conn_.get()));
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
  if (doq::from_tstamp(ngtcp2_conn_get_expiry(conn_.get())) <= now) {
    const int code = ngtcp2_conn_handle_expiry(conn_.get(), doq::to_tstamp(now));
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

void DoqUpstream::apply_shutdowns() {
  for (const std::int64_t stream_id : shutdown_) {
    const auto it = streams_.find(stream_id);
    if (it == streams_.end() || it->second.closed) continue;
    ngtcp2_conn_shutdown_stream(conn_.get(), 0, stream_id, doq::kRequestCancelled);
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
  ngtcp2_ccerr_set_application_error(&reason, doq::kProtocolError, nullptr, 0);
  close_with(reason, now);
  connection_failed({UpstreamErrorKind::doq_protocol_error, 0}, now, false);
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
