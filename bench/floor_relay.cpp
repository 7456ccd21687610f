// floor_relay: the least a UDP DNS forwarder can do, as the floor `make bench`
// measures every proxy against (bench/run.sh: "ratio to the floor relay").
//
//   floor_relay --listen 127.0.0.1:25556 --upstream 127.0.0.1:25500
//
// One thread, one listening socket, one socket connected to the upstream,
// epoll on both. It does the kernel work any forwarder pays (recvmmsg and
// sendmmsg with dnsgate's batch sizes: 32 datagrams a receive, up to 8
// receives a wake, up to 64 a send) and the one piece of bookkeeping no
// forwarder can skip: a fresh 16-bit id per query upstream, mapped back to
// the client's address and id when the answer comes. Nothing else: no DNS
// parsing, no policy, no events, no timeouts, no logging. A proxy's CPU per
// query over this one's is what its features cost.
//
// Ids come from a free list and go back to it when their answer comes; an
// answer that never comes keeps its id forever (no timeouts), and when the
// list is empty the query is dropped. Against a local knotd for a bench run
// that does not happen. SIGTERM or SIGINT stops it, exit status 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace {

// The same sizes as dnsgate's UDP path (src/net/datagram_batch.hpp,
// src/net/udp_send_batch.hpp, src/proxy/proxy_loop.cpp, src/net/socket.cpp),
// so the comparison is of the work per datagram, not of the batching.
constexpr std::size_t kReceiveBatch = 32;
constexpr std::size_t kReadsPerWake = 8;
constexpr std::size_t kSendBatch = 64;
constexpr std::size_t kMaxDatagram = 65536;
constexpr int kSocketBufferOctets = 4 * 1024 * 1024;
constexpr std::size_t kHeaderOctets = 12;  // a DNS header; anything shorter is not a message
constexpr std::size_t kIds = 65536;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "floor_relay: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// "A.B.C.D:PORT"; IPv4 is all the bench needs.
std::optional<sockaddr_in> parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string host(text.substr(0, colon));
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc{} || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return std::nullopt;
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) return std::nullopt;
  return address;
}

int udp_socket() {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket");
  // dnsgate asks for the same buffers (forced when it may); best effort.
  for (const int option : {SO_RCVBUF, SO_SNDBUF}) {
    const int forced = option == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
    if (setsockopt(fd, SOL_SOCKET, forced, &kSocketBufferOctets, sizeof kSocketBufferOctets) != 0) {
      setsockopt(fd, SOL_SOCKET, option, &kSocketBufferOctets, sizeof kSocketBufferOctets);
    }
  }
  return fd;
}

std::uint16_t read_id(const std::uint8_t* datagram) {
  return static_cast<std::uint16_t>(datagram[0] << 8 | datagram[1]);
}

void write_id(std::uint8_t* datagram, std::uint16_t id) {
  datagram[0] = static_cast<std::uint8_t>(id >> 8);
  datagram[1] = static_cast<std::uint8_t>(id);
}

// Receive buffers for recvmmsg, allocated once and left uninitialised (pages
// never written cost no memory), as dnsgate's DatagramBatch.
class ReceiveBatch {
 public:
  ReceiveBatch() : storage_(new std::uint8_t[kReceiveBatch * kMaxDatagram]) {}

  // Up to kReceiveBatch datagrams; 0 when none waits (or on an error, which
  // recvmmsg has then cleared from the socket).
  std::size_t receive(int fd) noexcept {
    for (std::size_t i = 0; i < kReceiveBatch; ++i) {
      iov_[i] = {storage_.get() + i * kMaxDatagram, kMaxDatagram};
      headers_[i] = {};
      headers_[i].msg_hdr.msg_name = &peers_[i];
      headers_[i].msg_hdr.msg_namelen = sizeof peers_[i];
      headers_[i].msg_hdr.msg_iov = &iov_[i];
      headers_[i].msg_hdr.msg_iovlen = 1;
    }
    while (true) {
      const int got = recvmmsg(fd, headers_.data(), kReceiveBatch, MSG_DONTWAIT, nullptr);
      if (got >= 0) return static_cast<std::size_t>(got);
      if (errno != EINTR) return 0;
    }
  }

