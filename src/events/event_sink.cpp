// CloudEventSink: a bounded queue between the DNS path and one writer thread.
//
// The DNS path pays for one lock and one record copy; everything slow
// (formatting JSON, ids, write(2)) happens on the writer thread. The queue is
// a ring allocated at open(), so emit() never allocates, and it is bounded,
// so a stalled reader of stdout costs dropped events, never memory or latency.
#include "dnsgate/event_sink.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "events/quiet_thread.hpp"
#include "events/spooling_output.hpp"

namespace dnsgate {

namespace {

// Set by SIGUSR1's handler (request_reopen), taken by the file sink's writer.
std::atomic<bool> reopen_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free);

// Records formatted per round. Slots go back to emit() after each round, so a
// large backlog does not keep the queue full while the whole of it is formatted.
constexpr std::size_t kMaxBatchRecords = 256;

// Once woken, the writer lets records gather this long before it takes
// them: one wake-up and one write(2) per few dozen events instead of per
// event. Well inside the 100 ms flush bound.
constexpr std::chrono::milliseconds kGatherDelay{5};

// After a batch the writer looks at the queue again every kGatherDelay, and
// goes to sleep (no timer: an idle proxy does not wake it) only after this
// many looks in a row found it empty. While it looks, emit() wakes nobody:
// only the first event after a quiet spell costs the DNS thread a futex
// wake-up (a system call, and on another CPU an interrupt, before the
// query's answer goes out). With 10 looks (50 ms), a steady stream of more
// than 20 queries/s never pays it; the price is the writer waking every
// 5 ms while events come, and 10 times more once they stop.
constexpr unsigned kQuietLooks = 10;

// A writer inside one write(2) for longer than this is stuck (a reader that
// stopped reading): the loop no longer waits for it, and events that find
// the queue full are dropped and counted. A shorter write is slow, not
// stuck (a disk throttled by dirty-page writeback pauses a writer for up to
// 200 ms): the loop waits for it rather than lose events. Half a second
// keeps a waiting loop inside /healthz's one-second window.
constexpr std::chrono::milliseconds kStalledOutput{500};

// How long a write waits for a non-blocking output (a stdout someone else set
// O_NONBLOCK on) to drain before trying again.
constexpr int kWritablePollMs = 100;

// Writes `lines` whole to `fd`, waiting out EINTR and a non-blocking
// output that is full; returns the octets written before an error (EPIPE,
// ENOSPC, EIO, ...), which the caller accounts for.
std::size_t write_all(int fd, std::string_view lines) noexcept {
  std::size_t done = 0;
  while (done < lines.size()) {
    const ssize_t n = ::write(fd, lines.data() + done, lines.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd writable{fd, POLLOUT, 0};
      ::poll(&writable, 1, kWritablePollMs);
      continue;
    }
    return done;
  }
  return done;
}

}  // namespace

// One queued record, and the event id the writer gave it once it formatted
// it (so an event written again after a crash keeps its id).
struct RingSlot {
  QueryRecord record;
  std::array<char, EventIdGenerator::kLength> id;
  bool has_id;
};
static_assert(std::is_trivially_copyable_v<QueryRecord>,
              "records are copied into memory another process reads");

// The first octets of a shared ring: what the supervisor needs to find the
// records a dead proxy had not written.
struct SharedRingHeader {
  std::uint64_t magic;
  std::uint64_t capacity;
  std::uint64_t slot_size;
  std::uint64_t head;     // mirrors State::head and State::count, updated under
  std::uint64_t count;    // the queue lock
  std::uint64_t writing;  // 1 while the writer is inside write(2): a line may be cut
};
constexpr std::uint64_t kRingMagic = 0x676e697274616764;  // "dgatring"

std::size_t shared_ring_octets(std::size_t capacity) {
  return sizeof(SharedRingHeader) + capacity * sizeof(RingSlot);
}

// Storage for the queued records: private memory allocated whole at open()
// and used from the front (the queue restarts at slot 0 whenever it
// empties, so only as many slots become resident as were ever queued at
// once: a few hundred at ordinary rates, not the 8,192 of the default
// capacity), or a shared ring mapped from a memfd, which is just as lazy.
class RecordSlots {
 public:
  explicit RecordSlots(std::size_t capacity)
      : capacity_(capacity),
        private_(std::allocator<RingSlot>().allocate(capacity)),
        slots_(private_) {}
  RecordSlots(SharedRingHeader* header, std::size_t octets)
      : capacity_(header->capacity),
        header_(header),
        mapped_octets_(octets),
        slots_(reinterpret_cast<RingSlot*>(header + 1)) {}
  ~RecordSlots() {
    if (private_ != nullptr) std::allocator<RingSlot>().deallocate(private_, capacity_);
    if (header_ != nullptr) munmap(header_, mapped_octets_);
  }
  RecordSlots(const RecordSlots&) = delete;
  RecordSlots& operator=(const RecordSlots&) = delete;

