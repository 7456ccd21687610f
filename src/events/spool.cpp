// The on-disk spool (spool.hpp). One writer thread appends into a memory
// buffer and writes it to the newest segment; one reader thread reads what
// was written back from the files. They share little: the list of segments
// with the end the reader may read to, under one mutex that is never held
// during file I/O, and a few counters.
//
// On disk: NNNNNNNNNNNNNNNNNNNN.seg (20 digits, numbers only grow), each a
// sequence of records [magic "DGS1"][length, u32 LE][CRC32C of the payload,
// u32 LE][payload]; `ack` holds the position of the first record not
// acknowledged; `lock` keeps a second process out.
#include "events/spool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace dnsgate {

namespace {

constexpr std::array<unsigned char, 4> kMagic{'D', 'G', 'S', '1'};
constexpr std::size_t kHeaderBytes = 12;
// Far above an event line (< 64 KiB), low enough that a damaged length
// field never makes the reader allocate much.
constexpr std::uint32_t kMaxRecordBytes = 1U << 20;
// What append() gathers before it writes on its own.
constexpr std::size_t kWriteBufferBytes = 256U << 10;
// What the reader asks of the file at a time.
constexpr std::size_t kReadChunkBytes = 256U << 10;
// Records read() hands out before they are acknowledged or rewound: bounds
// the bookkeeping (16 octets each) of a reader that never acknowledges.
constexpr std::size_t kMaxOutstanding = 1U << 20;
// A segment whose reading stopped at damage: nothing more is read from it.
constexpr std::uint64_t kSegmentAbandoned = std::numeric_limits<std::uint64_t>::max();

// CRC32C (Castagnoli), slicing by 8: the same checksum as iSCSI and ext4,
// fast enough that checking every record costs little next to copying it.
using CrcTables = std::array<std::array<std::uint32_t, 256>, 8>;
constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t i = 0; i < 256; ++i) {
    for (std::size_t k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFU];
  }
  return t;
}
constexpr CrcTables kCrc = make_crc_tables();

std::uint32_t load_le32(const unsigned char* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

void store_le32(char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFFU);
}

