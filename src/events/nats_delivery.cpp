// NATS JetStream delivery (DESIGN.md §11): every event of a batch is
// published asynchronously with Nats-Msg-Id set to its id, and counts as
// delivered once JetStream acknowledged it.
//
// Connecting: at the first send(), then libnats keeps the connection,
// trying every URL again each kReconnectWaitMs, forever; a server that is
// down at the first send() is retried the same way. While it is away,
// send() waits up to kConnectWait for it, then says retry.
//
// Bounds of one send(): the acknowledgements of a batch are awaited at most
// kAckWait, less when the connection is lost for kConnectWait while
// waiting; cancel() ends the wait at once.
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "events/delivery.hpp"

namespace dnsgate {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::int64_t kConnectTimeoutMs = 2000;
constexpr std::int64_t kReconnectWaitMs = 500;
constexpr std::int64_t kReconnectJitterMs = 250;
// A connection the server stopped answering is given up after three
// missed pings: a half-open TCP connection would otherwise hold the
// batches until the kernel notices.
constexpr int kPingIntervalMs = 10000;
constexpr int kMaxPingsOut = 3;
constexpr auto kConnectWait = std::chrono::milliseconds(1000);
constexpr auto kAckWait = std::chrono::milliseconds(5000);
constexpr auto kPoll = std::chrono::milliseconds(20);
constexpr auto kAckPoll = std::chrono::milliseconds(100);
// Large enough that the pipeline rarely drains between batches, small
// enough that a batch fits the client's reconnect buffer (8 MB) and a
// retried batch costs little.
constexpr std::size_t kBatchMax = 4096;
// Acknowledgements of an abandoned batch may still be counted by libnats
// while the next one publishes: room for both, so publishing never stalls.
constexpr std::int64_t kMaxPending = 2 * kBatchMax;

// Longest id event_id_of() returns, and its NUL.
constexpr std::size_t kIdBuffer = 65;

std::string status_text(natsStatus status) {
  const char* text = natsStatus_GetText(status);
  return text != nullptr ? std::string(text) : fmt::format("status {}", static_cast<int>(status));
}

// The last error libnats recorded on this thread: it names the cause more
// precisely than the status alone ("connection refused").
std::string last_error(natsStatus status) {
  natsStatus last = NATS_OK;
  const char* text = nats_GetLastError(&last);
  if (text != nullptr && *text != '\0') return text;
  return status_text(status);
}

// What a batch waits for: the acknowledgement handler runs on a libnats
// thread and records here what became of each message.
struct Acks {
  enum : std::uint8_t { kPending, kAcked, kFailed };

  std::mutex mutex;
  std::condition_variable changed;
  // The batch's messages by address, sorted: the handler is given the
  // message it acknowledges, nothing else that tells which one it was.
  using Entry = std::pair<const natsMsg*, std::uint32_t>;
  std::vector<Entry> index;
  std::vector<std::uint8_t> state;  // per event of the batch
  std::size_t published = 0;        // messages libnats took
  std::size_t answered = 0;         // of those, acknowledged or failed
  std::size_t first_failed = SIZE_MAX;
  std::string failure;  // why first_failed failed
  bool cancelled = false;
};

// Addresses of distinct objects are ordered by std::less only.
bool by_address(const Acks::Entry& a, const Acks::Entry& b) {
  return std::less<const natsMsg*>()(a.first, b.first);
}

// Handlers may run after the delivery is gone (libnats does not wait for
// a callback in progress when its context is destroyed), so they reach the
// Acks through a token looked up here rather than a pointer to it.
class AckRegistry {
 public:
  std::uintptr_t add(std::shared_ptr<Acks> acks) {
    const std::lock_guard lock(mutex_);
    const std::uintptr_t token = next_++;
    live_.emplace(token, std::move(acks));
    return token;
  }
  void remove(std::uintptr_t token) {
    const std::lock_guard lock(mutex_);
    live_.erase(token);
  }
  std::shared_ptr<Acks> find(std::uintptr_t token) {
    const std::lock_guard lock(mutex_);
    const auto found = live_.find(token);
    return found != live_.end() ? found->second : nullptr;
  }

