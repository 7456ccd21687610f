// The doq upstream: DNS over QUIC (RFC 9250) on ngtcp2 with GnuTLS.
#pragma once

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/socket.hpp"
#include "upstream/reconnect.hpp"
#include "upstream/stream_queries.hpp"
#include "upstream/tls_client.hpp"
#include "upstream/upstream.hpp"

namespace dnsgate {

// One QUIC connection (ALPN "doq", TLS 1.3) over one connected UDP socket,
// opened on first use and again after it closes; one client-initiated
// bidirectional stream per query. A query goes with DNS id 0 (RFC 9250
// 4.2.1), padded (RFC 8467) when it has an OPT record, behind a 2-octet
// length and followed by FIN; the answer on the same stream gets the
// query's upstream id back. A connection that cannot be made or verified
// fails the queries waiting on it at once, and the next attempt waits out
// a backoff (100 ms doubling to 10 s) during which new queries fail at
// once with the same error. A connection lost after its handshake has its
// unanswered queries sent again on the next one, as dot does. An answer
// with a non-zero id is a protocol error: the connection is closed with
// DOQ_PROTOCOL_ERROR and its queries fail. A stream reset by the server
// fails that query alone.
//
// send() and cancel() only queue; the QUIC work (packets, stream
// shutdowns) happens in flush(), on_io() and on_timer(), and ngtcp2's
// callbacks only record what happened, so the listener is never called
// from inside ngtcp2 and may call cancel() or send() from its callbacks.
//
// doq.cpp holds the queries and their streams; doq_connection.cpp the QUIC
// connection (ngtcp2's callbacks, packets, how a connection ends).
class DoqUpstream final : public Upstream {
 public:
  DoqUpstream(const ResolverConfig& resolver, std::unique_ptr<TlsClientContext> tls,
              std::chrono::milliseconds timeout, UpstreamListener& listener);
  ~DoqUpstream() override;

  UpstreamError send(std::span<const std::uint8_t> query, Transport client,
                     SteadyTime now) override;
  void cancel(std::uint16_t upstream_id) noexcept override;
  void flush(SteadyTime now) override;
  std::size_t io_slots() const noexcept override { return 1; }
  IoInterest io_interest(std::size_t slot) const noexcept override;
  void on_io(std::size_t slot, std::uint32_t events, SteadyTime now) override;
  SteadyTime next_timer() const noexcept override;
  void on_timer(SteadyTime now) override;
  UpstreamCounters counters() const noexcept override { return counters_; }

 private:
  friend struct DoqCallbacks;  // ngtcp2's C callbacks, in doq_connection.cpp

  struct ConnDeleter {
    void operator()(ngtcp2_conn* conn) const noexcept { ngtcp2_conn_del(conn); }
  };

  // A query with its own stream.
  struct Stream {
    std::uint16_t id = 0;           // the upstream id of its query
    std::vector<std::uint8_t> out;  // length + query with id 0; ngtcp2 may resend any of it
    std::size_t sent = 0;           // octets of `out` handed to ngtcp2 (FIN with the last)
    std::vector<std::uint8_t> in;   // the answer as received: length + message
    bool answered = false;          // a whole answer was taken
    bool done = false;              // answered, failed or cancelled: nothing more to report
    bool closed = false;            // ngtcp2 closed it
  };

  // A query waiting for a stream (before the handshake, or while the
  // server allows no more streams).
  struct Waiting {
    std::uint16_t id = 0;
    std::uint32_t serial = 0;
    std::vector<std::uint8_t> framed;
  };

  // Where a pending query of this connection is: `serial` tells a query
  // from an earlier one that had the same id; `stream` is -1 while waiting.
  struct Placed {
    std::uint32_t serial = 0;
    std::int64_t stream = -1;
  };

  // What ngtcp2's callbacks saw, handled once ngtcp2 has returned.
  struct StreamEvent {
    enum class Kind : std::uint8_t { data, reset, closed };
    Kind kind = Kind::data;
    std::int64_t stream = -1;
    bool error_code_set = false;
  };

  UpstreamError open_connection(SteadyTime now);
  void queue(std::uint16_t id, std::span<const std::uint8_t> query);
  bool read_packets(SteadyTime now);
  bool write_packets(SteadyTime now);
  bool send_packet(const std::uint8_t* data, std::size_t size, SteadyTime now);
  void open_streams();
  void apply_shutdowns();
  Stream* next_to_write();
  bool process_events(SteadyTime now);
  bool take_answer(Stream& stream, std::int64_t stream_id, SteadyTime now);
  bool owns(const Stream& stream, std::int64_t stream_id) const;
  void fail_stream(Stream& stream, std::int64_t stream_id, UpstreamError error, SteadyTime now);
  void handle_error(int code, SteadyTime now);
  UpstreamError peer_close_error() const;
  UpstreamError tls_error() const;
  UpstreamError socket_error(int error) const;
  void close_with(const ngtcp2_ccerr& reason, SteadyTime now);
  void protocol_error(SteadyTime now);
  void connection_failed(UpstreamError error, SteadyTime now, bool resend);
  void close() noexcept;

  sockaddr_storage remote_{};
  socklen_t remote_length_ = 0;
  std::unique_ptr<TlsClientContext> tls_;
  std::chrono::milliseconds timeout_;
  UpstreamListener& listener_;

  // Declared in this order so that the connection goes first, then the
  // TLS session it uses, then the socket.
  UniqueFd socket_;
  TlsSession session_;
  std::unique_ptr<ngtcp2_conn, ConnDeleter> conn_;
  ngtcp2_crypto_conn_ref conn_ref_{};
  sockaddr_storage local_{};
  socklen_t local_length_ = 0;

  std::uint32_t generation_ = 0;
  std::uint32_t serial_ = 0;
  SteadyTime handshake_deadline_{};
  bool handshake_done_ = false;  // the handshake completed and the pins matched
  bool dirty_ = false;           // queued work for the next write
  bool session_saved_ = false;
  std::uint64_t answers_on_connection_ = 0;
  UpstreamError callback_error_;   // why a callback failed
  ngtcp2_ccerr callback_close_{};  // and what to tell the server

  ReconnectBackoff backoff_;

  std::unordered_map<std::int64_t, Stream> streams_;
  std::unordered_map<std::uint16_t, Placed> placed_;
  std::deque<Waiting> waiting_;
  std::deque<std::int64_t> to_write_;   // streams with octets not yet handed to ngtcp2
  std::vector<std::int64_t> shutdown_;  // streams cancel() wants reset
  std::vector<StreamEvent> events_;
  std::vector<std::uint8_t> blocked_;  // a packet the socket would not take yet
  std::vector<std::uint8_t> rx_;
  std::array<std::uint8_t, 1452> tx_{};
  StreamQueries queries_;
  UpstreamCounters counters_;
};

}  // namespace dnsgate