std::uint32_t crc32c(const unsigned char* p, std::size_t n) noexcept {
  std::uint32_t crc = 0xFFFFFFFFU;
  while (n >= 8) {
    const std::uint32_t lo = load_le32(p) ^ crc;
    const std::uint32_t hi = load_le32(p + 4);
    crc = kCrc[7][lo & 0xFFU] ^ kCrc[6][(lo >> 8) & 0xFFU] ^ kCrc[5][(lo >> 16) & 0xFFU] ^
          kCrc[4][lo >> 24] ^ kCrc[3][hi & 0xFFU] ^ kCrc[2][(hi >> 8) & 0xFFU] ^
          kCrc[1][(hi >> 16) & 0xFFU] ^ kCrc[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = kCrc[0][(crc ^ *p++) & 0xFFU] ^ (crc >> 8);
  return ~crc;
}

std::string system_error_text(const std::string& what, const std::string& path, int error) {
  return what + " " + path + ": " + std::strerror(error);
}

std::string segment_name(std::uint64_t number) {
  std::array<char, 32> name{};
  std::snprintf(name.data(), name.size(), "%020llu.seg", static_cast<unsigned long long>(number));
  return name.data();
}

// The number of a segment file's name, or nothing for any other file.
bool parse_segment_name(std::string_view name, std::uint64_t& number) {
  if (name.size() != 24 || name.substr(20) != ".seg") return false;
  const auto* first = name.data();
  const auto [end, ec] = std::from_chars(first, first + 20, number);
  return ec == std::errc() && end == first + 20;
}

bool parse_ack(std::string_view text, SpoolPosition& position) {
  constexpr std::string_view kHead = "dnsgate-spool-ack 1\n";
  if (text.substr(0, kHead.size()) != kHead) return false;
  text.remove_prefix(kHead.size());
  const char* p = text.data();
  const char* end = p + text.size();
  auto r = std::from_chars(p, end, position.segment);
  if (r.ec != std::errc() || r.ptr == end || *r.ptr != ' ') return false;
  r = std::from_chars(r.ptr + 1, end, position.offset);
  return r.ec == std::errc() && r.ptr + 1 == end && *r.ptr == '\n';
}

// pread until `n` octets or the end of the file; -1 on error (errno set).
ssize_t read_at(int fd, unsigned char* out, std::size_t n, std::uint64_t offset) noexcept {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -1;
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  return static_cast<ssize_t>(done);
}

bool write_at(int fd, const char* data, std::size_t n, std::uint64_t offset) noexcept {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t put = ::pwrite(fd, data + done, n - done, static_cast<off_t>(offset + done));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      if (put == 0) errno = EIO;
      return false;
    }
    done += static_cast<std::size_t>(put);
  }
  return true;
}

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Like mkdir -p, the directories it makes 0750.
std::string make_directories(const std::string& dir) {
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string part = dir.substr(0, pos);
    if (part.empty()) continue;
    if (::mkdir(part.c_str(), 0750) == 0) continue;
    const int error = errno;
    if (error != EEXIST) return system_error_text("spool: cannot create directory", part, error);
    // A file where a directory is wanted: the next mkdir says ENOTDIR.
    struct stat st {};
    if (pos != std::string::npos || (::stat(part.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
      continue;
    }
    return system_error_text("spool: cannot use directory", part, ENOTDIR);
  }
  return {};
}

// A damaged stretch of a segment: [from, to) holds no record that checks.
struct Hole {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
};

struct ScanResult {
  std::uint64_t end = 0;      // where the last valid record ends
  std::uint64_t records = 0;  // valid records from the start on
  std::uint64_t lost = 0;     // records taken to be lost in damaged stretches
  std::vector<Hole> holes;    // damaged stretches with valid records after them
  bool corrupt = false;       // some damage was found
  int error = 0;              // a read failed (errno)
};

// Checks every record of an earlier run's segment from `start` on. Damage
// does not end the segment: the scan looks for the next record whose
// header and checksum hold and goes on from there, so one bad sector costs
// the records it hit, not the rest of the segment.
ScanResult scan_segment(int fd, std::uint64_t start, std::uint64_t size,
                        std::vector<unsigned char>& buffer) {
  ScanResult result;
  result.end = start;
  if (start >= size) return result;
  std::uint64_t buffer_start = start;
  std::size_t buffer_len = 0;
  // Makes [at, at + need) available in `buffer`.
  auto fetch = [&](std::uint64_t at, std::uint64_t need) {
    if (at >= buffer_start && at + need <= buffer_start + buffer_len) return true;
    const std::size_t want = static_cast<std::size_t>(
        std::min<std::uint64_t>(size - at, std::max<std::uint64_t>(kReadChunkBytes, need)));
    if (buffer.size() < want) buffer.resize(want);
    const ssize_t got = read_at(fd, buffer.data(), want, at);
    if (got < 0) {
      result.error = errno;
      return false;
    }
    buffer_start = at;
    buffer_len = static_cast<std::size_t>(got);
    return need <= buffer_len;
  };
  // The length of the valid record at `at`, or nothing.
  auto record_at = [&](std::uint64_t at) -> std::optional<std::uint32_t> {
    if (size - at < kHeaderBytes || !fetch(at, kHeaderBytes)) return std::nullopt;
    const unsigned char* h = buffer.data() + (at - buffer_start);
    const std::uint32_t length = load_le32(h + 4);
    if (std::memcmp(h, kMagic.data(), kMagic.size()) != 0 || length > kMaxRecordBytes ||
        length > size - at - kHeaderBytes || !fetch(at, kHeaderBytes + length)) {
      return std::nullopt;
    }
    h = buffer.data() + (at - buffer_start);
    if (crc32c(h + kHeaderBytes, length) != load_le32(h + 8)) return std::nullopt;
    return length;
  };
  std::uint64_t off = start;
  while (off < size && result.error == 0) {
    if (const auto length = record_at(off)) {
      off += kHeaderBytes + *length;
      result.end = off;
      ++result.records;
      continue;
    }
    if (result.error != 0) break;
    // Damage at `off`: every record header in the stretch up to the next
    // valid record counts as one lost (at least one: the one hit).
    result.corrupt = true;
    std::uint64_t lost = 0;
    std::uint64_t next = off + 1;
    for (; next + kHeaderBytes <= size && result.error == 0; ++next) {
      if (!fetch(next - 1, 1 + kMagic.size())) break;
      const unsigned char* at = buffer.data() + (next - 1 - buffer_start);
      if (at[0] == kMagic[0] && std::memcmp(at, kMagic.data(), kMagic.size()) == 0) ++lost;
      if (at[1] != kMagic[0] || std::memcmp(at + 1, kMagic.data(), kMagic.size()) != 0) continue;
      if (record_at(next)) break;
    }
    result.lost += std::max<std::uint64_t>(lost, 1);
    if (next + kHeaderBytes > size || result.error != 0) break;  // a torn or damaged tail
    result.holes.push_back({off, next});
    off = next;
  }
  return result;
}

}  // namespace

