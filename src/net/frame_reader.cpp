#include "net/frame_reader.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dnsgate {

namespace {
constexpr std::size_t kInitialBuffer = 4096;
constexpr std::size_t kLengthPrefix = 2;
}  // namespace

std::size_t FrameReader::needed() const noexcept {
  const std::size_t held = end_ - begin_;
  if (held < kLengthPrefix) return kLengthPrefix;
  return kLengthPrefix + (std::size_t{buffer_[begin_]} << 8 | buffer_[begin_ + 1]);
}

FrameReader::ReadStatus FrameReader::read_from(int fd) noexcept {
  if (begin_ == end_) begin_ = end_ = 0;
  if (buffer_.size() < kInitialBuffer) buffer_.resize(kInitialBuffer);
  if (end_ == buffer_.size()) {
    // Move the unfinished message to the front, then make room for all of it.
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    if (end_ == buffer_.size()) buffer_.resize(std::max(buffer_.size(), needed()));
    if (end_ == buffer_.size()) buffer_.resize(buffer_.size() + kInitialBuffer);
  }
  while (true) {
    const ssize_t got = ::read(fd, buffer_.data() + end_, buffer_.size() - end_);
    if (got > 0) {
      end_ += static_cast<std::size_t>(got);
      return ReadStatus::data;
    }
    if (got == 0) return ReadStatus::closed;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? ReadStatus::would_block : ReadStatus::error;
  }
}

void FrameReader::feed(std::span<const std::uint8_t> octets) {
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buffer_.size() < end_ + octets.size()) buffer_.resize(end_ + octets.size());
  std::memcpy(buffer_.data() + end_, octets.data(), octets.size());
  end_ += octets.size();
}

std::optional<std::span<std::uint8_t>> FrameReader::next_frame() noexcept {
  const std::size_t held = end_ - begin_;
  if (held < kLengthPrefix || held < needed()) return std::nullopt;
  const std::size_t length = needed() - kLengthPrefix;
  std::span<std::uint8_t> frame{buffer_.data() + begin_ + kLengthPrefix, length};
  begin_ += kLengthPrefix + length;
  return frame;
}

void append_frame(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> message) {
  out.push_back(static_cast<std::uint8_t>(message.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(message.size()));
  out.insert(out.end(), message.begin(), message.end());
}

}  // namespace dnsgate
