#include "events/spooling_output.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dnsgate/events.hpp"
#include "dnsgate/metrics.hpp"
#include "events/delivery.hpp"
#include "events/quiet_thread.hpp"
#include "events/spool.hpp"

namespace dnsgate {

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
constexpr std::chrono::seconds kSpoolReopen{5};       // a spool that would not open is tried again
constexpr std::chrono::seconds kStillFailingLog{30};  // a failure that lasts is logged again
// While draining at close, how long a read waits for records still to come.
constexpr std::chrono::milliseconds kDrainReadWait{100};

// RFC 3339 UTC with microseconds, as the events' `time`.
std::string rfc3339(WallTime time) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::array<char, 40> text{};
  const std::size_t length = std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%S", &utc);
  std::array<char, 16> fraction{};
  std::snprintf(fraction.data(), fraction.size(), ".%06uZ",
                static_cast<unsigned>(micros % 1000000));
  return std::string(text.data(), length) + fraction.data();
}

}  // namespace

struct SpoolingOutput::State {
  SpoolingOutputOptions options;
  SpoolOptions spool_options;
  std::unique_ptr<EventDelivery> delivery;
  std::string sink_name;

  // The spool, shared by the writer (which opens it, and again after a
  // failure) and the delivery thread.
  std::mutex spool_mutex;
  std::shared_ptr<Spool> spool;
  std::atomic<bool> spool_open{false};  // spool is set: the delivery thread's wait reads it
  std::chrono::steady_clock::time_point next_open_attempt{};
  std::string spool_error;  // the last reason it would not open, logged once per reason

  // The writer's: the drops not yet reported, and what they span.
  std::uint64_t unreported_drops = 0;
  WallTime first_drop{};
  WallTime last_drop{};
  EventIdGenerator ids;
  std::chrono::steady_clock::time_point last_failure_log{};

  std::atomic<std::uint64_t> stored{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> rejected{0};

  std::mutex stop_mutex;
  std::condition_variable stop_wake;
  bool stopping = false;
  std::chrono::steady_clock::time_point drain_until{};
  bool closed = false;
  bool delivery_done = false;
  std::thread deliverer;

  void log(bool error, const std::string& message) const noexcept {
    if (!options.log) return;
    try {
      options.log(error, message);
    } catch (...) {
      // A failing logger must not end the writer or the delivery thread.
    }
  }
  std::shared_ptr<Spool> current_spool();
  std::shared_ptr<Spool> writer_spool() noexcept;
  bool append(Spool& spool, std::string_view line) noexcept;
  void report_drops(Spool& spool) noexcept;
  void count_drop(WallTime time) noexcept;
  void run_delivery() noexcept;
  void deliver_until_stopped() noexcept;
  void dead_letter(const std::vector<SpooledRecord>& records, std::size_t from,
                   std::size_t count) noexcept;
  bool sleep_unless_stopping(std::chrono::milliseconds pause);
  void publish_figures() noexcept;
};

std::shared_ptr<Spool> SpoolingOutput::State::current_spool() {
  const std::lock_guard lock(spool_mutex);
  return spool;
}

// The spool for the writer: opened at first use and, after it would not
// open, again every few seconds (a directory fixed, a disk mounted).
std::shared_ptr<Spool> SpoolingOutput::State::writer_spool() noexcept {
  const std::lock_guard lock(spool_mutex);
  if (spool) return spool;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_open_attempt) return nullptr;
  next_open_attempt = now + kSpoolReopen;
  try {
    auto opened = Spool::open(spool_options);
    if (auto* why = std::get_if<std::string>(&opened)) {
      if (*why != spool_error) {
        log(true, "events: spool " + spool_options.dir + ": " + *why +
                      "; events are dropped (counted) until it opens, tried every 5 s");
        spool_error = *why;
      }
      return nullptr;
    }
    spool = std::move(std::get<std::unique_ptr<Spool>>(opened));
    spool_open.store(true);
    const SpoolCounts counts = spool->counts();
    if (!spool_error.empty()) log(false, "events: spool " + spool_options.dir + " opened");
    spool_error.clear();
    if (counts.corrupt_skipped > 0) {
      log(true, "events: spool " + spool_options.dir + ": " +
                    std::to_string(counts.corrupt_skipped) +
                    " corrupt record(s) skipped (bad checksum or length); the rest is delivered");
    }
    if (spool->backlog() > 0) {
      log(false, "events: spool " + spool_options.dir + " holds " +
                     std::to_string(spool->backlog()) +
                     " events from an earlier run; sending them first");
    }
  } catch (const std::exception& error) {
    log(true, std::string("events: spool: ") + error.what());
  }
  if (spool) {
    // Under stop_mutex, so that a delivery thread about to wait for the
    // spool cannot miss it (lock order: spool_mutex, then stop_mutex).
    const std::lock_guard stop_lock(stop_mutex);
    stop_wake.notify_all();
  }
  return spool;
}

