// The do53-tcp upstream: DNS over one pipelined TCP connection (RFC 7766).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dnsgate/endpoint.hpp"
#include "dnsgate/socket.hpp"
#include "net/frame_reader.hpp"

namespace dnsgate {

// One connection to the resolver, opened on first use and again after the
// resolver closes it. Queries are written back to back without waiting for
// answers; answers come back in any order and are matched by id by the
// caller. Each connection has a generation number so the caller can tell
// which queries were sent on a connection that has gone.
class Do53TcpUpstream {
 public:
  explicit Do53TcpUpstream(const Endpoint& resolver) : resolver_(resolver) {}

  const Endpoint& resolver() const noexcept { return resolver_; }
  int fd() const noexcept { return socket_.get(); }
  std::uint32_t generation() const noexcept { return generation_; }
  bool open() const noexcept { return socket_.valid(); }
  // True while connecting or while written queries wait for the socket.
  bool wants_write() const noexcept { return connecting_ || pending_ > 0; }

  // Queues `query` (framed) and opens the connection if there is none.
  // Returns 0, or the errno of a connection that failed at once.
  int send(std::span<const std::uint8_t> query) noexcept;

  // `unreachable`: the connection could not be made; `failed`: an
  // established connection is gone.
  enum class Status { ok, failed, unreachable };

  // The socket is writable: finish connecting, then write what is queued.
  Status on_writable() noexcept;

  // The socket is readable: appends every complete answer to `answers`
  // (spans valid until the next call). `failed` means the connection is
  // gone (closed by the resolver, or an error); it is closed here.
  Status on_readable(std::vector<std::span<std::uint8_t>>& answers) noexcept;

  void close() noexcept;

  std::uint64_t connects() const noexcept { return connects_; }

  // Answers received on the current (or just lost) connection: a resolver
  // that answers and then closes is making progress, one that closes
  // without answering is not.
  std::uint64_t answers_on_connection() const noexcept { return answers_on_connection_; }

 private:
  Status flush() noexcept;

  Endpoint resolver_;
  UniqueFd socket_;
  bool connecting_ = false;
  std::uint32_t generation_ = 0;
  std::uint64_t connects_ = 0;
  std::uint64_t answers_on_connection_ = 0;
  FrameReader reader_;
  std::vector<std::uint8_t> out_;
  std::size_t written_ = 0;  // octets of out_ already written
  std::size_t pending_ = 0;  // octets of out_ not yet written
};

}  // namespace dnsgate
