// The output of a delivering sink (DESIGN.md §11, docs/events.md
// "Delivery"): the event writer stores each line in the on-disk spool; a
// delivery thread of its own reads the spool in order, sends batches to
// NATS JetStream or an HTTP collector, and acknowledges in the spool what
// they acknowledged. The DNS path never waits for any of it: a sink that
// is away fills the spool, and only a full (or failing) spool drops
// events, newest first, counted and reported by one
// dev.dnsgate.events_dropped event once there is room again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "dnsgate/config.hpp"
#include "dnsgate/event_sink.hpp"
#include "net/clock.hpp"

namespace dnsgate {

class MetricsBoard;

struct SpoolingOutputOptions {
  std::string cell;
  EventsConfig events;  // sink nats or http, with its spool
  MetricsBoard* metrics = nullptr;
  // On close, how long the delivery thread keeps sending the backlog;
  // what is left stays in the spool for the next start.
  std::chrono::milliseconds drain_grace{2000};
  // Where failures and recoveries are told (the library has no logger of
  // its own): error or not, one line.
  std::function<void(bool error, const std::string& line)> log;
};

class SpoolingOutput {
 public:
  // Errors only for a delivery that cannot work (a bad URL); a sink that is
  // away or a spool that cannot be opened is logged and retried.
  static std::variant<std::unique_ptr<SpoolingOutput>, std::string> open(
      const SpoolingOutputOptions& options);
  ~SpoolingOutput();
  SpoolingOutput(const SpoolingOutput&) = delete;
  SpoolingOutput& operator=(const SpoolingOutput&) = delete;

  // The event writer's side, one thread: one whole event line (no newline)
  // and when its query arrived.
  void store(std::string_view line, WallTime time) noexcept;
  // After each batch of store(): the reader may see them.
  void flush() noexcept;
  // The writer's: a flush() failed and has its lines still to write.
  bool unflushed() noexcept;

  // Stops the delivery thread after it has sent what it could within the
  // drain grace. Idempotent.
  void close() noexcept;

  DeliveryFigures figures() const noexcept;

  struct State;

 private:
  explicit SpoolingOutput(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace dnsgate
