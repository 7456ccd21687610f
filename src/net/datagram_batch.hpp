// DatagramBatch: receive buffers for recvmmsg(2), allocated once.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "net/peer_address.hpp"

namespace dnsgate {

class DatagramBatch {
 public:
  static constexpr std::size_t kBatch = 32;           // datagrams per recvmmsg
  static constexpr std::size_t kMaxDatagram = 65536;  // the largest UDP payload, rounded up

  // The buffers are left uninitialised so untouched pages cost no memory.
  DatagramBatch() : storage_(new std::uint8_t[kBatch * kMaxDatagram]) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      iov_[i] = {storage_.get() + i * kMaxDatagram, kMaxDatagram};
    }
  }

  // Receives up to kBatch datagrams; returns how many (0 when none waits).
  std::size_t receive(int fd) noexcept {
    for (std::size_t i = 0; i < kBatch; ++i) {
      headers_[i] = {};
      headers_[i].msg_hdr.msg_name = &peers_[i].storage;
      headers_[i].msg_hdr.msg_namelen = sizeof peers_[i].storage;
      headers_[i].msg_hdr.msg_iov = &iov_[i];
      headers_[i].msg_hdr.msg_iovlen = 1;
    }
    while (true) {
      const int got = recvmmsg(fd, headers_.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (got >= 0) {
        for (int i = 0; i < got; ++i) peers_[i].length = headers_[i].msg_hdr.msg_namelen;
        return static_cast<std::size_t>(got);
      }
      if (errno == EINTR) continue;
      return 0;  // EAGAIN, or an error the caller learns of through EPOLLERR
    }
  }

  std::span<std::uint8_t> datagram(std::size_t i) noexcept {
    return {storage_.get() + i * kMaxDatagram, headers_[i].msg_len};
  }
  const PeerAddress& peer(std::size_t i) const noexcept { return peers_[i]; }

 private:
  std::unique_ptr<std::uint8_t[]> storage_;
  std::array<iovec, kBatch> iov_{};
  std::array<mmsghdr, kBatch> headers_{};
  std::array<PeerAddress, kBatch> peers_{};
};

}  // namespace dnsgate