// One per spool: the fields are grouped by the thread that owns them (shared,
// writer, syncer, reader), which matters more here than padding.
struct Spool::State {  // NOLINT(clang-analyzer-optin.performance.Padding)
  struct Segment {
    std::uint64_t number = 0;
    std::uint64_t end = 0;         // the reader reads up to here
    std::uint64_t file_bytes = 0;  // on disk, counted in bytes; final once sealed
    bool sealed = false;           // no longer written
    std::vector<Hole> holes;       // damaged stretches found at open, jumped over
  };

  SpoolOptions options;
  int dir_fd = -1;
  int lock_fd = -1;

  // Shared between the two threads.
  mutable std::mutex mu;
  std::condition_variable readable;
  std::deque<Segment> segments;  // ascending numbers; the last is being written
  bool wake = false;
  std::string last_error;
  std::atomic<std::uint64_t> appended{0};
  std::atomic<std::uint64_t> refused_full{0};
  std::atomic<std::uint64_t> acknowledged{0};
  std::atomic<std::uint64_t> corrupt_skipped{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> backlog{0};

  // The writer's own.
  int write_fd = -1;
  std::uint64_t write_segment = 0;
  std::uint64_t written = 0;  // octets of whole records in the file
  std::string buffer;
  bool unsynced = false;
  std::chrono::steady_clock::time_point last_sync;

  // The syncer thread: fdatasync takes tens of milliseconds under a steady
  // stream of writes, and the writer must not wait for it (the event queue
  // behind it would fill and drop). It syncs its own duplicates of the
  // segments' descriptors, so the writer closes and rolls freely.
  std::mutex sync_mu;
  std::condition_variable sync_wake;
  int sync_fd = -1;               // the segment being written, the syncer's copy
  std::vector<int> sync_closing;  // sealed segments: synced once more, then closed
  bool sync_dir = false;          // a segment was created: the directory too
  bool sync_stop = false;
  std::atomic<bool> dirty{false};  // written since the syncer last synced
  std::thread syncer;

  // The reader's own.
  int read_fd = -1;
  std::uint64_t read_fd_segment = 0;
  SpoolPosition read_position;
  SpoolPosition ack;  // the first record not acknowledged
  std::deque<SpoolPosition> outstanding;
  std::vector<unsigned char> read_buffer;
  std::uint64_t read_buffer_start = 0;
  std::size_t read_buffer_len = 0;
  bool ack_dirty = false;
  std::chrono::steady_clock::time_point last_ack_write;

  ~State() {
    stop_syncer();
    close_fd(write_fd);
    close_fd(read_fd);
    close_fd(dir_fd);
    close_fd(lock_fd);
  }

  std::string path(const std::string& name) const { return options.dir + "/" + name; }

  void set_error(std::string text) {
    const std::lock_guard lock(mu);
    last_error = std::move(text);
  }

  // ---- writer -----------------------------------------------------------

  // Opens segment `number` for writing and publishes it.
  bool start_segment(std::uint64_t number) {
    const std::string file = path(segment_name(number));
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
      set_error(system_error_text("spool: cannot create", file, errno));
      return false;
    }
    write_fd = fd;
    write_segment = number;
    written = 0;
    {
      // The new name must survive a crash of the machine with the records
      // that will be synced into it: the syncer syncs the directory too.
      const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
      const std::lock_guard lock(sync_mu);
      if (sync_fd >= 0) sync_closing.push_back(sync_fd);
      sync_fd = copy;
      sync_dir = true;
    }
    sync_wake.notify_one();
    {
      const std::lock_guard lock(mu);
      segments.push_back(Segment{number, 0, 0, false, {}});
    }
    readable.notify_one();
    return true;
  }

