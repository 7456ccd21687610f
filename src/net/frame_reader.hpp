// FrameReader: reassembles RFC 7766 length-prefixed DNS messages from a
// TCP byte stream, however the stream is cut.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace dnsgate {

class FrameReader {
 public:
  enum class ReadStatus { data, would_block, closed, error };

  // One read(2) into the free space; grows the buffer only as far as the
  // frame being assembled needs (at most 2 + 65535 octets).
  ReadStatus read_from(int fd) noexcept;

  // Takes octets that came some other way (out of TLS): as read_from().
  void feed(std::span<const std::uint8_t> octets);

  // The next complete message (without its length prefix), if one has
  // arrived. The span stays valid until the next read_from() or feed().
  std::optional<std::span<std::uint8_t>> next_frame() noexcept;

  // True when some octets of a message that has not yet ended are held.
  bool frame_begun() const noexcept { return end_ > begin_; }

 private:
  std::size_t needed() const noexcept;

  std::vector<std::uint8_t> buffer_;
  std::size_t begin_ = 0;  // first octet not yet handed out
  std::size_t end_ = 0;    // one past the last octet read
};

// Appends `message` with its 2-octet length prefix to `out`.
void append_frame(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> message);

}  // namespace dnsgate
