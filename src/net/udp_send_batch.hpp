// UdpSendBatch: datagrams gathered while a batch of input is handled, then
// handed to the kernel with one sendmmsg(2) instead of one sendto(2) each.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

namespace dnsgate {

class UdpSendBatch {
 public:
  static constexpr std::size_t kEntries = 64;
  static constexpr std::size_t kSlotOctets = 4096;  // larger datagrams go out at once, alone

  // The copies live in an arena allocated once and left uninitialised, so
  // pages never written cost no memory.
  UdpSendBatch() : arena_(new std::uint8_t[kEntries * kSlotOctets]) {}

  bool empty() const noexcept { return count_ == 0; }
  bool full() const noexcept { return count_ == kEntries; }

  // Copies the datagram and its destination (none, for a connected socket:
  // `to` null); false when it does not fit a slot (the caller sends it
  // itself) or the batch is full.
  bool add(const sockaddr* to, socklen_t length, std::span<const std::uint8_t> payload,
           std::uint16_t tag) noexcept {
    if (count_ == kEntries || payload.size() > kSlotOctets || length > sizeof(sockaddr_storage)) {
      return false;
    }
    std::uint8_t* slot = arena_.get() + count_ * kSlotOctets;
    std::memcpy(slot, payload.data(), payload.size());
    iov_[count_] = {slot, payload.size()};
    headers_[count_] = {};
    if (to != nullptr) {
      std::memcpy(&addresses_[count_], to, length);
      headers_[count_].msg_hdr.msg_name = &addresses_[count_];
      headers_[count_].msg_hdr.msg_namelen = length;
    }
    headers_[count_].msg_hdr.msg_iov = &iov_[count_];
    headers_[count_].msg_hdr.msg_iovlen = 1;
    tags_[count_] = tag;
    ++count_;
    return true;
  }

  // Sends everything queued on `fd`; for each datagram the kernel would not
  // take, calls on_error(tag, errno) and goes on with the next.
  template <class OnError>
  void flush(int fd, OnError&& on_error) {
    std::size_t sent = 0;
    while (sent < count_) {
      const int n = sendmmsg(fd, headers_.data() + sent, static_cast<unsigned>(count_ - sent), 0);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        on_error(tags_[sent], n < 0 ? errno : EIO);
        ++sent;
      }
    }
    count_ = 0;
  }

 private:
  std::unique_ptr<std::uint8_t[]> arena_;
  std::array<sockaddr_storage, kEntries> addresses_{};
  std::array<iovec, kEntries> iov_{};
  std::array<mmsghdr, kEntries> headers_{};
  std::array<std::uint16_t, kEntries> tags_{};
  std::size_t count_ = 0;
};

}  // namespace dnsgate