  std::uint8_t* data(std::size_t i) noexcept { return storage_.get() + i * kMaxDatagram; }
  std::size_t size(std::size_t i) const noexcept { return headers_[i].msg_len; }
  const sockaddr_in& peer(std::size_t i) const noexcept { return peers_[i]; }

 private:
  std::unique_ptr<std::uint8_t[]> storage_;
  std::array<iovec, kReceiveBatch> iov_{};
  std::array<mmsghdr, kReceiveBatch> headers_{};
  std::array<sockaddr_in, kReceiveBatch> peers_{};
};

// Datagrams for one sendmmsg. Unlike dnsgate's UdpSendBatch it does not
// copy them: each send is flushed while the receive buffers it points into
// are still untouched, which a floor may rely on.
class SendBatch {
 public:
  bool full() const noexcept { return count_ == kSendBatch; }

  // `to` null: the socket is connected.
  void add(std::uint8_t* datagram, std::size_t size, const sockaddr_in* to) noexcept {
    iov_[count_] = {datagram, size};
    headers_[count_] = {};
    if (to != nullptr) {
      addresses_[count_] = *to;
      headers_[count_].msg_hdr.msg_name = &addresses_[count_];
      headers_[count_].msg_hdr.msg_namelen = sizeof addresses_[count_];
    }
    headers_[count_].msg_hdr.msg_iov = &iov_[count_];
    headers_[count_].msg_hdr.msg_iovlen = 1;
    ++count_;
  }

  // A datagram the kernel refuses is dropped, as UDP may, and handed to
  // on_drop (the caller frees its id); the rest still go.
  template <class OnDrop>
  void flush(int fd, OnDrop&& on_drop) noexcept {
    std::size_t sent = 0;
    while (sent < count_) {
      const int n = sendmmsg(fd, headers_.data() + sent, static_cast<unsigned>(count_ - sent), 0);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        on_drop(static_cast<const std::uint8_t*>(iov_[sent].iov_base));
        ++sent;
      }
    }
    count_ = 0;
  }

 private:
  std::array<iovec, kSendBatch> iov_{};
  std::array<mmsghdr, kSendBatch> headers_{};
  std::array<sockaddr_in, kSendBatch> addresses_{};
  std::size_t count_ = 0;
};

// Who asked for each upstream id, and the ids free to hand out.
class IdMap {
 public:
  IdMap() {
    // Handed out in order, so consecutive queries get different ids.
    for (std::size_t i = 0; i < kIds; ++i) free_[i] = static_cast<std::uint16_t>(kIds - 1 - i);
    free_count_ = kIds;
  }

  std::optional<std::uint16_t> take(const sockaddr_in& client, std::uint16_t client_id) noexcept {
    if (free_count_ == 0) return std::nullopt;
    const std::uint16_t id = free_[--free_count_];
    entries_[id] = {client, client_id, true};
    return id;
  }

  // The entry of `id`, freed; null when no query of ours has it (a late
  // duplicate, or not an answer of ours at all).
  const sockaddr_in* give_back(std::uint16_t id, std::uint16_t& client_id) noexcept {
    Entry& entry = entries_[id];
    if (!entry.used) return nullptr;
    entry.used = false;
    free_[free_count_++] = id;
    client_id = entry.client_id;
    return &entry.client;
  }

  void release(std::uint16_t id) noexcept {
    if (!entries_[id].used) return;
    entries_[id].used = false;
    free_[free_count_++] = id;
  }

 private:
  struct Entry {
    sockaddr_in client;
    std::uint16_t client_id;
    bool used;
  };
  std::array<Entry, kIds> entries_{};
  std::array<std::uint16_t, kIds> free_{};
  std::size_t free_count_ = 0;
};

class Relay {
 public:
  Relay(int listener, int upstream) : listener_(listener), upstream_(upstream) {}

  // Queries: a new id, off to the upstream (connected: no address). A query
  // the upstream socket refuses (ECONNREFUSED after an ICMP error, say) will
  // get no answer: its id is free again.
  void from_clients() {
    pump(
        listener_, upstream_,
        [this](std::uint8_t* datagram, const sockaddr_in& client, const sockaddr_in*&) {
          const auto id = ids_.take(client, read_id(datagram));
          if (!id) return false;  // every id waits for an answer: drop
          write_id(datagram, *id);
          return true;
        },
        [this](const std::uint8_t* datagram) { ids_.release(read_id(datagram)); });
  }

