#include "net/datagram_ring.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace dnsgate {

namespace {

// Every receive can take a whole UDP datagram (65,507 octets at most over
// IPv4, 65,527 over IPv6) after the header and the source address the
// kernel writes first, so no datagram is ever cut short; a buffer the
// datagram does not fill costs no memory beyond the pages it touched.
constexpr std::size_t kBufferCount = 128;  // a power of two, as the kernel asks
constexpr std::size_t kBufferOctets = 65536 + 256;
constexpr std::uint16_t kBufferGroup = 0;
constexpr unsigned kSubmissionEntries = 1024;
constexpr unsigned kCompletionEntries = 4096;
// Sends are copied into slots of this size; a larger datagram is sent by
// the caller at once, as UdpSendBatch does. Every send is marked
// MSG_DONTWAIT, so the kernel issues it while it submits, and either sends
// it (copied into its buffers: no completion, IOSQE_CQE_SKIP_SUCCESS) or
// fails it (a completion with the error, as sendmmsg's on a non-blocking
// socket); never later. Once a submission is through, every slot is free.
constexpr std::size_t kSendSlots = 512;
constexpr std::size_t kSendSlotOctets = 4096;

// Batched waits (Linux 6.12, IORING_FEAT_MIN_TIMEOUT): after a turn that
// handed over at least kBatchFrom completions, the next wait asks for half
// as many, but returns kBatchWaitMicros after the first one at the latest.
// Under load the loop then wakes once per batch instead of once per
// datagram, for at most 50 µs more latency; a quiet proxy still wakes at
// once for a lone query.
constexpr unsigned kFeatureMinTimeout = 1U << 15;
constexpr unsigned kBatchFrom = 8;
constexpr unsigned kMaxBatchWait = 32;
constexpr unsigned kBatchWaitMicros = 50;

// What a completion is about, in the top byte of its user_data; below it a
// watch's index and generation, or a send slot.
enum class Kind : std::uint8_t { receive = 1, send, poll, cancel };

std::uint64_t user_data(Kind kind, std::uint32_t index, std::uint16_t generation = 0) {
  return std::uint64_t{static_cast<std::uint8_t>(kind)} << 56 | std::uint64_t{generation} << 32 |
         index;
}
Kind kind_of(std::uint64_t data) {
  return static_cast<Kind>(data >> 56);
}
std::uint32_t index_of(std::uint64_t data) {
  return static_cast<std::uint32_t>(data);
}
std::uint16_t generation_of(std::uint64_t data) {
  return static_cast<std::uint16_t>(data >> 32);
}

// liburing 2.3 (Debian 12) declares io_uring_register_restrictions and
// io_uring_enable_rings but its shared library does not export them: the
// system call directly. 0 or -errno, as liburing's functions return.
int register_on_ring(const io_uring& ring, unsigned opcode, const void* argument, unsigned count) {
  const long rc = syscall(__NR_io_uring_register, ring.ring_fd, opcode, argument, count);
  return rc < 0 ? -errno : 0;
}

// A receive that failed for a reason that will not pass: arming it again
// would only fail again, at once, forever.
bool permanent(int error) {
  return error == EBADF || error == ENOTSOCK || error == EINVAL || error == EOPNOTSUPP ||
         error == EACCES;
}

}  // namespace

std::unique_ptr<DatagramRing> DatagramRing::open(std::string& why) {
  std::unique_ptr<DatagramRing> ring(new DatagramRing());
  if (!ring->setup(why)) return nullptr;
  return ring;
}

