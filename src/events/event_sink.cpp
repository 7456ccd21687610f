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
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace dnsgate {

namespace {

// Records formatted per round. Slots go back to emit() after each round, so a
// large backlog does not keep the queue full while the whole of it is formatted.
constexpr std::size_t kMaxBatchRecords = 256;

// Once woken, the writer lets records gather this long before it takes
// them: one wake-up, one write(2) and no futex call on the DNS thread per
// few dozen events instead of per event. Well inside the 100 ms flush bound.
constexpr std::chrono::milliseconds kGatherDelay{5};

// How long a write waits for a non-blocking output (a stdout someone else set
// O_NONBLOCK on) to drain before trying again.
constexpr int kWritablePollMs = 100;

}  // namespace

// Storage for the queued records, allocated whole at open() but each slot
// built on first use. The queue restarts at slot 0 whenever it empties, so
// slots are used from the front and only as many become resident as were
// ever queued at once (a few hundred at ordinary rates, not the 8,192 x
// 344 B of the default capacity).
class RecordSlots {
 public:
  explicit RecordSlots(std::size_t capacity)
      : capacity_(capacity), slots_(std::allocator<QueryRecord>().allocate(capacity)) {}
  ~RecordSlots() {
    std::destroy_n(slots_, built_);
    std::allocator<QueryRecord>().deallocate(slots_, capacity_);
  }
  RecordSlots(const RecordSlots&) = delete;
  RecordSlots& operator=(const RecordSlots&) = delete;

  std::size_t size() const noexcept { return capacity_; }
  const QueryRecord& operator[](std::size_t slot) const noexcept { return slots_[slot]; }
  void store(std::size_t slot, const QueryRecord& record) noexcept {
    while (built_ <= slot) {
      std::construct_at(slots_ + built_++);
    }
    slots_[slot] = record;
  }

 private:
  std::size_t capacity_;
  QueryRecord* slots_;
  std::size_t built_ = 0;  // slots [0, built_) hold constructed records
};

struct CloudEventSink::State {
  EventSinkOptions options;
  int fd = -1;
  bool owns_fd = false;

  std::mutex queue_mutex;
  std::condition_variable queue_not_empty;
  // Ring of queued records: slots [head, head + count) modulo capacity. Only
  // emit() writes slots and only the writer reads them; the writer reads its
  // slots without the lock, because emit() only ever fills slots outside
  // [head, head + count) and the writer moves head only after formatting.
  std::unique_ptr<RecordSlots> ring;
  std::size_t head = 0;
  std::size_t count = 0;
  bool stopping = false;

  // Backlog: count mirrored for the loop's lock-free check once per turn;
  // `in_output` is set while the writer is inside write(2), where a wait by
  // the loop would not help it.
  std::atomic<std::size_t> queued{0};
  std::atomic<bool> in_output{false};
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

  void run_writer() noexcept;
  // Writes `lines` whole; returns the octets written before an error.
  std::size_t write_fully(std::string_view lines) noexcept;
  void account_failed_write(std::string_view lines, std::size_t octets_written,
                            std::size_t line_count) noexcept;
};

std::size_t CloudEventSink::State::write_fully(std::string_view lines) noexcept {
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
    return done;  // EPIPE, ENOSPC, EIO, ...: the caller counts what was lost
  }
  return done;
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
  const std::size_t capacity = ring->size();
  for (;;) {
    std::size_t first = 0;
    std::size_t taken = 0;
    {
      std::unique_lock lock(queue_mutex);
      // The timeout is a safety net only: emit() wakes us as soon as the queue
      // stops being empty, and each record is written as soon as it is taken.
      queue_not_empty.wait_for(lock, options.flush_interval,
                               [this] { return count > 0 || stopping; });
      if (count == 0) {
        if (stopping) {
          return;
        }
        continue;
      }
      if (!stopping && count < capacity / 2) {
        lock.unlock();
        std::this_thread::sleep_for(std::min(kGatherDelay, options.flush_interval));
        lock.lock();
      }
      first = head;
      taken = std::min(count, kMaxBatchRecords);
    }

    lines.clear();
    if (output_mid_line) {
      lines += '\n';
    }
    std::size_t line_count = 0;
    for (std::size_t i = 0; i < taken; ++i) {
      const QueryRecord& record = (*ring)[(first + i) % capacity];
      const std::size_t line_start = lines.size();
      try {
        formatter->append(lines, record);
        lines += '\n';
        ++line_count;
      } catch (const std::exception&) {
        // Out of memory, most likely: lose this event, and cut what it left
        // behind so the batch still holds whole lines only.
        lines.resize(line_start);
        write_errors.fetch_add(1, std::memory_order_relaxed);
      }
    }

    bool wake_loop = false;
    {
      std::lock_guard lock(queue_mutex);
      head = (head + taken) % capacity;
      count -= taken;
      if (count == 0) {
        head = 0;  // keeps the slots in use at the front (see RecordSlots)
      }
      queued.store(count, std::memory_order_relaxed);
      wake_loop = room_waiters > 0 && count <= backlog_resolved();
    }
    if (wake_loop) {
      queue_has_room.notify_all();
    }

    in_output.store(true, std::memory_order_relaxed);
    const std::size_t octets = write_fully(lines);
    in_output.store(false, std::memory_order_relaxed);
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
  } else {
    state->fd = STDOUT_FILENO;
  }

  try {
    state->ring = std::make_unique<RecordSlots>(state->options.queue_capacity);
  } catch (const std::bad_alloc&) {
    error = "cannot allocate an event queue of " + std::to_string(state->options.queue_capacity) +
            " records";
    return nullptr;
  }

  // The writer blocks every asynchronous signal, so SIGINT/SIGTERM reach the
  // threads that handle them (the event loop) instead of interrupting a write.
  sigset_t all_signals;
  sigset_t previous;
  sigfillset(&all_signals);
  for (int synchronous : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    sigdelset(&all_signals, synchronous);
  }
  pthread_sigmask(SIG_BLOCK, &all_signals, &previous);
  State* raw = state.get();
  try {
    state->writer = std::thread([raw] { raw->run_writer(); });
  } catch (const std::system_error& failure) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    error = std::string("cannot start the event writer thread: ") + failure.what();
    return nullptr;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  pthread_setname_np(state->writer.native_handle(), "dnsgate-events");

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
  bool was_empty = false;
  {
    std::lock_guard lock(state.queue_mutex);
    const std::size_t capacity = state.ring->size();
    if (state.stopping || state.count == capacity) {
      state.dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    state.ring->store((state.head + state.count) % capacity, record);
    was_empty = state.count == 0;
    ++state.count;
    state.queued.store(state.count, std::memory_order_relaxed);
  }
  // Only the empty -> non-empty edge needs a wake-up: a writer that is busy
  // rechecks the queue before it waits again. Notifying outside the lock
  // spares the writer waking only to block on the mutex.
  if (was_empty) {
    state.queue_not_empty.notify_one();
  }
  return true;
}

bool CloudEventSink::wait_while_backlogged(std::chrono::milliseconds limit) noexcept {
  State& state = *state_;
  if (state.queued.load(std::memory_order_relaxed) < state.backlog_starts() ||
      state.in_output.load(std::memory_order_relaxed)) {
    return false;
  }
  std::unique_lock lock(state.queue_mutex);
  if (state.stopping || state.count < state.backlog_starts()) {
    return false;
  }
  ++state.room_waiters;
  state.queue_has_room.wait_for(lock, limit, [&state] {
    return state.stopping || state.count <= state.backlog_resolved() ||
           state.in_output.load(std::memory_order_relaxed);
  });
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

}  // namespace dnsgate
