// TlsStreamUpstream: what DoT and DoH share, one TLS connection per
// resolver and its life: connect, handshake, authenticate, backoff after
// failures, queries sent again when a connection that worked is lost.
// A protocol fills in how a query goes on the connection and how the
// bytes that come back turn into answers.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/socket.hpp"
#include "upstream/reconnect.hpp"
#include "upstream/stream_queries.hpp"
#include "upstream/tls_client.hpp"
#include "upstream/upstream.hpp"

namespace dnsgate {

// Queries are taken at any time: while the connection is being made they
// are recorded and written once it is authenticated.
//
// Failures: a connection that cannot be made or verified fails the
// queries waiting on it at once, and the next attempt waits out a backoff
// (100 ms doubling to 10 s) during which new queries fail at once with the
// same error. A connection lost after it was established has its queries
// sent again on a new one; when that new connection cannot be made (the
// resolver is restarting), they wait for the next attempt after the
// backoff, and so do queries that arrive meanwhile, until their deadline.
class TlsStreamUpstream : public Upstream {
 public:
  UpstreamError send(std::span<const std::uint8_t> query, Transport client, SteadyTime now) final;
  void cancel(std::uint16_t upstream_id) noexcept final;
  std::size_t io_slots() const noexcept final { return 1; }
  IoInterest io_interest(std::size_t slot) const noexcept final;
  void on_io(std::size_t slot, std::uint32_t events, SteadyTime now) final;
  SteadyTime next_timer() const noexcept final;
  void on_timer(SteadyTime now) final;
  UpstreamCounters counters() const noexcept final { return counters_; }

 protected:
  TlsStreamUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
                    std::chrono::milliseconds timeout, UpstreamListener& listener,
                    std::string alpn);

  // The connection is authenticated; queries follow through submit().
  virtual void on_established() = 0;
  // Puts one query (its first two octets the upstream id) on the open
  // connection, appending what to write to output().
  virtual void submit(std::span<const std::uint8_t> query) = 0;
  // Bytes read from the connection. An error ends the connection.
  virtual UpstreamError consume(std::span<const std::uint8_t> bytes, SteadyTime now) = 0;
  // The loop no longer waits for `upstream_id`; it is already forgotten here.
  virtual void on_cancel(std::uint16_t upstream_id) noexcept { (void)upstream_id; }
  // The connection is gone: drop what belongs to it.
  virtual void on_closed() noexcept = 0;
  // Octets the protocol still wants to write besides output() (HTTP/2).
  virtual bool wants_write() const noexcept { return false; }
  // Fills output() with more to write, when wants_write() said so.
  virtual void produce() {}

  // For protocols: what to write, the queries in flight, the listener.
  std::vector<std::uint8_t>& output() noexcept { return out_; }
  StreamQueries& queries() noexcept { return queries_; }
  std::uint32_t generation() const noexcept { return generation_; }
  UpstreamListener& listener() noexcept { return listener_; }
  // An answer for a query on this connection: relayed to the loop.
  void answered(std::span<std::uint8_t> answer, SteadyTime now);
  // One query failed, the connection goes on.
  void query_failed(std::uint16_t upstream_id, UpstreamError error, SteadyTime now);
  void count_unsolicited() noexcept { ++counters_.unsolicited; }
  // The peer will take no more queries on this connection (GOAWAY): it is
  // closed after this read, and its unanswered queries go on a new one.
  void close_after_read(UpstreamError why) noexcept { closing_ = why; }

 private:
  enum class State { closed, connecting, handshaking, open };

  UpstreamError open_connection(SteadyTime now);
  void start_handshake(SteadyTime now);
  void continue_handshake(SteadyTime now);
  bool write_pending();
  bool read(SteadyTime now);
  void connection_failed(UpstreamError error, SteadyTime now);
  void resend(std::uint32_t from, bool count_attempt, UpstreamError error, SteadyTime now);
  void fail_all(std::uint32_t generation, UpstreamError error, SteadyTime now);
  void close() noexcept;

  Endpoint address_;
  std::unique_ptr<TlsClientContext> tls_;
  std::chrono::milliseconds timeout_;
  UpstreamListener& listener_;
  std::string alpn_;

  State state_ = State::closed;
  UniqueFd socket_;
  TlsSession session_;
  std::uint32_t generation_ = 0;
  SteadyTime handshake_deadline_{};
  bool broken_ = false;        // a write failed inside send(): handled on the next timer
  bool resend_write_ = false;  // gnutls_record_send said EAGAIN: call it again with nothing new
  bool session_saved_ = false;
  bool carrying_resends_ = false;  // this connection was opened for queries of a lost one
  UpstreamError closing_;          // set by the protocol: close once this read is done
  std::uint64_t answers_on_connection_ = 0;
  std::uint32_t waiting_ = 0;  // queries recorded on this generation wait for the next attempt

  ReconnectBackoff backoff_;

  std::vector<std::uint8_t> out_;  // octets for TLS to write
  std::size_t written_ = 0;
  std::vector<std::uint8_t> in_;  // one read's worth of decrypted octets
  StreamQueries queries_;
  UpstreamCounters counters_;
};

}  // namespace dnsgate