 private:
  std::mutex mutex_;
  std::uintptr_t next_ = 1;
  std::unordered_map<std::uintptr_t, std::shared_ptr<Acks>> live_;
};

AckRegistry& ack_registry() {
  // Never destroyed: libnats threads may still call in while the process
  // exits.
  static auto* const registry = new AckRegistry;
  return *registry;
}

std::string describe_failure(const jsPubAckErr& error, std::string_view subject) {
  if (error.Err == NATS_NO_RESPONDERS) {
    return fmt::format("no responders: no stream captures subject {}", subject);
  }
  if (error.Err == NATS_TIMEOUT) {
    return "no acknowledgement (timeout)";
  }
  std::string text =
      error.ErrText != nullptr && *error.ErrText != '\0' ? error.ErrText : status_text(error.Err);
  if (error.ErrCode != 0) {
    return fmt::format("JetStream error {}: {} (subject {})", static_cast<int>(error.ErrCode), text,
                       subject);
  }
  return text;
}

void on_ack(jsCtx* /*js*/, natsMsg* message, jsPubAck* ack, jsPubAckErr* error,
            void* closure) noexcept {
  try {
    if (const std::shared_ptr<Acks> acks =
            ack_registry().find(reinterpret_cast<std::uintptr_t>(closure))) {
      const std::lock_guard lock(acks->mutex);
      const Acks::Entry key{message, 0};
      const auto found = std::lower_bound(acks->index.begin(), acks->index.end(), key, by_address);
      // Not found: a message of a batch given up on.
      if (found != acks->index.end() && found->first == message) {
        const std::uint32_t at = found->second;
        if (acks->state[at] == Acks::kPending) {
          if (ack != nullptr) {
            acks->state[at] = Acks::kAcked;
          } else {
            acks->state[at] = Acks::kFailed;
            if (at < acks->first_failed) {
              acks->first_failed = at;
              // The subject is the message's own: the same for the batch.
              const char* subject = natsMsg_GetSubject(message);
              acks->failure = error != nullptr
                                  ? describe_failure(*error, subject != nullptr ? subject : "")
                                  : std::string("negative acknowledgement");
            }
          }
          if (++acks->answered >= acks->published) acks->changed.notify_all();
        }
      }
    }
  } catch (...) {
    // Only allocation can throw here; the batch then times out and is
    // sent again.
  }
  // Ours to free, acknowledged or not (nats.h, jsPubAckHandler).
  natsMsg_Destroy(message);
}

// libnats connects in the background only when given this callback (with
// none, the first connect would block until a server answers).
void on_connected(natsConnection* /*connection*/, void* /*closure*/) noexcept {}

// Whether `url` is something libnats can parse: scheme://[user[:pass]@]host[:port].
bool plausible_url(std::string_view url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos || scheme == 0) return false;
  std::string_view rest = url.substr(scheme + 3);
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    rest = rest.substr(at + 1);
  }
  if (rest.ends_with('/')) rest.remove_suffix(1);
  std::string_view host = rest;
  if (rest.starts_with('[')) {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return false;
    host = rest.substr(0, close + 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return false;
  } else if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    rest = rest.substr(colon);
  } else {
    rest = {};
  }
  if (host.empty() || host.find_first_of("/ ") != std::string_view::npos) return false;
  if (rest.empty()) return true;
  const std::string_view port = rest.substr(1);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && end == port.data() + port.size() && value > 0 && value <= 65535;
}

class NatsDelivery final : public EventDelivery {
 public:
  NatsDelivery(const NatsSinkConfig& config, std::string subject)
      : config_(config),
        subject_(std::move(subject)),
        acks_(std::make_shared<Acks>()),
        token_(ack_registry().add(acks_)) {}

  ~NatsDelivery() override {
    disconnect();
    natsOptions_Destroy(options_);
    ack_registry().remove(token_);
  }

