// The on-disk spool of a delivering sink (DESIGN.md §11, docs/events.md
// "The spool"): every event line a nats or http sink accepts is appended
// here first and leaves only once the sink acknowledged it, so a sink that
// is away, a crash or a restart loses nothing. Append-only segment files,
// a checksum per record; a full spool refuses new records (the caller drops
// the newest and counts them).
//
// On disk, in `dir`: segments named by a 20-digit number that only grows
// (00000000000000000001.seg), each a run of records: a 12-octet header
// (magic "DGS1", payload length and CRC32C of the payload, little-endian)
// and the payload. A record is at most 1 MiB. `ack` holds the position of
// the first record not acknowledged (text, replaced by rename); `lock` is
// flock()ed while the spool is open, so a second process cannot share the
// directory.
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
  std::string dir;  // created (0750) when missing, with its parents
  // Segments on disk, headers included, and what append() buffered.
  std::uint64_t max_bytes = 1ULL << 30;
  // A record that would take a segment that has records past this size
  // starts a new one (so a segment passes it only by holding one record).
  std::uint64_t segment_bytes = 64ULL << 20;
  // How long appended records may sit in the page cache before fsync: a
  // crash of the process loses nothing flushed, a crash of the machine at
  // most this much (docs/events.md "fsync policy"). flush() fdatasyncs the
  // segment being written once this long has passed since the last sync
  // (0: at every flush()); a segment is also synced when it is sealed and
  // at destruction, and the directory when a segment is created. The
  // acknowledged position is written at most this often (and at
  // destruction), so a restart after a crash sends up to this much again.
  std::chrono::milliseconds fsync_interval{1000};
};

// Where a record is: its segment's number and its offset in it. Ordered.
struct SpoolPosition {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
  friend auto operator<=>(const SpoolPosition&, const SpoolPosition&) = default;
};

struct SpooledRecord {
  SpoolPosition position;
  std::string text;  // as appended
};

struct SpoolCounts {
  std::uint64_t appended = 0;      // records stored by append()
  std::uint64_t refused_full = 0;  // append() said full
  std::uint64_t acknowledged = 0;  // records passed by acknowledge()
  // Records skipped for a bad checksum, magic or length, or torn: at open,
  // one per record header seen in a damaged stretch (at least one per
  // stretch); met later while reading, one for the rest of that segment.
  std::uint64_t corrupt_skipped = 0;
  std::uint64_t bytes = 0;     // on disk now (gauge)
  std::uint64_t segments = 0;  // on disk now (gauge)
};

// Thread-safe for one writer thread (append, flush) and one reader thread
// (read, acknowledge, rewind) at once. The two share one mutex, never held
// during file I/O; append() takes none unless it writes.
class Spool {
 public:
  // Opens or creates the spool in options.dir. Records left by an earlier
  // run (not acknowledged) are read first; a damaged stretch is jumped to
  // the next record whose header and checksum hold (its records counted in
  // corrupt_skipped). Error text names the path and the system's reason.
  static std::variant<std::unique_ptr<Spool>, std::string> open(const SpoolOptions& options);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  enum class Append { stored, full, failed };
  // Buffers one record (an event line, without its newline); the buffer
  // (256 KiB) is written out when full. `full` when it would take the
  // spool past max_bytes; `failed` when the disk refused (ENOSPC, EIO...)
  // or the record is over 1 MiB, with last_error() saying why. A failed
  // write keeps what was buffered for the next try: records said `stored`
  // are not dropped. Never blocks on the reader, never throws.
  Append append(std::string_view record);
  // Makes what append() buffered visible to the reader (with
  // fsync_interval 0, also syncs it; otherwise a thread of the spool's own
  // syncs within fsync_interval). The writer calls it after each batch.
  // False on a write or sync error (last_error()).
  bool flush();
  // The writer's: flush() has something left to do (a write or a sync that
  // failed and is to be tried again).
  bool unflushed() const;

  // Copies up to `max` records, in order, from the read position on into
  // `out` (cleared first), waiting up to `wait` for one to be flushed when
  // there is none (kWaitForever: no time limit, until one is or
  // wake_reader()). The read position moves past them; acknowledge() or
  // rewind() say what became of them. At most 1,048,576 records are out
  // (read, neither acknowledged nor rewound) at once: past that read()
  // waits (a second at most with kWaitForever) and returns none. While it
  // waits, an acknowledged position falling due is written.
  static constexpr std::chrono::milliseconds kWaitForever = std::chrono::milliseconds::max();
  std::size_t read(std::size_t max, std::vector<SpooledRecord>& out,
                   std::chrono::milliseconds wait);
  // Every record up to and including `through` was delivered: fully
  // delivered segments are deleted, and a restart resumes after it (the
  // position is persisted, at most every fsync_interval, so a restart may
  // send again what was acknowledged last: duplicates, never loss).
  // `through` is the position of a record read() returned; one before the
  // acknowledged position changes nothing, one past what was read
  // acknowledges everything read.
  void acknowledge(const SpoolPosition& through);
  // Reading starts again at the first record not acknowledged (after a
  // failed send).
  void rewind();
  // Wakes a read() that waits (for shutdown); with none waiting, the next
  // read() that finds nothing returns at once.
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
