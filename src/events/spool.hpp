// The on-disk spool of a delivering sink (DESIGN.md §11, docs/events.md
// "The spool"): every event line a nats or http sink accepts is appended
// here first and leaves only once the sink acknowledged it, so a sink that
// is away, a crash or a restart loses nothing. Append-only segment files,
// a checksum per record; a full spool refuses new records (the caller drops
// the newest and counts them).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace dnsgate {

struct SpoolOptions {
  std::string dir;                          // created (0750) when missing, with its parents
  std::uint64_t max_bytes = 1ULL << 30;     // segments on disk, headers included
  std::uint64_t segment_bytes = 64ULL << 20;  // a new segment starts past this size
  // How long appended records may sit in the page cache before fsync: a
  // crash of the process loses nothing, a crash of the machine at most
  // this much (docs/events.md "fsync policy").
  std::chrono::milliseconds fsync_interval{1000};
};

// Where a record is: its segment's number and its offset in it. Ordered.
struct SpoolPosition {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  friend auto operator<=>(const SpoolPosition&, const SpoolPosition&) = default;
};

struct SpooledRecord {
  SpoolPosition position;
  std::string text;  // as appended
};

struct SpoolCounts {
  std::uint64_t appended = 0;         // records stored by append()
  std::uint64_t refused_full = 0;     // append() said full
  std::uint64_t acknowledged = 0;     // records passed by acknowledge()
  std::uint64_t corrupt_skipped = 0;  // records (or torn tails) skipped at open: bad checksum or length
  std::uint64_t bytes = 0;            // on disk now (gauge)
  std::uint64_t segments = 0;         // on disk now (gauge)
};

// Thread-safe for one writer thread (append, flush) and one reader thread
// (read, acknowledge, rewind) at once.
class Spool {
 public:
  // Opens or creates the spool in options.dir. Records left by an earlier
  // run (not acknowledged) are read first; a record whose checksum or
  // length is wrong ends its segment there (counted in corrupt_skipped),
  // reading goes on with the next segment. Error text names the path and
  // the system's reason.
  static std::variant<std::unique_ptr<Spool>, std::string> open(const SpoolOptions& options);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  enum class Append { stored, full, failed };
  // Buffers one record (an event line, without its newline). `full` when
  // it would take the spool past max_bytes; `failed` when the disk refused
  // (ENOSPC, EIO...), with last_error() saying why. Never blocks on the reader.
  Append append(std::string_view record);
  // Makes what append() buffered visible to the reader (and fsyncs when
  // fsync_interval has passed). The writer calls it after each batch.
  bool flush();

  // Copies up to `max` records, in order, from the read position on into
  // `out` (cleared first), waiting up to `wait` for one to be flushed when
  // there is none. The read position moves past them; acknowledge() or
  // rewind() say what became of them.
  std::size_t read(std::size_t max, std::vector<SpooledRecord>& out,
                   std::chrono::milliseconds wait);
  // Every record up to and including `through` was delivered: fully
  // delivered segments are deleted, and a restart resumes after it (the
  // position is persisted, at most every fsync_interval, so a restart may
  // send again what was acknowledged last: duplicates, never loss).
  void acknowledge(const SpoolPosition& through);
  // Reading starts again at the first record not acknowledged (after a
  // failed send).
  void rewind();
  // Wakes a read() that waits (for shutdown).
  void wake_reader();

  // Records appended and not yet acknowledged (those of an earlier run included).
  std::uint64_t backlog() const;
  SpoolCounts counts() const;
  std::string last_error() const;

  struct State;  // spool.cpp

 private:
  explicit Spool(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace dnsgate
