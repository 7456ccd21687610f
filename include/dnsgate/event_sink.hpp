// CloudEventSink: the production DnsQueryEmitter, writing JSON Lines to
// stdout or a file from its own thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "dnsgate/config.hpp"
#include "dnsgate/events.hpp"

namespace dnsgate {

class MetricsBoard;

// A delivering sink's figures (nats, http: DESIGN.md §11).
struct DeliveryFigures {
  const char* sink = "";              // "nats" or "http"
  std::uint64_t delivered = 0;        // acknowledged by the sink
  std::uint64_t spooled = 0;          // stored in the spool
  std::uint64_t spool_bytes = 0;      // on disk now
  std::uint64_t backlog = 0;          // in the spool, not acknowledged yet
  std::uint64_t retried = 0;          // events sent again after a transient failure
  std::uint64_t rejected = 0;         // refused for good, kept in the dead-letter file
  std::uint64_t dropped = 0;          // not stored: spool full or failing
  std::uint64_t corrupt_skipped = 0;  // spool records skipped at start (bad checksum)
};

struct EventSinkOptions {
  std::string cell = "default";
  EventSinkKind kind = EventSinkKind::stdout_lines;
  std::string path;  // for EventSinkKind::file
  // For EventSinkKind::file: an output already open (append mode) that the
  // sink takes over and closes, in place of opening `path` (which then only
  // names it in messages). The supervisor opens a cell's file and hands it
  // to the unprivileged proxy this way.
  int fd = -1;
  // A shared event ring (create_event_ring) to queue the records in, in
  // place of private memory: the supervisor maps it too, so the events a
  // killed proxy had queued but not written are not lost
  // (recover_event_ring). Its capacity replaces queue_capacity.
  int ring_fd = -1;
  // For EventSinkKind::nats and http: the config's events block (where to
  // deliver, the spool), the board for /metrics, and where delivery
  // failures are logged.
  EventsConfig delivery;
  MetricsBoard* metrics = nullptr;
  std::function<void(bool error, const std::string& line)> log;
  std::size_t queue_capacity = 8192;              // records waiting for the writer
  std::chrono::milliseconds flush_interval{100};  // the longest an event waits unwritten
};

// emit() copies the record into a bounded, preallocated queue and returns at
// once; false when the queue is full (the event is dropped and counted).
// A writer thread formats and writes whole lines only, and flushes at least
// every flush_interval and at close().
class CloudEventSink final : public DnsQueryEmitter {
 public:
  // Opens the file (append, created 0640) or stdout. nullptr and `error`
  // set when the file cannot be opened.
  static std::unique_ptr<CloudEventSink> open(const EventSinkOptions& options, std::string& error);

  ~CloudEventSink() override;

  bool emit(const QueryRecord& record) noexcept override;
  // Waits while at least three quarters of the queue are taken and the
  // writer is formatting (not blocked writing), until half is free again.
  bool wait_while_backlogged(std::chrono::milliseconds limit) noexcept override;

  // Writes everything queued, flushes, stops the writer. Idempotent.
  void close();

  // Every accepted event ends in exactly one of written() or write_errors(),
  // once close() has returned; every refused one is in dropped().
  std::uint64_t written() const noexcept;       // events whose line reached the output whole
  std::uint64_t dropped() const noexcept;       // emit() returned false: queue full or closed
  std::uint64_t write_errors() const noexcept;  // events lost to a failed write (EPIPE, ENOSPC...)
  // For nats and http: what the delivery did (after close(): all of it).
  std::optional<DeliveryFigures> delivery() const noexcept;
  // Events accepted by emit() and lost after: a full or failing spool.
  std::uint64_t dropped_after_accept() const noexcept override;

  // The file sink reopens its path before its next write (log rotation,
  // SIGUSR1). Async-signal-safe: a handler may call it.
  static void request_reopen() noexcept;

  struct State;  // defined in src/events/event_sink.cpp

 private:
  explicit CloudEventSink(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The shared event ring of a supervised proxy (DESIGN.md §10): a memfd of
// `capacity` record slots. Invalid (-1) and `error` set on failure.
int create_event_ring(std::size_t capacity, std::string& error);

// After the proxy that used `ring_fd` died without closing its sink: formats
// the records it had queued but not written whole (with the event ids it
// gave them, if it had formatted them already, so a line written twice
// carries one id) and appends them to `output`. The resolvers' names come
// from `config`, the cell's. Returns how many events were written; `error`
// set when the ring cannot be read or the output fails.
std::size_t recover_event_ring(int ring_fd, const DnsProxyConfig& config, int output,
                               std::string& error);

}  // namespace dnsgate