// The ring starts disabled so that, before anything can be submitted, it is
// restricted to the four operations this backend uses: io_uring's requests
// are not seen by seccomp, and a restricted ring can do nothing the
// process could not do with recvmsg, sendto and poll anyway.
bool DatagramRing::setup(std::string& why) {
  io_uring_params params{};
  params.cq_entries = kCompletionEntries;
  constexpr unsigned kBase = IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED;
  // The loop is the ring's only user: its completions' work can wait until
  // it asks for them (6.1), else at least not interrupt it (5.19).
  int rc = -EINVAL;
  for (const unsigned flags :
       {kBase | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        kBase | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN, kBase}) {
    params = {};
    params.cq_entries = kCompletionEntries;
    params.flags = flags;
    rc = io_uring_queue_init_params(kSubmissionEntries, &ring_, &params);
    if (rc != -EINVAL) break;
  }
  if (rc < 0) {
    why = std::string("io_uring_setup: ") + std::strerror(-rc);
    return false;
  }
  ring_open_ = true;
  batch_waits_ = (params.features & kFeatureMinTimeout) != 0;
  if ((params.features & IORING_FEAT_EXT_ARG) == 0) {
    why = "io_uring: the kernel cannot wait with a timeout in one call (before Linux 5.11)";
    return false;
  }
  // Multishot recvmsg came with Linux 6.0, as did IORING_OP_SEND_ZC, which
  // the probe can see.
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  const bool recent = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
  if (probe != nullptr) io_uring_free_probe(probe);
  if (!recent) {
    why = "io_uring: multishot recvmsg needs Linux 6.0 or later";
    return false;
  }

  buffer_ring_octets_ = kBufferCount * sizeof(io_uring_buf);
  void* mapped = mmap(nullptr, buffer_ring_octets_, PROT_READ | PROT_WRITE,
                      MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mapped == MAP_FAILED) {
    why = std::string("io_uring: buffer ring: ") + std::strerror(errno);
    return false;
  }
  buffer_ring_ = static_cast<io_uring_buf_ring*>(mapped);
  io_uring_buf_reg registration{};
  registration.ring_addr = reinterpret_cast<std::uintptr_t>(buffer_ring_);
  registration.ring_entries = kBufferCount;
  registration.bgid = kBufferGroup;
  if (rc = io_uring_register_buf_ring(&ring_, &registration, 0); rc < 0) {
    why = std::string("io_uring: provided buffers: ") + std::strerror(-rc);
    return false;
  }
  buffers_.reset(new std::uint8_t[kBufferCount * kBufferOctets]);
  const int mask = io_uring_buf_ring_mask(kBufferCount);
  for (std::size_t i = 0; i < kBufferCount; ++i) {
    io_uring_buf_ring_add(buffer_ring_, buffers_.get() + i * kBufferOctets, kBufferOctets,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(buffer_ring_, kBufferCount);
  to_recycle_.reserve(kBufferCount);

  std::array<io_uring_restriction, 5> allowed{};
  const std::array<std::uint8_t, 4> operations{IORING_OP_RECVMSG, IORING_OP_SEND,
                                               IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL};
  for (std::size_t i = 0; i < operations.size(); ++i) {
    allowed[i].opcode = IORING_RESTRICTION_SQE_OP;
    allowed[i].sqe_op = operations[i];
  }
  allowed[4].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
  allowed[4].sqe_flags = IOSQE_BUFFER_SELECT | IOSQE_CQE_SKIP_SUCCESS;
  rc = register_on_ring(ring_, IORING_REGISTER_RESTRICTIONS, allowed.data(),
                        static_cast<unsigned>(allowed.size()));
  if (rc < 0) {
    why = std::string("io_uring: restrictions: ") + std::strerror(-rc);
    return false;
  }
  if (rc = register_on_ring(ring_, IORING_REGISTER_ENABLE_RINGS, nullptr, 0); rc < 0) {
    why = std::string("io_uring: enable: ") + std::strerror(-rc);
    return false;
  }

  send_arena_.reset(new std::uint8_t[kSendSlots * kSendSlotOctets]);
  destinations_.resize(kSendSlots);
  rearm_.reserve(16);
  return true;
}

DatagramRing::~DatagramRing() {
  // Exiting the ring cancels what is still in the kernel before the buffers go.
  if (ring_open_) io_uring_queue_exit(&ring_);
  if (buffer_ring_ != nullptr) munmap(buffer_ring_, buffer_ring_octets_);
}

// A full submission queue goes to the kernel to make room: what was queued
// is started, and its completions come with the turn's wait.
io_uring_sqe* DatagramRing::next_sqe() noexcept {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe != nullptr) return sqe;
  io_uring_submit(&ring_);
  submitted();
  return io_uring_get_sqe(&ring_);
}

// Every queued entry went through the kernel: the sends in them are done.
void DatagramRing::submitted() noexcept {
  if (io_uring_smp_load_acquire(ring_.sq.khead) == ring_.sq.sqe_tail) sends_queued_ = 0;
}

DatagramRing::Handle DatagramRing::watch(int fd, DatagramReceiver& receiver) {
  Handle handle = 0;
  while (handle < watches_.size() && watches_[handle].receiver != nullptr) ++handle;
  if (handle == watches_.size()) watches_.emplace_back();
  Watch& entry = watches_[handle];
  entry.receiver = &receiver;
  entry.fd = fd;
  ++entry.generation;
  entry.armed = false;
  entry.header = {};
  entry.header.msg_namelen = sizeof(sockaddr_storage);
  arm(handle);
  return handle;
}

void DatagramRing::arm(Handle handle) noexcept {
  Watch& entry = watches_[handle];
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) {
    rearm_.push_back(handle);  // tried again at the end of the turn
    return;
  }
  io_uring_prep_recvmsg_multishot(sqe, entry.fd, &entry.header, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(sqe, user_data(Kind::receive, handle, entry.generation));
  entry.armed = true;
}

void DatagramRing::unwatch(Handle handle) noexcept {
  if (handle >= watches_.size() || watches_[handle].receiver == nullptr) return;
  Watch& entry = watches_[handle];
  if (entry.armed) {
    if (io_uring_sqe* sqe = next_sqe()) {
      io_uring_prep_cancel64(sqe, user_data(Kind::receive, handle, entry.generation), 0);
      io_uring_sqe_set_data64(sqe, user_data(Kind::cancel, handle));
    }
    // The cancellation must reach the kernel before the socket is closed
    // and its number reused.
    io_uring_submit(&ring_);
    submitted();
  }
  // Completions still on their way find the generation changed and only
  // give their buffers back.
  entry.receiver = nullptr;
  entry.fd = -1;
  entry.armed = false;
  ++entry.generation;
}

DatagramRing::Watch* DatagramRing::live_watch(Handle handle, std::uint16_t generation) noexcept {
  if (handle >= watches_.size()) return nullptr;
  Watch& entry = watches_[handle];
  if (entry.receiver == nullptr || entry.generation != generation) return nullptr;
  return &entry;
}

bool DatagramRing::send(Handle owner, int fd, const sockaddr* to, socklen_t to_length,
                        std::span<const std::uint8_t> payload, std::uint16_t tag) noexcept {
  if (payload.size() > kSendSlotOctets || sends_queued_ == kSendSlots ||
      (to != nullptr && to_length > sizeof(sockaddr_storage))) {
    return false;
  }
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  const std::size_t index = sends_queued_++;
  std::uint8_t* data = send_arena_.get() + index * kSendSlotOctets;
  std::memcpy(data, payload.data(), payload.size());
  // A send with its destination (Linux 6.0), not a sendmsg: the kernel
  // then imports no msghdr and no iovec for each datagram.
  io_uring_prep_send(sqe, fd, data, payload.size(), MSG_DONTWAIT);
  if (to != nullptr) {
    sockaddr_storage& destination = destinations_[index];
    std::memcpy(&destination, to, to_length);
    io_uring_prep_send_set_addr(sqe, reinterpret_cast<const sockaddr*>(&destination),
                                static_cast<std::uint16_t>(to_length));
  }
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  // A failure names the owner and the tag: the slot is reused by then.
  const std::uint16_t generation = owner < watches_.size() ? watches_[owner].generation : 0;
  io_uring_sqe_set_data64(sqe, user_data(Kind::send, (owner & 0xffffU) << 16 | tag, generation));
  ++counters_.sent;
  return true;
}

void DatagramRing::poll_readable(int fd) noexcept {
  polled_fd_ = fd;
  if (poll_armed_) return;
  if (io_uring_sqe* sqe = next_sqe()) {
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, user_data(Kind::poll, 0));
    poll_armed_ = true;
  }
}