  // The writer's own sync, for fsync_interval 0 and at close.
  bool sync_segment() {
    if (!unsynced) return true;
    if (::fdatasync(write_fd) != 0) {
      set_error(system_error_text("spool: cannot sync", path(segment_name(write_segment)), errno));
      return false;
    }
    unsynced = false;
    last_sync = std::chrono::steady_clock::now();
    return true;
  }

  // Under sync_mu: something for the syncer to do.
  bool sync_due() const {
    return dirty.load(std::memory_order_relaxed) || sync_dir || !sync_closing.empty();
  }

  // Sleeps (no timer) while nothing is unsynced, so an idle spool does not
  // wake it; once something is, syncs it at most once per fsync_interval.
  void run_syncer() {
    std::unique_lock lock(sync_mu);
    auto last_pass = std::chrono::steady_clock::now();
    for (;;) {
      sync_wake.wait(lock, [this] { return sync_stop || sync_due(); });
      sync_wake.wait_until(lock, last_pass + options.fsync_interval, [this] { return sync_stop; });
      const bool stop = sync_stop;  // a last pass, then out
      last_pass = std::chrono::steady_clock::now();
      const int fd = sync_fd;
      std::vector<int> closing = std::move(sync_closing);
      sync_closing.clear();
      const bool directory = std::exchange(sync_dir, false);
      lock.unlock();
      // Only this thread closes these descriptors: none goes away under it.
      for (const int sealed : closing) {
        if (::fdatasync(sealed) != 0) {
          set_error(system_error_text("spool: cannot sync a segment in", options.dir, errno));
        }
        ::close(sealed);
      }
      if (directory && ::fsync(dir_fd) != 0) {
        set_error(system_error_text("spool: cannot sync directory", options.dir, errno));
      }
      if (dirty.exchange(false) && fd >= 0 && ::fdatasync(fd) != 0) {
        set_error(
            system_error_text("spool: cannot sync", path(segment_name(write_segment)), errno));
      }
      lock.lock();
      if (stop) return;
    }
  }

  void stop_syncer() {
    {
      const std::lock_guard lock(sync_mu);
      sync_stop = true;
    }
    sync_wake.notify_all();
    if (syncer.joinable()) syncer.join();
    const std::lock_guard lock(sync_mu);
    for (const int sealed : sync_closing) {
      (void)::fdatasync(sealed);
      ::close(sealed);
    }
    sync_closing.clear();
    close_fd(sync_fd);
  }

  // Writes the buffer at the end of the segment and lets the reader see it.
  // A failed write is cut off again and the buffer kept for the next try, so
  // the file holds whole records only and nothing append() took is lost.
  bool write_buffer() {
    if (buffer.empty()) return true;
    if (write_fd < 0) return false;
    if (!write_at(write_fd, buffer.data(), buffer.size(), written)) {
      const int error = errno;
      (void)::ftruncate(write_fd, static_cast<off_t>(written));
      set_error(system_error_text("spool: cannot write", path(segment_name(write_segment)), error));
      return false;
    }
    written += buffer.size();
    buffer.clear();
    unsynced = true;
    if (!dirty.exchange(true, std::memory_order_relaxed) && options.fsync_interval.count() > 0) {
      // The first write since the last sync wakes the syncer (once per
      // fsync_interval at most, under a steady stream of events).
      const std::lock_guard lock(sync_mu);
      sync_wake.notify_one();
    }
    {
      const std::lock_guard lock(mu);
      segments.back().end = written;
      segments.back().file_bytes = written;
    }
    readable.notify_one();
    return true;
  }

  // Seals the segment being written and starts the next one. The syncer
  // syncs the sealed one (through its own copy of the descriptor).
  bool roll() {
    if (!write_buffer()) return false;
    if (options.fsync_interval.count() == 0 && !sync_segment()) return false;
    close_fd(write_fd);
    {
      const std::lock_guard lock(mu);
      segments.back().sealed = true;
    }
    return start_segment(write_segment + 1);
  }