  // The client's options: validated here so that a config it cannot use
  // fails at start.
  std::string init() {
    std::vector<const char*> urls;
    urls.reserve(config_.urls.size());
    for (const std::string& url : config_.urls) urls.push_back(url.c_str());
    const std::string name = fmt::format("dnsgate {}", subject_);

    natsStatus status = natsOptions_Create(&options_);
    if (status == NATS_OK) {
      status = natsOptions_SetServers(options_, urls.data(), static_cast<int>(urls.size()));
    }
    if (status == NATS_OK) status = natsOptions_SetName(options_, name.c_str());
    if (status == NATS_OK) status = natsOptions_SetTimeout(options_, kConnectTimeoutMs);
    if (status == NATS_OK) status = natsOptions_SetAllowReconnect(options_, true);
    if (status == NATS_OK) status = natsOptions_SetMaxReconnect(options_, -1);
    if (status == NATS_OK) status = natsOptions_SetReconnectWait(options_, kReconnectWaitMs);
    if (status == NATS_OK) {
      status = natsOptions_SetReconnectJitter(options_, kReconnectJitterMs, kReconnectJitterMs);
    }
    if (status == NATS_OK) status = natsOptions_SetPingInterval(options_, kPingIntervalMs);
    if (status == NATS_OK) status = natsOptions_SetMaxPingsOut(options_, kMaxPingsOut);
    if (status == NATS_OK) {
      status = natsOptions_SetRetryOnFailedConnect(options_, true, on_connected, nullptr);
    }
    if (status != NATS_OK) return fmt::format("nats: {}", last_error(status));
    return {};
  }

  // A batch larger than batch_max() goes in parts, each awaited before the
  // next: MaxPending is sized for one.
  DeliveryResult send(std::span<const OutgoingEvent> batch) override {
    DeliveryResult result;
    for (std::size_t at = 0; at < batch.size();) {
      const auto part = batch.subspan(at, std::min(kBatchMax, batch.size() - at));
      DeliveryResult sent = send_part(part);
      result.delivered += sent.delivered;
      delivered_.fetch_add(sent.delivered, std::memory_order_relaxed);
      if (sent.outcome != DeliveryOutcome::delivered) {
        result.outcome = sent.outcome;
        result.error = std::move(sent.error);
        retried_.fetch_add(batch.size() - result.delivered, std::memory_order_relaxed);
        errors_.fetch_add(batch.size() - result.delivered, std::memory_order_relaxed);
        return result;
      }
      at += part.size();
    }
    return result;
  }

  std::size_t batch_max() const noexcept override { return kBatchMax; }

  void cancel() noexcept override {
    cancelled_.store(true, std::memory_order_relaxed);
    try {
      const std::lock_guard lock(acks_->mutex);
      acks_->cancelled = true;
      acks_->changed.notify_all();
    } catch (const std::exception&) {
      // The flag alone ends the wait at the next poll.
    }
  }

  DeliveryCounts counts() const noexcept override {
    DeliveryCounts counts;
    counts.sent = sent_.load(std::memory_order_relaxed);
    counts.delivered = delivered_.load(std::memory_order_relaxed);
    counts.retried = retried_.load(std::memory_order_relaxed);
    counts.rejected = 0;
    counts.errors = errors_.load(std::memory_order_relaxed);
    return counts;
  }

  std::string describe() const override {
    std::string text = fmt::format("{} subject {}", fmt::join(config_.urls, ","), subject_);
    if (!config_.stream.empty()) text += fmt::format(" stream {}", config_.stream);
    return text;
  }