void SpoolingOutput::State::count_drop(WallTime time) noexcept {
  if (unreported_drops == 0) first_drop = time;
  last_drop = std::max(last_drop, time);
  if (time < first_drop) first_drop = time;
  ++unreported_drops;
  dropped.fetch_add(1, kRelaxed);
}

bool SpoolingOutput::State::append(Spool& spool, std::string_view line) noexcept {
  const Spool::Append result = spool.append(line);
  if (result == Spool::Append::stored) {
    stored.fetch_add(1, kRelaxed);
    return true;
  }
  const auto now = std::chrono::steady_clock::now();
  if (unreported_drops == 0 || now - last_failure_log >= kStillFailingLog) {
    last_failure_log = now;
    log(true, result == Spool::Append::full
                  ? "events: spool " + spool_options.dir + " is full (maxBytes " +
                        std::to_string(spool_options.max_bytes) +
                        "): the newest events are dropped and counted until the sink catches up"
                  : "events: spool " + spool_options.dir + ": " + spool.last_error() +
                        ": events are dropped and counted");
  }
  return false;
}

// After drops, the first event stored again is followed by one event that
// says how many were lost and when (DESIGN §11).
void SpoolingOutput::State::report_drops(Spool& spool) noexcept {
  try {
    std::array<char, EventIdGenerator::kLength> id{};
    ids.write(id.data());
    // The cell id is the operator's text: quoted and escaped as JSON wants.
    const std::string quoted = nlohmann::json(options.cell).dump();
    const std::string cell = quoted.substr(1, quoted.size() - 2);
    const std::string line = R"({"specversion":"1.0","id":")" + std::string(id.data(), id.size()) +
                             R"(","source":"dnsgate/cells/)" + cell +
                             R"(","type":"dev.dnsgate.events_dropped","time":")" +
                             rfc3339(std::chrono::system_clock::now()) +
                             R"(","datacontenttype":"application/json","data":{"cell":")" + cell +
                             R"(","count":)" + std::to_string(unreported_drops) +
                             R"(,"firstTime":")" + rfc3339(first_drop) + R"(","lastTime":")" +
                             rfc3339(last_drop) + R"("}})";
    if (spool.append(line) == Spool::Append::stored) {
      log(false, "events: " + std::to_string(unreported_drops) +
                     " events were dropped; a dev.dnsgate.events_dropped event reports them");
      unreported_drops = 0;
    }
  } catch (const std::exception&) {
    // Out of memory: the report waits for the next event.
  }
}