  Append append(std::string_view record) {
    if (record.size() > kMaxRecordBytes) {
      set_error("spool: a record of " + std::to_string(record.size()) + " octets is over the " +
                std::to_string(kMaxRecordBytes) + " octets a record may have");
      return Append::failed;
    }
    const std::uint64_t need = kHeaderBytes + record.size();
    if (bytes.load(std::memory_order_relaxed) + need > options.max_bytes) {
      refused_full.fetch_add(1, std::memory_order_relaxed);
      return Append::full;
    }
    // After a failed roll: the sealed segment stays sealed.
    if (write_fd < 0 && !start_segment(write_segment + 1)) return Append::failed;
    const std::uint64_t in_segment = written + buffer.size();
    if (in_segment > 0 && in_segment + need > options.segment_bytes && !roll()) {
      return Append::failed;
    }
    if (buffer.size() + need > kWriteBufferBytes && !write_buffer()) return Append::failed;
    std::array<char, kHeaderBytes> header{};
    std::memcpy(header.data(), kMagic.data(), kMagic.size());
    store_le32(header.data() + 4, static_cast<std::uint32_t>(record.size()));
    store_le32(header.data() + 8,
               crc32c(reinterpret_cast<const unsigned char*>(record.data()), record.size()));
    buffer.append(header.data(), header.size());
    buffer.append(record);
    bytes.fetch_add(need, std::memory_order_relaxed);
    appended.fetch_add(1, std::memory_order_relaxed);
    backlog.fetch_add(1, std::memory_order_relaxed);
    return Append::stored;
  }

  bool flush() {
    if (write_fd < 0 && !buffer.empty()) return false;
    if (!write_buffer()) return false;
    // With an interval, syncing is the syncer's; without, each flush syncs.
    if (options.fsync_interval.count() == 0) return sync_segment();
    return true;
  }

  // ---- reader -----------------------------------------------------------

  // Under mu: moves the read position onto a segment that has something to
  // read, past finished and deleted ones, and says where its records end;
  // false when there is nothing to read yet.
  bool readable_end(std::uint64_t& end, std::vector<Hole>& holes) {
    for (;;) {
      auto it = std::lower_bound(
          segments.begin(), segments.end(), read_position.segment,
          [](const Segment& s, std::uint64_t number) { return s.number < number; });
      if (it == segments.end()) return false;
      if (it->number != read_position.segment) read_position = {it->number, 0};
      if (read_position.offset < it->end) {
        end = it->end;
        holes = it->holes;
        return true;
      }
      if (!it->sealed || std::next(it) == segments.end()) return false;
      read_position = {std::next(it)->number, 0};
    }
  }

  // Makes [offset, offset + need) of the read segment available in the
  // read buffer, reading no further than `end`.
  bool fetch(std::uint64_t offset, std::uint64_t need, std::uint64_t end) {
    if (read_fd >= 0 && read_fd_segment == read_position.segment && offset >= read_buffer_start &&
        offset + need <= read_buffer_start + read_buffer_len) {
      return true;
    }
    if (read_fd < 0 || read_fd_segment != read_position.segment) {
      close_fd(read_fd);
      read_buffer_len = 0;
      const std::string file = path(segment_name(read_position.segment));
      read_fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (read_fd < 0) {
        set_error(system_error_text("spool: cannot open", file, errno));
        return false;
      }
      read_fd_segment = read_position.segment;
    }
    const std::size_t want = static_cast<std::size_t>(
        std::min<std::uint64_t>(end - offset, std::max<std::uint64_t>(kReadChunkBytes, need)));
    if (read_buffer.size() < want) read_buffer.resize(want);
    const ssize_t got = read_at(read_fd, read_buffer.data(), want, offset);
    if (got < 0) {
      set_error(system_error_text("spool: cannot read", path(segment_name(read_position.segment)),
                                  errno));
      read_buffer_len = 0;
      return false;
    }
    read_buffer_start = offset;
    read_buffer_len = static_cast<std::size_t>(got);
    return need <= read_buffer_len;
  }

