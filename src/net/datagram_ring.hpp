// DatagramRing: the io_uring backend's UDP side (docs/performance.md, "The
// io_uring backend"). Each watched socket has one multishot recvmsg that
// fills buffers from a shared provided-buffer ring, so datagrams arrive
// without a system call each; sends are queued as send entries and reach
// the kernel with the wait of the next turn. One io_uring_enter per turn
// carries all of it. Everything else (TCP, TLS, QUIC, timers) stays on
// epoll, whose descriptor the ring polls.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "net/clock.hpp"

namespace dnsgate {

// Who is told of a watched socket's datagrams and failures. Calls come only
// from DatagramRing::turn().
class DatagramReceiver {
 public:
  DatagramReceiver() = default;
  DatagramReceiver(const DatagramReceiver&) = delete;
  DatagramReceiver& operator=(const DatagramReceiver&) = delete;

  // One datagram; `payload` stays valid until the end of the turn.
  virtual void on_datagram(std::span<std::uint8_t> payload, const sockaddr* source,
                           socklen_t source_length, SteadyTime now) = 0;
  // The socket reported an error (with IP_RECVERR, an ICMP message is
  // waiting in its error queue); receiving goes on.
  virtual void on_receive_error(int error, SteadyTime now) = 0;
  // A datagram queued with `tag` was not sent.
  virtual void on_send_error(std::uint16_t tag, int error, SteadyTime now) = 0;
  // The turn's datagrams have all been handed over (a receiver gathering a
  // batch handles the rest now).
  virtual void on_turn_end(SteadyTime now) { (void)now; }

 protected:
  ~DatagramReceiver() = default;
};

class DatagramRing {
 public:
  using Handle = std::uint32_t;
  static constexpr Handle kNoHandle = UINT32_MAX;

  // A ring, or null with `why` set when io_uring cannot be used here (an
  // old kernel, a seccomp profile that forbids io_uring_setup, a sysctl
  // that disables it, an opcode the kernel lacks).
  static std::unique_ptr<DatagramRing> open(std::string& why);
  ~DatagramRing();
  DatagramRing(const DatagramRing&) = delete;
  DatagramRing& operator=(const DatagramRing&) = delete;

  // Receives `fd`'s datagrams for `receiver` until unwatch().
  Handle watch(int fd, DatagramReceiver& receiver);
  // No call reaches the receiver after this; the socket may be closed.
  void unwatch(Handle handle) noexcept;

  // Queues one datagram on `fd` (`to` null for a connected socket), copied;
  // a failure comes back to `owner`'s receiver with `tag`. False when it
  // cannot be queued (larger than a slot, every slot in use): the caller
  // sends it itself.
  bool send(Handle owner, int fd, const sockaddr* to, socklen_t to_length,
            std::span<const std::uint8_t> payload, std::uint16_t tag) noexcept;

  // Also wakes the turn when `fd` (the loop's epoll) becomes readable.
  void poll_readable(int fd) noexcept;

  // Submits what was queued and waits until something completes or
  // `timeout` passes (0: does not wait).
  void wait(std::chrono::milliseconds timeout) noexcept;
  // Hands every completion to its receiver, then gives the turn's buffers
  // back to the kernel and arms again what stopped. True when the polled
  // descriptor was reported readable.
  bool dispatch(SteadyTime now);

  // Datagrams received and sends queued over the ring's life, and the
  // times a socket's receive ran out of buffers and was armed again.
  struct Counters {
    std::uint64_t received = 0;
    std::uint64_t sent = 0;
    std::uint64_t rearmed = 0;
  };
  const Counters& counters() const noexcept { return counters_; }

 private:
  struct Watch {
    DatagramReceiver* receiver = nullptr;
    int fd = -1;
    std::uint16_t generation = 0;
    bool armed = false;  // a multishot receive is in the kernel
    msghdr header{};     // what each receive may fill: the source, no control
  };

  DatagramRing() = default;
  bool setup(std::string& why);
  io_uring_sqe* next_sqe() noexcept;
  void submitted() noexcept;
  void arm(Handle handle) noexcept;
  void complete(const io_uring_cqe& cqe, SteadyTime now);
  void on_receive(Handle handle, const io_uring_cqe& cqe, SteadyTime now);
  Watch* live_watch(Handle handle, std::uint16_t generation) noexcept;

  io_uring ring_{};
  bool ring_open_ = false;
  // The provided buffers: a ring of buffer ids the kernel takes from, and
  // the buffers themselves, returned to the kernel at the end of each turn.
  io_uring_buf_ring* buffer_ring_ = nullptr;
  std::size_t buffer_ring_octets_ = 0;
  std::unique_ptr<std::uint8_t[]> buffers_;
  std::vector<std::uint16_t> to_recycle_;

  std::vector<Watch> watches_;
  std::vector<Handle> rearm_;
  std::unique_ptr<std::uint8_t[]> send_arena_;
  std::vector<sockaddr_storage> destinations_;  // by send slot
  std::size_t sends_queued_ = 0;                // slots in use since the last submission

  bool batch_waits_ = false;       // the kernel has IORING_FEAT_MIN_TIMEOUT
  unsigned last_completions_ = 0;  // in the last dispatch: sizes the next wait
  int polled_fd_ = -1;
  bool poll_armed_ = false;
  Counters counters_;
};

}  // namespace dnsgate