  std::size_t size() const noexcept { return capacity_; }
  RingSlot& operator[](std::size_t slot) noexcept { return slots_[slot]; }
  void store(std::size_t slot, const QueryRecord& record) noexcept {
    // Trivially copyable: memcpy makes the object, in private or shared memory.
    std::memcpy(&slots_[slot].record, &record, sizeof record);
    slots_[slot].has_id = false;
  }
  void publish(std::size_t head, std::size_t count) noexcept {
    if (header_ == nullptr) return;
    header_->head = head;
    header_->count = count;
  }
  void writing(bool inside) noexcept {
    if (header_ != nullptr) header_->writing = inside ? 1 : 0;
  }

 private:
  std::size_t capacity_;
  RingSlot* private_ = nullptr;
  SharedRingHeader* header_ = nullptr;
  std::size_t mapped_octets_ = 0;
  RingSlot* slots_;
};

struct CloudEventSink::State {
  EventSinkOptions options;
  int fd = -1;
  bool owns_fd = false;

  std::mutex queue_mutex;
  std::condition_variable queue_not_empty;
  // Set while the writer waits on queue_not_empty with nothing queued: the
  // one time emit() has to wake it. Otherwise it looks again on its own.
  bool writer_asleep = false;
  // Ring of queued records: slots [head, head + count) modulo capacity. Only
  // emit() writes slots and only the writer reads them; the writer reads its
  // slots without the lock, because emit() only ever fills slots outside
  // [head, head + count) and the writer moves head only after formatting.
  std::unique_ptr<RecordSlots> ring;
  std::size_t head = 0;
  std::size_t count = 0;
  bool stopping = false;

  // Backlog: count mirrored for the loop's lock-free check once per turn;
  // `output_since` is when the writer went into its current write(2)
  // (steady clock, ns; 0: not in one), which tells a slow output from a
  // stuck one (kStalledOutput).
  std::atomic<std::size_t> queued{0};
  std::atomic<std::int64_t> output_since{0};
  std::condition_variable queue_has_room;
  std::size_t room_waiters = 0;

  std::atomic<std::uint64_t> written{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> write_errors{0};
  // A failed write can stop inside a line; the next batch then starts with a
  // newline, so the torn line stays one bad line instead of spoiling the next.
  bool output_mid_line = false;
  // Set in open() (the cell is known only there); the writer's alone after.
  std::optional<CloudEventFormatter> formatter;
  // For nats and http: the spool and the delivery behind it, in place of `fd`.
  std::unique_ptr<SpoolingOutput> delivering;

  std::mutex close_mutex;
  bool closed = false;
  std::thread writer;

  ~State() {
    if (owns_fd && fd >= 0) {
      ::close(fd);
    }
  }

  // Above backlog_starts() queued records the loop waits for the writer,
  // until the queue is down to backlog_resolved().
  std::size_t backlog_starts() const noexcept { return ring->size() - ring->size() / 4; }
  std::size_t backlog_resolved() const noexcept { return ring->size() / 2; }
  // When the current write(2) will count as stuck; nullopt when the writer
  // is not in one.
  std::optional<std::chrono::steady_clock::time_point> stalled_at() const noexcept {
    const std::int64_t since = output_since.load(std::memory_order_relaxed);
    if (since == 0) return std::nullopt;
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(since)) + kStalledOutput;
  }

  void run_writer() noexcept;
  // nats, http: each line to the spool, with its record's arrival time.
  void store_lines(std::string_view lines, std::size_t first,
                   const std::vector<std::size_t>& line_slots) noexcept;
  void release_slots(std::size_t taken) noexcept;
  void reopen_file() noexcept;
  // Writes `lines` whole; returns the octets written before an error.
  std::size_t write_fully(std::string_view lines) noexcept;
  void account_failed_write(std::string_view lines, std::size_t octets_written,
                            std::size_t line_count) noexcept;
};

std::size_t CloudEventSink::State::write_fully(std::string_view lines) noexcept {
  return write_all(fd, lines);
}