  // Copies records of the read segment below `end` into out[n...]; a
  // damaged record (or one that cannot be read) ends the segment for good.
  void read_segment(std::uint64_t end, const std::vector<Hole>& holes, std::size_t limit,
                    std::vector<SpooledRecord>& out, std::size_t& n) {
    while (n < limit && read_position.offset < end) {
      // A stretch found damaged at open: its records were counted lost.
      const auto hole = std::find_if(holes.begin(), holes.end(),
                                     [&](const Hole& h) { return h.from == read_position.offset; });
      if (hole != holes.end()) {
        read_position.offset = hole->to;
        continue;
      }
      const std::uint64_t off = read_position.offset;
      const unsigned char* h = nullptr;
      std::uint32_t length = 0;
      bool ok = end - off >= kHeaderBytes && fetch(off, kHeaderBytes, end);
      if (ok) {
        h = read_buffer.data() + (off - read_buffer_start);
        length = load_le32(h + 4);
        ok = std::memcmp(h, kMagic.data(), kMagic.size()) == 0 && length <= kMaxRecordBytes &&
             length <= end - off - kHeaderBytes && fetch(off, kHeaderBytes + length, end);
      }
      if (ok) {
        // fetch() may have read the buffer again from `off`.
        h = read_buffer.data() + (off - read_buffer_start);
        ok = crc32c(h + kHeaderBytes, length) == load_le32(h + 8);
      }
      if (!ok) {
        corrupt_skipped.fetch_add(1, std::memory_order_relaxed);
        read_position.offset = kSegmentAbandoned;
        return;
      }
      if (n < out.size()) {
        out[n].position = read_position;
        out[n].text.assign(reinterpret_cast<const char*>(h + kHeaderBytes), length);
      } else {
        out.push_back(SpooledRecord{
            read_position, std::string(reinterpret_cast<const char*>(h + kHeaderBytes), length)});
      }
      outstanding.push_back(read_position);
      ++n;
      read_position.offset = off + kHeaderBytes + length;
    }
  }

  std::size_t read(std::size_t max, std::vector<SpooledRecord>& out,
                   std::chrono::milliseconds wait) {
    std::size_t n = 0;
    try {
      maybe_write_ack(false);
      const std::size_t limit =
          std::min(max, kMaxOutstanding - std::min(kMaxOutstanding, outstanding.size()));
      using Clock = std::chrono::steady_clock;
      // No time limit: until a record comes or wake_reader() (with the most
      // records out, a second: only acknowledge() or rewind() makes room).
      const bool forever = wait == kWaitForever && limit > 0;
      const auto deadline = Clock::now() + (wait == kWaitForever ? std::chrono::seconds(1) : wait);
      while (n < limit || limit == 0) {
        std::uint64_t end = 0;
        std::vector<Hole> holes;
        {
          std::unique_lock lock(mu);
          bool have = limit > 0 && readable_end(end, holes);
          if (!have) {
            if (n > 0) break;
            const auto ready = [&] { return wake || (limit > 0 && readable_end(end, holes)); };
            // An acknowledged position waiting to be written is written
            // when it falls due, however long the wait.
            const bool ack_waits = ack_dirty && options.fsync_interval.count() > 0;
            const auto ack_due = last_ack_write + options.fsync_interval;
            if (ack_waits && (forever || ack_due < deadline)) {
              have = readable.wait_until(lock, ack_due, ready);
              if (!have) {
                lock.unlock();
                maybe_write_ack(true);
                continue;
              }
            } else if (forever) {
              readable.wait(lock, ready);
              have = true;
            } else {
              have = readable.wait_until(lock, deadline, ready);
            }
            if (wake) {
              wake = false;
              break;
            }
            if (!have) break;
          }
        }
        read_segment(end, holes, limit, out, n);
      }
    } catch (const std::exception& e) {
      set_error(std::string("spool: reading: ") + e.what());
    }
    out.resize(n);
    return n;
  }

  // Under mu: drops the segments the acknowledged position has passed,
  // moving it onto the next segment when it reached a sealed one's end;
  // returns the files to delete.
  std::vector<std::uint64_t> release_acknowledged() {
    std::vector<std::uint64_t> done;
    while (!segments.empty()) {
      const Segment& first = segments.front();
      if (!first.sealed || first.number > ack.segment) break;
      if (first.number == ack.segment) {
        if (ack.offset < first.end) break;
        ack = segments.size() > 1 ? SpoolPosition{segments[1].number, 0}
                                  : SpoolPosition{first.number + 1, 0};
      }
      bytes.fetch_sub(first.file_bytes, std::memory_order_relaxed);
      done.push_back(first.number);
      segments.pop_front();
    }
    return done;
  }