// What io_uring_submit_and_wait_timeout does, but with the minimum wait of
// a batch, which liburing 2.3 cannot pass: the queued entries are made
// visible to the kernel, then one io_uring_enter submits them and waits.
void DatagramRing::wait(std::chrono::milliseconds timeout) noexcept {
  io_uring_sq& queue = ring_.sq;
  if (queue.sqe_head != queue.sqe_tail) {
    queue.sqe_head = queue.sqe_tail;
    io_uring_smp_store_release(queue.ktail, queue.sqe_tail);
  }
  const unsigned to_submit = queue.sqe_tail - io_uring_smp_load_acquire(queue.khead);
  __kernel_timespec limit{};
  limit.tv_sec = timeout.count() / 1000;
  limit.tv_nsec = (timeout.count() % 1000) * 1000000;
  io_uring_getevents_arg argument{};
  argument.ts = reinterpret_cast<std::uint64_t>(&limit);
  unsigned wanted = io_uring_cq_ready(&ring_) > 0 ? 0 : 1;
  if (wanted == 1 && batch_waits_ && last_completions_ >= kBatchFrom) {
    wanted = std::min(last_completions_ / 2, kMaxBatchWait);
    argument.pad = kBatchWaitMicros;  // min_wait_usec in Linux 6.12's layout
  }
  // -ETIME, -EINTR: the caller's turn goes on without completions.
  syscall(__NR_io_uring_enter, ring_.ring_fd, to_submit, wanted,
          IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &argument, sizeof argument);
  submitted();
}