 private:
  // At most kBatchMax events.
  DeliveryResult send_part(std::span<const OutgoingEvent> batch) {
    if (cancelled_.load(std::memory_order_relaxed)) {
      return fail(0, "nats: cancelled (shutting down)");
    }
    if (std::string error = await_connection(); !error.empty()) {
      return fail(0, std::move(error));
    }

    // Every message is made before the first is published so that the
    // handler can tell them apart from the start.
    std::vector<natsMsg*> messages(batch.size(), nullptr);
    std::string error;
    for (std::size_t i = 0; i < batch.size() && error.empty(); ++i) {
      error = make_message(batch[i], messages[i]);
    }
    if (!error.empty()) {
      for (natsMsg* message : messages) natsMsg_Destroy(message);
      return fail(0, std::move(error));
    }
    {
      const std::lock_guard lock(acks_->mutex);
      acks_->index.clear();
      for (std::size_t i = 0; i < messages.size(); ++i) {
        acks_->index.emplace_back(messages[i], static_cast<std::uint32_t>(i));
      }
      std::sort(acks_->index.begin(), acks_->index.end(), by_address);
      acks_->state.assign(batch.size(), Acks::kPending);
      acks_->published = SIZE_MAX;  // not all taken yet: no wake-up before
      acks_->answered = 0;
      acks_->first_failed = SIZE_MAX;
      acks_->failure.clear();
    }

    jsPubOptions options;
    jsPubOptions_Init(&options);
    if (!config_.stream.empty()) options.ExpectStream = config_.stream.c_str();
    std::size_t published = 0;
    for (; published < messages.size(); ++published) {
      // On success libnats owns the message and clears the pointer.
      const natsStatus status = js_PublishMsgAsync(js_, &messages[published], &options);
      if (status != NATS_OK) {
        error = fmt::format("nats: publish to {}: {}", subject_, last_error(status));
        break;
      }
    }
    for (natsMsg* message : messages) natsMsg_Destroy(message);
    sent_.fetch_add(published, std::memory_order_relaxed);

    const Clock::time_point deadline = Clock::now() + kAckWait;
    std::optional<Clock::time_point> lost_since;
    std::unique_lock lock(acks_->mutex);
    acks_->published = published;
    while (acks_->answered < published && !acks_->cancelled) {
      const Clock::time_point now = Clock::now();
      if (now >= deadline) break;
      // The connection is looked at now and then: acknowledgements do not
      // come while it is away.
      if (natsConnection_Status(connection_) == NATS_CONN_STATUS_CONNECTED) {
        lost_since.reset();
      } else if (!lost_since) {
        lost_since = now;
      } else if (now - *lost_since >= kConnectWait) {
        break;
      }
      acks_->changed.wait_until(lock, std::min(deadline, now + kAckPoll));
    }

    std::size_t prefix = 0;
    while (prefix < batch.size() && acks_->state[prefix] == Acks::kAcked) ++prefix;
    if (error.empty()) {
      if (acks_->first_failed != SIZE_MAX) {
        error = fmt::format("nats: {}", acks_->failure);
      } else if (acks_->cancelled) {
        error = "nats: cancelled (shutting down)";
      } else if (lost_since) {
        error = fmt::format("nats: connection lost, {} of {} events not acknowledged",
                            published - acks_->answered, batch.size());
      } else if (prefix < batch.size()) {
        error = fmt::format("nats: no acknowledgement for {} of {} events within {} ms",
                            published - acks_->answered, batch.size(), kAckWait.count());
      }
    }
    const bool abandoned = acks_->answered < published;
    // Late handlers find nothing to record.
    acks_->index.clear();
    lock.unlock();

    if (abandoned) forget_pending();
    if (prefix == batch.size()) {
      DeliveryResult result;
      result.delivered = prefix;
      return result;
    }
    // Acknowledged events past the prefix are sent again with the rest;
    // JetStream drops them by Nats-Msg-Id.
    return fail(prefix, std::move(error));
  }

  static DeliveryResult fail(std::size_t prefix, std::string error) {
    DeliveryResult result;
    result.delivered = prefix;
    result.outcome = DeliveryOutcome::retry;
    result.error = std::move(error);
    return result;
  }

