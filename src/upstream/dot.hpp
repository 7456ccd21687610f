// The dot upstream: DNS over TLS (RFC 7858) on one pipelined connection.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/socket.hpp"
#include "upstream/stream_queries.hpp"
#include "upstream/tls_client.hpp"
#include "upstream/upstream.hpp"

namespace dnsgate {

// One TLS connection to the resolver, opened on first use and again after
// it closes. Queries are written back to back (padded, RFC 8467) and
// answers matched by id in any order (RFC 7766).
//
// Failures: a connection that cannot be made or verified fails the
// queries waiting on it at once, and the next attempt waits out a backoff
// (100 ms doubling to 10 s) during which new queries fail at once with the
// same error. A connection lost after it was established has its queries
// sent again on a new one, as do53-tcp does; when that new connection
// cannot be made (the resolver is restarting), they wait for the next
// attempt after the backoff, and so do queries that arrive meanwhile,
// until their deadline.
class DotUpstream final : public Upstream {
 public:
  DotUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
              std::chrono::milliseconds timeout, UpstreamListener& listener);

  UpstreamError send(std::span<const std::uint8_t> query, Transport client,
                     SteadyTime now) override;
  void cancel(std::uint16_t upstream_id) noexcept override { queries_.forget(upstream_id); }
  std::size_t io_slots() const noexcept override { return 1; }
  IoInterest io_interest(std::size_t slot) const noexcept override;
  void on_io(std::size_t slot, std::uint32_t events, SteadyTime now) override;
  SteadyTime next_timer() const noexcept override;
  void on_timer(SteadyTime now) override;
  UpstreamCounters counters() const noexcept override { return counters_; }

 private:
  enum class State { closed, connecting, handshaking, open };

  UpstreamError open_connection(SteadyTime now);
  void queue(std::span<const std::uint8_t> query);
  void start_handshake(SteadyTime now);
  void continue_handshake(SteadyTime now);
  bool write_pending();
  bool read_answers(SteadyTime now);
  void connection_failed(UpstreamError error, SteadyTime now);
  void resend(std::uint32_t from, bool count_attempt, UpstreamError error, SteadyTime now);
  void fail_all(std::uint32_t generation, UpstreamError error, SteadyTime now);
  void back_off(UpstreamError error, SteadyTime now);
  void close() noexcept;

  Endpoint address_;
  std::unique_ptr<TlsClientContext> tls_;
  std::chrono::milliseconds timeout_;
  UpstreamListener& listener_;

  State state_ = State::closed;
  UniqueFd socket_;
  TlsSession session_;
  std::uint32_t generation_ = 0;
  SteadyTime handshake_deadline_{};
  bool broken_ = false;        // a write failed inside send(): handled on the next timer
  bool resend_write_ = false;  // gnutls_record_send said EAGAIN: call it again with nothing new
  bool session_saved_ = false;
  bool carrying_resends_ = false;  // this connection was opened for queries of a lost one
  std::uint64_t answers_on_connection_ = 0;
  std::uint32_t waiting_ = 0;  // queries recorded on this generation wait for the next attempt

  SteadyTime retry_after_{};  // no new connection before this, after a failed one
  std::chrono::milliseconds backoff_;
  UpstreamError last_failure_;

  std::vector<std::uint8_t> out_;  // framed queries not yet taken by TLS
  std::size_t written_ = 0;
  std::vector<std::uint8_t> in_;  // decrypted octets not yet framed
  std::size_t in_begin_ = 0;
  StreamQueries queries_;
  UpstreamCounters counters_;
};

}  // namespace dnsgate