bool DatagramRing::dispatch(SteadyTime now) {
  bool readable = false;
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    if (kind_of(cqe->user_data) == Kind::poll) {
      poll_armed_ = false;
      readable = true;
    } else {
      complete(*cqe, now);
    }
  }
  io_uring_cq_advance(&ring_, seen);
  last_completions_ = seen;
  for (Watch& entry : watches_) {
    if (entry.receiver != nullptr) entry.receiver->on_turn_end(now);
  }
  // Only now are the payloads handed out this turn no longer looked at.
  if (!to_recycle_.empty()) {
    const int mask = io_uring_buf_ring_mask(kBufferCount);
    for (std::size_t i = 0; i < to_recycle_.size(); ++i) {
      io_uring_buf_ring_add(buffer_ring_, buffers_.get() + to_recycle_[i] * kBufferOctets,
                            kBufferOctets, to_recycle_[i], mask, static_cast<int>(i));
    }
    io_uring_buf_ring_advance(buffer_ring_, static_cast<int>(to_recycle_.size()));
    to_recycle_.clear();
  }
  if (!rearm_.empty()) {
    std::vector<Handle> again;
    again.swap(rearm_);
    for (const Handle handle : again) {
      if (handle < watches_.size() && watches_[handle].receiver != nullptr &&
          !watches_[handle].armed) {
        arm(handle);
        ++counters_.rearmed;
      }
    }
    again.clear();
    if (rearm_.empty()) rearm_.swap(again);  // keep the capacity
  }
  if (polled_fd_ >= 0 && readable) poll_readable(polled_fd_);
  return readable;
}

void DatagramRing::complete(const io_uring_cqe& cqe, SteadyTime now) {
  switch (kind_of(cqe.user_data)) {
    case Kind::receive:
      on_receive(index_of(cqe.user_data), cqe, now);
      return;
    case Kind::send: {
      const std::uint32_t owner_and_tag = index_of(cqe.user_data);
      Watch* owner = live_watch(owner_and_tag >> 16, generation_of(cqe.user_data));
      if (cqe.res < 0 && owner != nullptr) {
        owner->receiver->on_send_error(static_cast<std::uint16_t>(owner_and_tag), -cqe.res, now);
      }
      return;
    }
    case Kind::poll:
    case Kind::cancel:
      return;
  }
}

void DatagramRing::on_receive(Handle handle, const io_uring_cqe& cqe, SteadyTime now) {
  const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
  if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    to_recycle_.push_back(static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
  }
  Watch* entry = live_watch(handle, generation_of(cqe.user_data));
  if (entry == nullptr) return;  // unwatched since: the buffer only goes back
  if (!more) entry->armed = false;
  if (cqe.res >= 0 && (cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    std::uint8_t* buffer = buffers_.get() + (cqe.flags >> IORING_CQE_BUFFER_SHIFT) * kBufferOctets;
    io_uring_recvmsg_out* out =
        io_uring_recvmsg_validate(buffer, static_cast<int>(cqe.res), &entry->header);
    if (out != nullptr) {
      ++counters_.received;
      auto* payload = static_cast<std::uint8_t*>(io_uring_recvmsg_payload(out, &entry->header));
      const unsigned length =
          io_uring_recvmsg_payload_length(out, static_cast<int>(cqe.res), &entry->header);
      const socklen_t name_length =
          std::min<socklen_t>(out->namelen, static_cast<socklen_t>(sizeof(sockaddr_storage)));
      entry->receiver->on_datagram({payload, length},
                                   static_cast<const sockaddr*>(io_uring_recvmsg_name(out)),
                                   name_length, now);
      // The receiver may have unwatched: look again before arming.
      entry = live_watch(handle, generation_of(cqe.user_data));
    }
  } else if (cqe.res < 0 && cqe.res != -ENOBUFS && cqe.res != -ECANCELED) {
    entry->receiver->on_receive_error(-cqe.res, now);
    entry = live_watch(handle, generation_of(cqe.user_data));
    if (entry != nullptr && permanent(-cqe.res)) {
      unwatch(handle);
      return;
    }
  }
  // Out of buffers, an error reported, or the kernel ended the multishot for
  // its own reasons: arm again once this turn's buffers are back.
  if (entry != nullptr && !more) rearm_.push_back(handle);
}

}  // namespace dnsgate