  void delete_segments(const std::vector<std::uint64_t>& numbers) {
    for (const std::uint64_t number : numbers) {
      const std::string file = path(segment_name(number));
      if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
        set_error(system_error_text("spool: cannot delete", file, errno));
      }
      if (read_fd >= 0 && read_fd_segment == number) close_fd(read_fd);
    }
  }

  void acknowledge(const SpoolPosition& through) {
    if (outstanding.empty() || through < outstanding.front()) return;
    std::uint64_t n = 0;
    while (!outstanding.empty() && outstanding.front() <= through) {
      outstanding.pop_front();
      ++n;
    }
    ack = outstanding.empty() ? read_position : outstanding.front();
    acknowledged.fetch_add(n, std::memory_order_relaxed);
    backlog.fetch_sub(n, std::memory_order_relaxed);
    ack_dirty = true;
    std::vector<std::uint64_t> done;
    {
      const std::lock_guard lock(mu);
      done = release_acknowledged();
    }
    if (read_position < ack) read_position = ack;
    delete_segments(done);
    maybe_write_ack(false);
  }

  void rewind() {
    read_position = ack;
    outstanding.clear();
    read_buffer_len = 0;
  }

  void maybe_write_ack(bool now) {
    if (!ack_dirty) return;
    const auto t = std::chrono::steady_clock::now();
    if (!now && t - last_ack_write < options.fsync_interval) return;
    last_ack_write = t;
    // Written whole under another name and renamed over the old one: a crash
    // leaves the old position or the new, never half of one.
    const std::string file = path("ack");
    const std::string temporary = path("ack.tmp");
    const std::string text = "dnsgate-spool-ack 1\n" + std::to_string(ack.segment) + " " +
                             std::to_string(ack.offset) + "\n";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
      set_error(system_error_text("spool: cannot create", temporary, errno));
      return;
    }
    const bool ok = write_at(fd, text.data(), text.size(), 0) && ::fdatasync(fd) == 0;
    const int error = errno;
    ::close(fd);
    if (!ok) {
      set_error(system_error_text("spool: cannot write", temporary, error));
      return;
    }
    if (::rename(temporary.c_str(), file.c_str()) != 0) {
      set_error(system_error_text("spool: cannot rename to", file, errno));
      return;
    }
    ack_dirty = false;
  }

  // ---- open ---------------------------------------------------------------

  std::string open() {
    if (options.dir.empty()) return "spool: no directory given";
    while (options.dir.size() > 1 && options.dir.back() == '/') options.dir.pop_back();
    if (std::string error = make_directories(options.dir); !error.empty()) return error;
    dir_fd = ::open(options.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return system_error_text("spool: cannot open directory", options.dir, errno);
    const std::string lock_file = path("lock");
    lock_fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (lock_fd < 0) return system_error_text("spool: cannot create", lock_file, errno);
    if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        return "spool: " + options.dir + " is in use by another process (" + lock_file + ")";
      }
      return system_error_text("spool: cannot lock", lock_file, errno);
    }

    // An unreadable or damaged ack file means starting from the first
    // record: duplicates, never loss.
    ack = {0, 0};
    if (const int fd = ::open(path("ack").c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
      std::array<unsigned char, 128> text{};
      const ssize_t got = read_at(fd, text.data(), text.size(), 0);
      ::close(fd);
      SpoolPosition saved;
      if (got > 0 && parse_ack(std::string_view(reinterpret_cast<const char*>(text.data()),
                                                static_cast<std::size_t>(got)),
                               saved)) {
        ack = saved;
      }
    }

    std::vector<std::uint64_t> numbers;
    DIR* listing = ::fdopendir(::dup(dir_fd));
    if (listing == nullptr) return system_error_text("spool: cannot list", options.dir, errno);
    while (const dirent* entry = ::readdir(listing)) {
      std::uint64_t number = 0;
      if (parse_segment_name(entry->d_name, number)) numbers.push_back(number);
    }
    ::closedir(listing);
    std::sort(numbers.begin(), numbers.end());

    std::vector<unsigned char> scratch;
    std::vector<std::uint64_t> acknowledged_before;
    for (const std::uint64_t number : numbers) {
      if (number < ack.segment) {
        acknowledged_before.push_back(number);
        continue;
      }
      const std::string file = path(segment_name(number));
      const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return system_error_text("spool: cannot open", file, errno);
      struct stat st {};
      if (::fstat(fd, &st) != 0) {
        const int error = errno;
        ::close(fd);
        return system_error_text("spool: cannot stat", file, error);
      }
      const auto size = static_cast<std::uint64_t>(st.st_size);
      const ScanResult scan =
          scan_segment(fd, number == ack.segment ? ack.offset : 0, size, scratch);
      ::close(fd);
      if (scan.error != 0) return system_error_text("spool: cannot read", file, scan.error);
      corrupt_skipped.fetch_add(scan.lost, std::memory_order_relaxed);
      backlog.fetch_add(scan.records, std::memory_order_relaxed);
      bytes.fetch_add(size, std::memory_order_relaxed);
      segments.push_back(Segment{number, scan.end, size, true, scan.holes});
    }
    delete_segments(acknowledged_before);

    const std::uint64_t next = std::max(numbers.empty() ? 0 : numbers.back(), ack.segment) + 1;
    if (!start_segment(next)) {
      const std::lock_guard lock(mu);
      return last_error;
    }
    last_sync = std::chrono::steady_clock::now();
    buffer.reserve(kWriteBufferBytes);
    if (options.fsync_interval.count() > 0) {
      syncer = std::thread([this] { run_syncer(); });
      pthread_setname_np(syncer.native_handle(), "dnsgate-sync");
    }

    // The saved position may name a segment deleted since: start at the
    // first one after it.
    if (segments.front().number > ack.segment) ack = {segments.front().number, 0};
    delete_segments(release_acknowledged());
    read_position = ack;
    last_ack_write = std::chrono::steady_clock::now();
    return {};
  }

  void close() {
    stop_syncer();
    if (write_fd >= 0) {
      (void)write_buffer();
      (void)sync_segment();
    }
    maybe_write_ack(true);
  }
};