// Log rotation: the file moved away is closed, the path opened afresh. A
// path that cannot be opened keeps the old file (and says so once).
void CloudEventSink::State::reopen_file() noexcept {
  if (options.kind != EventSinkKind::file || !owns_fd || options.fd >= 0) return;
  const int fresh = ::open(options.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fresh < 0) {
    if (options.log) {
      try {
        options.log(true, "events: cannot reopen " + options.path + ": " + std::strerror(errno) +
                              "; still writing to the file open before");
      } catch (...) {
      }
    }
    return;
  }
  ::close(fd);
  fd = fresh;
}

void CloudEventSink::State::store_lines(std::string_view lines, std::size_t first,
                                        const std::vector<std::size_t>& line_slots) noexcept {
  const std::size_t capacity = ring->size();
  std::size_t start = 0;
  for (const std::size_t slot : line_slots) {
    const std::size_t end = lines.find('\n', start);
    if (end == std::string_view::npos) break;
    delivering->store(lines.substr(start, end - start),
                      (*ring)[(first + slot) % capacity].record.received_at);
    start = end + 1;
  }
  delivering->flush();
}

void CloudEventSink::State::account_failed_write(std::string_view lines, std::size_t octets_written,
                                                 std::size_t line_count) noexcept {
  // The lines that made it out whole still count as written; every other one
  // of the batch is lost to the error.
  const auto whole = static_cast<std::size_t>(
      std::count(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(octets_written), '\n'));
  written.fetch_add(whole, std::memory_order_relaxed);
  write_errors.fetch_add(line_count - whole, std::memory_order_relaxed);
}

// The slots go back only once their lines are out: a proxy killed in
// between leaves them in a shared ring for the supervisor to write.
void CloudEventSink::State::release_slots(std::size_t taken) noexcept {
  bool wake_loop = false;
  {
    std::lock_guard lock(queue_mutex);
    const std::size_t capacity = ring->size();
    head = (head + taken) % capacity;
    count -= taken;
    if (count == 0) {
      head = 0;  // keeps the slots in use at the front (see RecordSlots)
    }
    ring->publish(head, count);
    queued.store(count, std::memory_order_relaxed);
    wake_loop = room_waiters > 0 && count <= backlog_resolved();
  }
  if (wake_loop) {
    queue_has_room.notify_all();
  }
}

namespace {

// The writer shares a CPU with the DNS loop whenever the proxy is given one
// CPU. As an ordinary thread it preempts the loop the moment it wakes, while
// queries are in flight; SCHED_BATCH drops that wake-up preemption and keeps
// the writer's fair share. (A lower priority was tried:
// nice 19 gained nothing on a quiet machine and, on a node busy with other
// work, would leave the writer behind every other process.) Best effort: a
// sandbox that forbids it keeps the default.
void yield_cpu_to_dns_loop() noexcept {
  sched_param unused{};
  ::pthread_setschedparam(::pthread_self(), SCHED_BATCH, &unused);
}

}  // namespace

