#include "upstream/do53_tcp.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace dnsgate {

int Do53TcpUpstream::send(std::span<const std::uint8_t> query) noexcept {
  if (!socket_.valid()) {
    UniqueFd fd(socket(resolver_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return errno;
    const int on = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    sockaddr_storage address{};
    const socklen_t length = resolver_.to_sockaddr(address);
    ++connects_;
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0 &&
        errno != EINPROGRESS) {
      return errno;
    }
    socket_ = std::move(fd);
    connecting_ = true;
    ++generation_;
    answers_on_connection_ = 0;
    out_.clear();
    written_ = pending_ = 0;
    reader_ = FrameReader{};
  }
  append_frame(out_, query);
  pending_ += 2 + query.size();
  if (connecting_) return 0;
  return flush() == Status::ok ? 0 : ECONNRESET;
}

Do53TcpUpstream::Status Do53TcpUpstream::flush() noexcept {
  while (pending_ > 0) {
    const ssize_t sent = ::send(socket_.get(), out_.data() + written_, pending_, MSG_NOSIGNAL);
    if (sent > 0) {
      written_ += static_cast<std::size_t>(sent);
      pending_ -= static_cast<std::size_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::ok;
    close();
    return Status::failed;
  }
  out_.clear();
  written_ = 0;
  return Status::ok;
}

Do53TcpUpstream::Status Do53TcpUpstream::on_writable() noexcept {
  if (!socket_.valid()) return Status::ok;
  if (connecting_) {
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(socket_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
      close();
      return Status::unreachable;
    }
    connecting_ = false;
  }
  return flush();
}

Do53TcpUpstream::Status Do53TcpUpstream::on_readable(
    std::vector<std::span<std::uint8_t>>& answers) noexcept {
  answers.clear();
  if (!socket_.valid()) return Status::ok;
  switch (reader_.read_from(socket_.get())) {
    case FrameReader::ReadStatus::data:
    case FrameReader::ReadStatus::would_block:
      break;
    case FrameReader::ReadStatus::closed:
    case FrameReader::ReadStatus::error:
      // Answers that arrived complete before the close still count.
      while (auto frame = reader_.next_frame()) answers.push_back(*frame);
      answers_on_connection_ += answers.size();
      close();
      return Status::failed;
  }
  while (auto frame = reader_.next_frame()) answers.push_back(*frame);
  answers_on_connection_ += answers.size();
  return Status::ok;
}

void Do53TcpUpstream::close() noexcept {
  socket_ = UniqueFd{};
  connecting_ = false;
  out_.clear();
  written_ = pending_ = 0;
}

}  // namespace dnsgate