std::variant<std::unique_ptr<Spool>, std::string> Spool::open(const SpoolOptions& options) {
  try {
    auto state = std::make_unique<State>();
    state->options = options;
    if (std::string error = state->open(); !error.empty()) return error;
    return std::unique_ptr<Spool>(new Spool(std::move(state)));
  } catch (const std::exception& e) {
    return std::string("spool: ") + e.what();
  }
}

Spool::Spool(std::unique_ptr<State> state) : state_(std::move(state)) {}

Spool::~Spool() {
  try {
    state_->close();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor reports nothing more
  }
}

Spool::Append Spool::append(std::string_view record) {
  try {
    return state_->append(record);
  } catch (...) {
    // Out of memory for the buffer or an error text: the record is not taken.
    return Append::failed;
  }
}

bool Spool::flush() {
  try {
    return state_->flush();
  } catch (...) {
    return false;
  }
}

bool Spool::unflushed() const {
  return !state_->buffer.empty() ||
         (state_->options.fsync_interval.count() == 0 && state_->unsynced);
}

std::size_t Spool::read(std::size_t max, std::vector<SpooledRecord>& out,
                        std::chrono::milliseconds wait) {
  return state_->read(max, out, wait);
}

void Spool::acknowledge(const SpoolPosition& through) {
  try {
    state_->acknowledge(through);
  } catch (const std::exception& e) {
    state_->set_error(std::string("spool: acknowledging: ") + e.what());
  }
}

void Spool::rewind() {
  state_->rewind();
}

void Spool::wake_reader() {
  {
    const std::lock_guard lock(state_->mu);
    state_->wake = true;
  }
  state_->readable.notify_all();
}

std::uint64_t Spool::backlog() const {
  return state_->backlog.load(std::memory_order_relaxed);
}

SpoolCounts Spool::counts() const {
  SpoolCounts c;
  c.appended = state_->appended.load(std::memory_order_relaxed);
  c.refused_full = state_->refused_full.load(std::memory_order_relaxed);
  c.acknowledged = state_->acknowledged.load(std::memory_order_relaxed);
  c.corrupt_skipped = state_->corrupt_skipped.load(std::memory_order_relaxed);
  c.bytes = state_->bytes.load(std::memory_order_relaxed);
  const std::lock_guard lock(state_->mu);
  c.segments = state_->segments.size();
  return c;
}

std::string Spool::last_error() const {
  const std::lock_guard lock(state_->mu);
  return state_->last_error;
}

}  // namespace dnsgate