void CloudEventSink::State::run_writer() noexcept {
  yield_cpu_to_dns_loop();
  std::string lines;
  std::vector<std::size_t> line_slots;  // which taken slot each line is from
  line_slots.reserve(kMaxBatchRecords);
  EventIdGenerator ids;
  const std::size_t capacity = ring->size();
  const auto gather = std::min<std::chrono::milliseconds>(kGatherDelay, options.flush_interval);
  unsigned quiet_looks = 0;  // looks in a row that found the queue empty
  for (;;) {
    std::size_t first = 0;
    std::size_t taken = 0;
    // A spool write that failed keeps its lines buffered: it is tried again
    // every flush_interval even while no event comes.
    const bool retry_output = delivering && delivering->unflushed();
    {
      std::unique_lock lock(queue_mutex);
      if (count == 0 && !stopping && quiet_looks >= kQuietLooks) {
        // Quiet: sleep until emit() or close() wakes us, with no timeout.
        writer_asleep = true;
        const auto woken = [this] { return count > 0 || stopping; };
        if (retry_output) {
          queue_not_empty.wait_for(lock, options.flush_interval, woken);
        } else {
          queue_not_empty.wait(lock, woken);
        }
        writer_asleep = false;
      }
      if (!stopping && count < capacity / 2) {
        // Let records gather (the next look, when the queue is empty).
        lock.unlock();
        std::this_thread::sleep_for(gather);
        lock.lock();
      }
      if (count == 0) {
        if (stopping) {
          return;
        }
        if (quiet_looks < kQuietLooks) ++quiet_looks;
        if (retry_output) {
          lock.unlock();
          delivering->flush();
        }
        continue;
      }
      quiet_looks = 0;
      first = head;
      taken = std::min(count, kMaxBatchRecords);
    }

    lines.clear();
    if (output_mid_line) {
      lines += '\n';
    }
    std::size_t line_count = 0;
    line_slots.clear();
    for (std::size_t i = 0; i < taken; ++i) {
      RingSlot& slot = (*ring)[(first + i) % capacity];
      // The id goes into the slot first: written again after a crash, the
      // event keeps it.
      ids.write(slot.id.data());
      slot.has_id = true;
      const std::size_t line_start = lines.size();
      try {
        formatter->append(lines, slot.record, std::string_view(slot.id.data(), slot.id.size()));
        lines += '\n';
        ++line_count;
        line_slots.push_back(i);
      } catch (const std::exception&) {
        // Out of memory, most likely: lose this event, and cut what it left
        // behind so the batch still holds whole lines only.
        lines.resize(line_start);
        write_errors.fetch_add(1, std::memory_order_relaxed);
      }
    }

    if (delivering) {
      // The spool: never a torn line, its drops are its own to count. Not
      // "in output": storing is CPU work (checksums, copies, page-cache
      // writes; the disk syncs on a thread of its own), so a loop that
      // outruns it waits for it rather than drop events.
      store_lines(lines, first, line_slots);
      release_slots(taken);
      written.fetch_add(line_count, std::memory_order_relaxed);
      continue;
    }
    if (reopen_requested.exchange(false, std::memory_order_relaxed)) reopen_file();
    output_since.store(
        std::max<std::int64_t>(1, std::chrono::steady_clock::now().time_since_epoch().count()),
        std::memory_order_relaxed);
    ring->writing(true);
    const std::size_t octets = write_fully(lines);
    // Still "writing" after a failed write that stopped inside a line.
    ring->writing(octets != lines.size() && octets > 0 && lines[octets - 1] != '\n');
    output_since.store(0, std::memory_order_relaxed);

    release_slots(taken);
    if (octets == lines.size()) {
      written.fetch_add(line_count, std::memory_order_relaxed);
      output_mid_line = false;
    } else {
      const std::size_t separator = output_mid_line ? 1 : 0;
      account_failed_write(std::string_view(lines).substr(separator),
                           octets > separator ? octets - separator : 0, line_count);
      if (octets > 0) {
        output_mid_line = lines[octets - 1] != '\n';
      }
    }
  }
}

std::unique_ptr<CloudEventSink> CloudEventSink::open(const EventSinkOptions& options,
                                                     std::string& error) {
  auto state = std::make_unique<State>();
  state->options = options;
  state->formatter.emplace(state->options.cell);
  // A zero capacity or interval would make a sink that drops everything or
  // spins; the smallest useful values stand in for them.
  state->options.queue_capacity = std::max<std::size_t>(options.queue_capacity, 1);
  state->options.flush_interval = std::max(options.flush_interval, std::chrono::milliseconds{1});

  if (options.kind == EventSinkKind::file && options.fd >= 0) {
    state->fd = options.fd;
    state->owns_fd = true;
  } else if (options.kind == EventSinkKind::file) {
    state->fd = ::open(options.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (state->fd < 0) {
      error = "cannot open event file " + options.path + ": " + std::strerror(errno);
      return nullptr;
    }
    state->owns_fd = true;
  } else if (options.kind == EventSinkKind::nats || options.kind == EventSinkKind::http) {
    SpoolingOutputOptions spooling;
    spooling.cell = options.cell;
    spooling.events = options.delivery;
    spooling.events.sink = options.kind;
    spooling.metrics = options.metrics;
    spooling.log = options.log;
    auto opened = SpoolingOutput::open(spooling);
    if (auto* why = std::get_if<std::string>(&opened)) {
      error = *why;
      return nullptr;
    }
    state->delivering = std::move(std::get<std::unique_ptr<SpoolingOutput>>(opened));
  } else {
    state->fd = STDOUT_FILENO;
  }

  if (options.ring_fd >= 0) {
    struct stat st {};
    void* mapped = MAP_FAILED;
    if (fstat(options.ring_fd, &st) == 0 &&
        static_cast<std::size_t>(st.st_size) >= sizeof(SharedRingHeader)) {
      mapped = mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE,
                    MAP_SHARED, options.ring_fd, 0);
    }
    ::close(options.ring_fd);
    auto* header = static_cast<SharedRingHeader*>(mapped);
    if (mapped == MAP_FAILED || header->magic != kRingMagic ||
        header->slot_size != sizeof(RingSlot) || header->capacity == 0 ||
        shared_ring_octets(header->capacity) > static_cast<std::size_t>(st.st_size)) {
      if (mapped != MAP_FAILED) munmap(mapped, static_cast<std::size_t>(st.st_size));
      error = "the shared event ring is not one this dnsgate made";
      return nullptr;
    }
    state->options.queue_capacity = header->capacity;
    state->ring = std::make_unique<RecordSlots>(header, static_cast<std::size_t>(st.st_size));
  }
  try {
    if (!state->ring) state->ring = std::make_unique<RecordSlots>(state->options.queue_capacity);
  } catch (const std::bad_alloc&) {
    error = "cannot allocate an event queue of " + std::to_string(state->options.queue_capacity) +
            " records";
    return nullptr;
  }

  State* raw = state.get();
  if (!start_quiet_thread(
          state->writer, "dnsgate-events", [raw] { raw->run_writer(); }, error)) {
    return nullptr;
  }

  return std::unique_ptr<CloudEventSink>(new CloudEventSink(std::move(state)));
}