  // Answers: the client's id back, off to the client.
  void from_upstream() {
    pump(
        upstream_, listener_,
        [this](std::uint8_t* datagram, const sockaddr_in&, const sockaddr_in*& to) {
          std::uint16_t client_id = 0;
          to = ids_.give_back(read_id(datagram), client_id);
          if (to == nullptr) return false;
          write_id(datagram, client_id);
          return true;
        },
        [](const std::uint8_t*) {});
  }

 private:
  // Up to kReadsPerWake batches from `from` (level-triggered epoll wakes us
  // again for the rest), each datagram rewritten by route(datagram, sender,
  // destination), which returns false to drop it, then the batch sent on
  // `to` with one sendmmsg, on_drop(datagram) for any the kernel refuses.
  template <class Route, class OnDrop>
  void pump(int from, int to, Route&& route, OnDrop&& on_drop) {
    for (std::size_t round = 0; round < kReadsPerWake; ++round) {
      const std::size_t count = batch_.receive(from);
      for (std::size_t i = 0; i < count; ++i) {
        std::uint8_t* datagram = batch_.data(i);
        const sockaddr_in* destination = nullptr;
        if (batch_.size(i) < kHeaderOctets || !route(datagram, batch_.peer(i), destination)) {
          continue;
        }
        if (send_.full()) send_.flush(to, on_drop);
        send_.add(datagram, batch_.size(i), destination);
      }
      send_.flush(to, on_drop);
      if (count < kReceiveBatch) return;
    }
  }

  int listener_;
  int upstream_;
  ReceiveBatch batch_;
  SendBatch send_;
  IdMap ids_;
};

void usage() {
  std::fprintf(stderr, "usage: floor_relay --listen A.B.C.D:PORT --upstream A.B.C.D:PORT\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<sockaddr_in> listen_at;
  std::optional<sockaddr_in> upstream_at;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--listen") {
      listen_at = parse_endpoint(argv[i + 1]);
    } else if (flag == "--upstream") {
      upstream_at = parse_endpoint(argv[i + 1]);
    } else {
      usage();
    }
  }
  if (argc != 5 || !listen_at || !upstream_at) usage();

  // SIGTERM and SIGINT arrive as a readable signalfd, so stopping is one
  // more epoll event rather than a handler racing the loop. A shell starts
  // background jobs with SIGINT ignored, and an ignored signal is discarded
  // rather than left pending for the signalfd: back to the default first.
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &stop_signals, nullptr) != 0) fail("sigprocmask");
  const int signals = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signals < 0) fail("signalfd");

  const int listener = udp_socket();
  if (bind(listener, reinterpret_cast<const sockaddr*>(&*listen_at), sizeof *listen_at) != 0) {
    fail("bind");
  }
  // Connected: sendmmsg needs no address, and the kernel drops datagrams
  // from anyone but the upstream.
  const int upstream = udp_socket();
  if (connect(upstream, reinterpret_cast<const sockaddr*>(&*upstream_at), sizeof *upstream_at) !=
      0) {
    fail("connect");
  }

  const int epoll = epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) fail("epoll_create1");
  for (const int fd : {listener, upstream, signals}) {
    epoll_event event{};
    event.events = EPOLLIN;  // EPOLLERR is always reported; recvmmsg clears it
    event.data.fd = fd;
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0) fail("epoll_ctl");
  }

  // On the heap: the id table and the batches are a few hundred KiB.
  const auto relay = std::make_unique<Relay>(listener, upstream);
  std::array<epoll_event, 3> events{};
  while (true) {
    const int ready = epoll_wait(epoll, events.data(), static_cast<int>(events.size()), -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    for (int i = 0; i < ready; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      if (fd == signals) {
        close(epoll);
        close(upstream);
        close(listener);
        close(signals);
        return 0;
      }
      if (fd == listener) relay->from_clients();
      if (fd == upstream) relay->from_upstream();
    }
  }
}
