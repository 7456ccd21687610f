// The do53-udp and do53-tcp resolvers behind the Upstream interface.
#pragma once

#include <memory>
#include <vector>

#include "dnsgate/config.hpp"
#include "dnsgate/socket.hpp"
#include "net/datagram_batch.hpp"
#include "net/datagram_ring.hpp"
#include "net/udp_send_batch.hpp"
#include "upstream/do53_tcp.hpp"
#include "upstream/do53_udp.hpp"
#include "upstream/stream_queries.hpp"
#include "upstream/upstream.hpp"

namespace dnsgate {

// Plain DNS to one resolver. A do53-udp resolver takes the queries of UDP
// workloads over UDP (batched with sendmmsg) and those of TCP workloads
// over one pipelined TCP connection, so a workload that retried over TCP
// after TC=1 gets the full answer; a do53-tcp resolver takes all of them
// over TCP.
// On the io_uring backend (`ring` given) the UDP side's datagrams travel
// through the ring instead of recvmmsg/sendmmsg, and epoll sees only the
// TCP side.
class Do53Upstream final : public Upstream, private DatagramReceiver {
 public:
  // `udp_fd`: a socket the caller bound for the UDP side (not owned), or -1
  // to open one here when it is needed.
  Do53Upstream(const ResolverConfig& resolver, int udp_fd, UpstreamListener& listener,
               DatagramRing* ring = nullptr);
  ~Do53Upstream() override;
  Do53Upstream(const Do53Upstream&) = delete;
  Do53Upstream& operator=(const Do53Upstream&) = delete;

  UpstreamError send(std::span<const std::uint8_t> query, Transport client,
                     SteadyTime now) override;
  void cancel(std::uint16_t upstream_id) noexcept override;
  void flush(SteadyTime now) override;
  std::size_t io_slots() const noexcept override { return 2; }
  IoInterest io_interest(std::size_t slot) const noexcept override;
  void on_io(std::size_t slot, std::uint32_t events, SteadyTime now) override;
  // Only the TCP side (and the UDP socket's opening) changes what epoll
  // watches: a UDP query or answer does not, so the hot path skips the sync.
  bool interest_changed() const noexcept override { return interest_changed_; }
  void interest_synced() noexcept override { interest_changed_ = false; }
  SteadyTime next_timer() const noexcept override { return lost_ != 0 ? SteadyTime{} : kNever; }
  void on_timer(SteadyTime now) override;
  UpstreamCounters counters() const noexcept override;

 private:
  enum : std::size_t { kUdpSlot = 0, kTcpSlot = 1 };

  bool open_udp();
  void watch_udp();
  void on_datagram(std::span<std::uint8_t> payload, const sockaddr* source, socklen_t source_length,
                   SteadyTime now) override;
  void on_receive_error(int error, SteadyTime now) override;
  void on_send_error(std::uint16_t tag, int error, SteadyTime now) override;
  void read_udp_answers(SteadyTime now);
  void read_udp_errors(SteadyTime now);
  void on_tcp_event(std::uint32_t events, SteadyTime now);
  void tcp_lost(std::uint32_t generation, SteadyTime now);
  void fail_tcp_generation(std::uint32_t generation, UpstreamError error, SteadyTime now);

  Endpoint address_;
  bool udp_allowed_;
  UpstreamListener& listener_;
  DatagramRing* ring_;
  DatagramRing::Handle ring_handle_ = DatagramRing::kNoHandle;
  UniqueFd owned_udp_;
  std::unique_ptr<Do53UdpUpstream> udp_;
  std::unique_ptr<DatagramBatch> datagrams_;  // the UDP side's receive buffers
  UdpSendBatch to_resolver_;
  std::vector<std::uint8_t> over_udp_;  // by upstream id: 1 while the query waits on UDP
  Do53TcpUpstream tcp_;
  StreamQueries tcp_queries_;
  std::vector<std::span<std::uint8_t>> tcp_answers_;
  bool interest_changed_ = true;
  std::uint32_t lost_ = 0;  // a TCP connection broke during send(): handled on the next timer
  UpstreamCounters counters_;
};

}  // namespace dnsgate