CloudEventSink::CloudEventSink(std::unique_ptr<State> state) : state_(std::move(state)) {}

CloudEventSink::~CloudEventSink() {
  try {
    close();
  } catch (...) {
    // join() failing means the thread is already gone; nothing left to drain.
  }
}

bool CloudEventSink::emit(const QueryRecord& record) noexcept {
  State& state = *state_;
  bool wake_writer = false;
  {
    std::lock_guard lock(state.queue_mutex);
    const std::size_t capacity = state.ring->size();
    if (state.stopping || state.count == capacity) {
      state.dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    state.ring->store((state.head + state.count) % capacity, record);
    ++state.count;
    state.ring->publish(state.head, state.count);
    state.queued.store(state.count, std::memory_order_relaxed);
    // Only a writer asleep on the condition needs a wake-up, once: a busy
    // or looking one takes the queue on its own (run_writer). Under a
    // steady stream of queries the DNS thread makes no system call here.
    wake_writer = std::exchange(state.writer_asleep, false);
  }
  // Notifying outside the lock spares the writer waking only to block on
  // the mutex.
  if (wake_writer) {
    state.queue_not_empty.notify_one();
  }
  return true;
}

// A writer short of CPU gets up to `limit`; a writer in a slow write(2)
// gets as long as that write is not stuck, whatever `limit` says: with only
// `limit`, the next turn's events would overflow the queue behind it.
bool CloudEventSink::wait_while_backlogged(std::chrono::milliseconds limit) noexcept {
  using Clock = std::chrono::steady_clock;
  State& state = *state_;
  const Clock::time_point started = Clock::now();
  const auto stuck = [&state](Clock::time_point now) {
    const auto stalled_at = state.stalled_at();
    return stalled_at && now >= *stalled_at;
  };
  if (state.queued.load(std::memory_order_relaxed) < state.backlog_starts() || stuck(started)) {
    return false;
  }
  std::unique_lock lock(state.queue_mutex);
  if (state.stopping || state.count < state.backlog_starts()) {
    return false;
  }
  ++state.room_waiters;
  while (!state.stopping && state.count > state.backlog_resolved()) {
    const Clock::time_point now = Clock::now();
    Clock::time_point until = started + limit;
    if (const auto stalled_at = state.stalled_at()) {
      if (now >= *stalled_at) break;  // stuck: drop and count rather than hold DNS
      until = std::max(until, *stalled_at);
    }
    if (now >= until) break;
    state.queue_has_room.wait_until(lock, until);
  }
  --state.room_waiters;
  return true;
}

void CloudEventSink::close() {
  State& state = *state_;
  std::lock_guard close_lock(state.close_mutex);
  if (state.closed) {
    return;
  }
  {
    std::lock_guard lock(state.queue_mutex);
    state.stopping = true;
  }
  state.queue_not_empty.notify_one();
  state.queue_has_room.notify_all();
  if (state.writer.joinable()) {
    state.writer.join();  // the writer drains the queue before it returns
  }
  if (state.delivering) state.delivering->close();
  if (state.owns_fd && state.fd >= 0) {
    ::close(state.fd);
    state.fd = -1;
  }
  state.closed = true;
}

std::uint64_t CloudEventSink::written() const noexcept {
  return state_->written.load(std::memory_order_relaxed);
}

std::uint64_t CloudEventSink::dropped() const noexcept {
  return state_->dropped.load(std::memory_order_relaxed);
}

std::uint64_t CloudEventSink::write_errors() const noexcept {
  return state_->write_errors.load(std::memory_order_relaxed);
}

std::optional<DeliveryFigures> CloudEventSink::delivery() const noexcept {
  if (!state_->delivering) return std::nullopt;
  return state_->delivering->figures();
}

std::uint64_t CloudEventSink::dropped_after_accept() const noexcept {
  return state_->delivering ? state_->delivering->figures().dropped : 0;
}

void CloudEventSink::request_reopen() noexcept {
  reopen_requested.store(true, std::memory_order_relaxed);
}

int create_event_ring(std::size_t capacity, std::string& error) {
  capacity = std::max<std::size_t>(capacity, 1);
  const int fd = memfd_create("dnsgate-events", MFD_CLOEXEC);
  if (fd < 0) {
    error = std::string("memfd_create: ") + std::strerror(errno);
    return -1;
  }
  // Sparse: pages are made only as slots are used.
  const SharedRingHeader header{kRingMagic, capacity, sizeof(RingSlot), 0, 0, 0};
  if (ftruncate(fd, static_cast<off_t>(shared_ring_octets(capacity))) != 0 ||
      pwrite(fd, &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) {
    error = std::string("event ring: ") + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

std::size_t recover_event_ring(int ring_fd, const DnsProxyConfig& config, int output,
                               std::string& error) {
  struct stat st {};
  if (fstat(ring_fd, &st) != 0 || static_cast<std::size_t>(st.st_size) < sizeof(SharedRingHeader)) {
    error = "the event ring cannot be read";
    return 0;
  }
  const auto octets = static_cast<std::size_t>(st.st_size);
  void* mapped = mmap(nullptr, octets, PROT_READ, MAP_SHARED, ring_fd, 0);
  if (mapped == MAP_FAILED) {
    error = std::string("the event ring cannot be mapped: ") + std::strerror(errno);
    return 0;
  }
  const auto* header = static_cast<const SharedRingHeader*>(mapped);
  const auto* slots = reinterpret_cast<const RingSlot*>(header + 1);
  std::size_t recovered = 0;
  if (header->magic != kRingMagic || header->slot_size != sizeof(RingSlot) ||
      header->capacity == 0 || shared_ring_octets(header->capacity) > octets ||
      header->head >= header->capacity || header->count > header->capacity) {
    error = "the event ring is not one this dnsgate made";
    munmap(mapped, octets);
    return 0;
  }
  // A line cut short by the kill ends the output: the next starts on its
  // own line. A file says so by its last octet; a pipe only by the flag.
  std::string lines;
  if (struct stat out{}; fstat(output, &out) == 0 && S_ISREG(out.st_mode)) {
    char last = '\n';
    if (out.st_size > 0 && pread(output, &last, 1, out.st_size - 1) == 1 && last != '\n') {
      lines += '\n';
    }
  } else if (header->writing != 0) {
    lines += '\n';
  }
  CloudEventFormatter formatter(config.cell);
  EventIdGenerator ids;
  for (std::size_t i = 0; i < header->count; ++i) {
    QueryRecord record;
    const RingSlot& slot = slots[(header->head + i) % header->capacity];
    std::memcpy(&record, &slot.record, sizeof record);
    // The dead process's pointers mean nothing here: the resolver's name
    // comes from the cell's config, found by its address.
    record.upstream_uri = {};
    for (const ResolverConfig& resolver : config.resolvers) {
      if (record.has_upstream && resolver.address == record.upstream) {
        record.upstream_uri = resolver.uri;
      }
    }
    std::array<char, EventIdGenerator::kLength> id{};
    if (slot.has_id) {
      id = slot.id;
    } else {
      ids.write(id.data());
    }
    formatter.append(lines, record, std::string_view(id.data(), id.size()));
    lines += '\n';
    ++recovered;
  }
  munmap(mapped, octets);
  if (write_all(output, lines) != lines.size()) {
    error = std::string("writing the recovered events: ") + std::strerror(errno);
    return 0;
  }
  return recovered;
}

}  // namespace dnsgate