void SpoolingOutput::State::dead_letter(const std::vector<SpooledRecord>& records, std::size_t from,
                                        std::size_t count) noexcept {
  const std::string path = spool_options.dir + "/dead-letter.jsonl";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    log(true, "events: cannot keep rejected events in " + path + ": " + std::strerror(errno));
    return;
  }
  std::string lines;
  for (std::size_t i = from; i < from + count && i < records.size(); ++i) {
    lines += records[i].text;
    lines += '\n';
  }
  std::size_t done = 0;
  while (done < lines.size()) {
    const ssize_t n = ::write(fd, lines.data() + done, lines.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      log(true, "events: writing " + path + ": " + std::strerror(errno));
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

bool SpoolingOutput::State::sleep_unless_stopping(std::chrono::milliseconds pause) {
  std::unique_lock lock(stop_mutex);
  stop_wake.wait_for(lock, pause, [this] { return stopping; });
  return !stopping;
}

void SpoolingOutput::State::publish_figures() noexcept {
  if (options.metrics == nullptr) return;
  const DeliveryCounts sent = delivery->counts();
  options.metrics->events_delivered.store(sent.delivered, kRelaxed);
  options.metrics->events_spooled.store(stored.load(kRelaxed), kRelaxed);
  options.metrics->events_retried.store(sent.retried, kRelaxed);
  options.metrics->events_rejected.store(rejected.load(kRelaxed), kRelaxed);
  if (const std::shared_ptr<Spool> open = current_spool()) {
    options.metrics->spool_bytes.store(open->counts().bytes, kRelaxed);
  }
}

void SpoolingOutput::State::run_delivery() noexcept {
  deliver_until_stopped();
  publish_figures();
  {
    std::lock_guard lock(stop_mutex);
    delivery_done = true;
  }
  stop_wake.notify_all();
}

void SpoolingOutput::State::deliver_until_stopped() noexcept {
  std::vector<SpooledRecord> records;
  std::vector<OutgoingEvent> batch;
  std::chrono::milliseconds backoff = kFirstBackoff;
  std::chrono::steady_clock::time_point failing_since{};
  std::chrono::steady_clock::time_point failure_logged{};
  while (true) {
    publish_figures();
    bool draining = false;
    {
      std::lock_guard lock(stop_mutex);
      if (stopping) {
        draining = true;
        if (std::chrono::steady_clock::now() >= drain_until) break;
      }
    }
    const std::shared_ptr<Spool> spool = current_spool();
    if (!spool) {
      if (draining) break;
      // No timer: the writer opens the spool (and wakes us) when an event
      // comes, or close() does.
      std::unique_lock lock(stop_mutex);
      stop_wake.wait(lock, [this] { return stopping || spool_open.load(); });
      continue;
    }
    if (draining && spool->backlog() == 0) break;
    try {
      // Idle, the thread sleeps until the writer flushes records into the
      // spool or close() wakes it: no look every so often.
      const auto wait = draining ? kDrainReadWait : Spool::kWaitForever;
      if (spool->read(delivery->batch_max(), records, wait) == 0) continue;
      batch.clear();
      for (const SpooledRecord& record : records) {
        batch.push_back({event_id_of(record.text), record.text});
      }
    } catch (const std::exception& error) {
      log(true, std::string("events: reading the spool: ") + error.what());
      sleep_unless_stopping(kMaxBackoff);
      continue;
    }
    const DeliveryResult result = delivery->send(batch);
    if (result.delivered > 0) spool->acknowledge(records[result.delivered - 1].position);
    const auto now = std::chrono::steady_clock::now();
    switch (result.outcome) {
      case DeliveryOutcome::delivered:
        if (failing_since != std::chrono::steady_clock::time_point{}) {
          const auto seconds =
              std::chrono::duration_cast<std::chrono::seconds>(now - failing_since).count();
          log(false, "events: " + sink_name + " delivery resumed after " + std::to_string(seconds) +
                         " s; backlog " + std::to_string(spool->backlog()));
          failing_since = {};
        }
        backoff = kFirstBackoff;
        break;
      case DeliveryOutcome::rejected: {
        const std::size_t count = std::max<std::size_t>(result.rejected, 1);
        dead_letter(records, result.delivered, count);
        rejected.fetch_add(count, kRelaxed);
        const std::size_t last = std::min(result.delivered + count, records.size()) - 1;
        spool->acknowledge(records[last].position);
        log(true, "events: " + sink_name + " rejected " + std::to_string(count) +
                      " events for good (" + result.error + "); kept in " + spool_options.dir +
                      "/dead-letter.jsonl");
        spool->rewind();
        break;
      }
      case DeliveryOutcome::retry:
        spool->rewind();
        if (failing_since == std::chrono::steady_clock::time_point{}) {
          failing_since = now;
          failure_logged = now;
          log(true, "events: " + sink_name + ": " + result.error +
                        "; events wait in the spool and are sent again");
        } else if (now - failure_logged >= kStillFailingLog) {
          failure_logged = now;
          log(true, "events: " + sink_name + " still failing: " + result.error + "; backlog " +
                        std::to_string(spool->backlog()));
        }
        if (draining) return;
        sleep_unless_stopping(backoff);
        backoff = std::min(backoff * 2, kMaxBackoff);
        break;
    }
  }
}

std::variant<std::unique_ptr<SpoolingOutput>, std::string> SpoolingOutput::open(
    const SpoolingOutputOptions& options) {
  auto state = std::make_unique<State>();
  state->options = options;
  const EventsConfig& events = options.events;
  state->spool_options.dir = expand_cell(events.spool.dir, options.cell);
  state->spool_options.max_bytes = events.spool.max_bytes;
  // Space comes back a segment at a time, once every record in it is
  // acknowledged: eight or more segments to a spool, so a full one frees
  // room soon after delivery resumes.
  state->spool_options.segment_bytes =
      std::clamp<std::uint64_t>(events.spool.max_bytes / 8, 64 << 10, 64ULL << 20);
  auto delivery = events.sink == EventSinkKind::nats ? open_nats_delivery(events.nats, options.cell)
                                                     : open_http_delivery(events.http);
  if (auto* why = std::get_if<std::string>(&delivery)) return *why;
  state->delivery = std::move(std::get<std::unique_ptr<EventDelivery>>(delivery));
  state->sink_name = events.sink == EventSinkKind::nats ? "nats" : "http";
  state->writer_spool();

  State* raw = state.get();
  std::string error;
  if (!start_quiet_thread(
          state->deliverer, "dnsgate-deliver", [raw] { raw->run_delivery(); }, error)) {
    return error;
  }
  state->log(false, "events: delivering to " + state->delivery->describe() + " through spool " +
                        state->spool_options.dir);
  return std::unique_ptr<SpoolingOutput>(new SpoolingOutput(std::move(state)));
}

SpoolingOutput::SpoolingOutput(std::unique_ptr<State> state) : state_(std::move(state)) {}

SpoolingOutput::~SpoolingOutput() {
  close();
}

void SpoolingOutput::store(std::string_view line, WallTime time) noexcept {
  State& state = *state_;
  const std::shared_ptr<Spool> spool = state.writer_spool();
  if (!spool || !state.append(*spool, line)) {
    state.count_drop(time);
    return;
  }
  if (state.unreported_drops > 0) state.report_drops(*spool);
}

void SpoolingOutput::flush() noexcept {
  State& state = *state_;
  if (const std::shared_ptr<Spool> spool = state.current_spool()) {
    if (!spool->flush()) {
      const auto now = std::chrono::steady_clock::now();
      if (now - state.last_failure_log >= kStillFailingLog) {
        state.last_failure_log = now;
        state.log(true, "events: spool " + state.spool_options.dir + ": " + spool->last_error());
      }
    }
  }
}

bool SpoolingOutput::unflushed() noexcept {
  const std::shared_ptr<Spool> spool = state_->current_spool();
  return spool && spool->unflushed();
}

void SpoolingOutput::close() noexcept {
  State& state = *state_;
  {
    std::lock_guard lock(state.stop_mutex);
    if (state.closed) return;
    state.closed = true;
    state.stopping = true;
    state.drain_until = std::chrono::steady_clock::now() + state.options.drain_grace;
  }
  flush();
  state.stop_wake.notify_all();
  // A delivery thread waiting for records sees `stopping` now.
  if (const std::shared_ptr<Spool> spool = state.current_spool()) spool->wake_reader();
  {
    // The delivery thread sends the backlog until the grace ends; one
    // still blocked in a send then is told to give up.
    std::unique_lock lock(state.stop_mutex);
    state.stop_wake.wait_until(lock, state.drain_until, [&state] { return state.delivery_done; });
    if (!state.delivery_done) state.delivery->cancel();
  }
  if (const std::shared_ptr<Spool> spool = state.current_spool()) spool->wake_reader();
  if (state.deliverer.joinable()) state.deliverer.join();
  const DeliveryFigures left = figures();
  if (left.backlog > 0) {
    state.log(false, "events: " + std::to_string(left.backlog) + " events stay in the spool " +
                         state.spool_options.dir + " for the next start");
  }
}

DeliveryFigures SpoolingOutput::figures() const noexcept {
  const State& state = *state_;
  DeliveryFigures out;
  out.sink = state.options.events.sink == EventSinkKind::nats ? "nats" : "http";
  const DeliveryCounts sent = state.delivery->counts();
  out.delivered = sent.delivered;
  out.retried = sent.retried;
  out.spooled = state.stored.load(kRelaxed);
  out.dropped = state.dropped.load(kRelaxed);
  out.rejected = state.rejected.load(kRelaxed);
  if (const std::shared_ptr<Spool> spool = const_cast<State&>(state).current_spool()) {
    const SpoolCounts counts = spool->counts();
    out.spool_bytes = counts.bytes;
    out.corrupt_skipped = counts.corrupt_skipped;
    out.backlog = spool->backlog();
  }
  return out;
}

}  // namespace dnsgate