  // Empty once connected; otherwise why not, after waiting kConnectWait.
  std::string await_connection() {
    if (connection_ == nullptr) {
      const natsStatus status = natsConnection_Connect(&connection_, options_);
      if (status != NATS_OK && status != NATS_NOT_YET_CONNECTED) {
        connection_ = nullptr;
        return fmt::format("nats: connect to {}: {}", fmt::join(config_.urls, ","),
                           last_error(status));
      }
      jsOptions options;
      jsOptions_Init(&options);
      options.PublishAsync.MaxPending = kMaxPending;
      options.PublishAsync.AckHandler = on_ack;
      // A number carried as the closure, never dereferenced (AckRegistry).
      options.PublishAsync.AckHandlerClosure =
          reinterpret_cast<void*>(token_);  // NOLINT(performance-no-int-to-ptr)
      const natsStatus js_status = natsConnection_JetStream(&js_, connection_, &options);
      if (js_status != NATS_OK) {
        std::string error = fmt::format("nats: JetStream: {}", last_error(js_status));
        disconnect();
        return error;
      }
    }
    const Clock::time_point deadline = Clock::now() + kConnectWait;
    for (;;) {
      const natsConnStatus status = natsConnection_Status(connection_);
      if (status == NATS_CONN_STATUS_CONNECTED) return {};
      if (status == NATS_CONN_STATUS_CLOSED) {
        // Only a refusal closes it (authorization, say): start over at the
        // next send().
        std::string error = fmt::format("nats: connection to {} closed: {}",
                                        fmt::join(config_.urls, ","), connection_error());
        disconnect();
        return error;
      }
      if (Clock::now() >= deadline || cancelled_.load(std::memory_order_relaxed)) {
        const std::string why = connection_error();
        return fmt::format("nats: not connected to {}{}", fmt::join(config_.urls, ","),
                           why.empty() ? "" : fmt::format(" ({})", why));
      }
      std::this_thread::sleep_for(kPoll);
    }
  }

  std::string connection_error() const {
    const char* text = nullptr;
    const natsStatus status = natsConnection_GetLastError(connection_, &text);
    if (status == NATS_OK) return {};
    return text != nullptr && *text != '\0' ? std::string(text) : status_text(status);
  }

  std::string make_message(const OutgoingEvent& event, natsMsg*& message) const {
    natsStatus status = natsMsg_Create(&message, subject_.c_str(), nullptr, event.line.data(),
                                       static_cast<int>(event.line.size()));
    if (status == NATS_OK && !event.id.empty() && event.id.size() < kIdBuffer) {
      char id[kIdBuffer];
      std::copy(event.id.begin(), event.id.end(), id);
      id[event.id.size()] = '\0';
      status = natsMsgHeader_Set(message, "Nats-Msg-Id", id);
    }
    if (status != NATS_OK) return fmt::format("nats: message: {}", last_error(status));
    return {};
  }

  // The batch's messages libnats still waits on are taken back (and their
  // acknowledgements ignored): they go again in a later batch.
  void forget_pending() {
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) natsMsgList_Destroy(&pending);
  }

  void disconnect() {
    jsCtx_Destroy(js_);
    js_ = nullptr;
    natsConnection_Destroy(connection_);
    connection_ = nullptr;
  }

  const NatsSinkConfig config_;
  const std::string subject_;
  const std::shared_ptr<Acks> acks_;
  const std::uintptr_t token_;
  natsOptions* options_ = nullptr;
  natsConnection* connection_ = nullptr;
  jsCtx* js_ = nullptr;
  std::atomic<bool> cancelled_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> retried_{0};
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace

std::variant<std::unique_ptr<EventDelivery>, std::string> open_nats_delivery(
    const NatsSinkConfig& config, std::string_view cell) {
  if (config.urls.empty()) return std::string("nats: no server URL");
  for (const std::string& url : config.urls) {
    if (!plausible_url(url)) {
      return fmt::format("nats: \"{}\" is not a NATS server URL (nats://host:port)", url);
    }
  }
  std::string subject = expand_cell(config.subject, cell);
  if (subject.empty() || subject.find_first_of(" \t\r\n*>") != std::string::npos) {
    return fmt::format("nats: \"{}\" is not a subject to publish to", subject);
  }
  auto delivery = std::make_unique<NatsDelivery>(config, std::move(subject));
  if (std::string error = delivery->init(); !error.empty()) return error;
  return std::unique_ptr<EventDelivery>(std::move(delivery));
}

}  // namespace dnsgate
