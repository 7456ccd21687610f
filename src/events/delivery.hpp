// Where a delivering sink sends its events (DESIGN.md §11): NATS JetStream
// or an HTTP collector. The sink's delivery thread reads batches from the
// spool, hands each to send(), and acknowledges in the spool what was
// delivered. Implementations block in send() (bounded by their timeouts),
// never on the DNS path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "dnsgate/config.hpp"

namespace dnsgate {

struct OutgoingEvent {
  std::string_view id;    // the CloudEvent id (Nats-Msg-Id), see event_id_of()
  std::string_view line;  // the whole CloudEvent, JSON, no newline
};

// The id of one of dnsgate's event lines (they begin
// {"specversion":"1.0","id":"...", cloud_event.cpp): a view into `line`, 36
// characters for the generated UUIDs. Empty if `line` does not begin so, or
// its id is empty, escaped, holds spaces or control characters, or is longer
// than 64: such an event is published without Nats-Msg-Id (not
// deduplicated), never refused.
std::string_view event_id_of(std::string_view line) noexcept;

enum class DeliveryOutcome {
  delivered,  // the whole batch was acknowledged
  retry,      // a transient failure (server away, 429/5xx, timeout): send again later
  rejected,   // a permanent refusal of the events after the delivered prefix (HTTP 4xx but 429)
};

struct DeliveryResult {
  // How many events from the front of the batch were acknowledged, in
  // order (JetStream acks may arrive out of order: this is the prefix).
  std::size_t delivered = 0;
  DeliveryOutcome outcome = DeliveryOutcome::delivered;
  // For `rejected`: how many after the prefix; HTTP: the refused POST's
  // events (the whole batch when it is at most batch_max(); the events
  // after them were not offered and go in a later send()).
  std::size_t rejected = 0;
  std::string error;  // for retry/rejected: one line for the log
};

struct DeliveryCounts {
  std::uint64_t sent = 0;       // events handed to the server (resends included)
  std::uint64_t delivered = 0;  // acknowledged (in delivered prefixes)
  std::uint64_t retried = 0;    // events of a `retry` result past its prefix: to be sent again
  std::uint64_t rejected = 0;   // refused for good (dead-lettered by the sink); nats: never
  // Failures: http, POSTs that failed; nats, events not acknowledged in a
  // `retry` result (publish refused, negative or no acknowledgement, not
  // connected), so equal to `retried`.
  std::uint64_t errors = 0;
};

class EventDelivery {
 public:
  EventDelivery() = default;
  EventDelivery(const EventDelivery&) = delete;
  EventDelivery& operator=(const EventDelivery&) = delete;
  virtual ~EventDelivery() = default;

  // Sends the batch in order and waits for its acknowledgements, at most a
  // few seconds (documented by each implementation). One thread at a time
  // (the delivery thread); the views in `batch` need only last the call.
  // A batch over batch_max() is sent in parts, one after the other.
  virtual DeliveryResult send(std::span<const OutgoingEvent> batch) = 0;
  // The most events one send() takes in one go: nats 4096, http batchMax.
  virtual std::size_t batch_max() const noexcept = 0;
  // Makes a send() in progress return soon (shutdown), with `retry` and the
  // prefix acknowledged so far; every later send() returns `retry` at once
  // (cancelled for good). Thread-safe.
  virtual void cancel() noexcept = 0;
  virtual DeliveryCounts counts() const noexcept = 0;
  // "nats://127.0.0.1:4222 subject dnsgate.events.web stream DNSGATE"
  virtual std::string describe() const = 0;
};

// Connects lazily: a server that is down at start is not an error (the
// spool holds the events); a config that cannot work (bad URL) is.
// nats: connects at the first send(), libnats reconnects after, forever;
// a send() while no server is up waits about a second for one, then says
// retry ("nats: not connected to ..."); acknowledgements are awaited 5 s.
// http: connect timeout 2 s, whole POST 10 s, one kept-alive connection.
std::variant<std::unique_ptr<EventDelivery>, std::string> open_nats_delivery(
    const NatsSinkConfig& config, std::string_view cell);
std::variant<std::unique_ptr<EventDelivery>, std::string> open_http_delivery(
    const HttpSinkConfig& config);

}  // namespace dnsgate
