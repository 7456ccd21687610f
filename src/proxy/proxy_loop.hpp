// The proxy's event loop, shared by its files: proxy_loop.cpp (the loop,
// each query's verdict, the events), io_backend.cpp (epoll or io_uring: the
// turn's wait), workload_tcp.cpp (the workload's TCP connections),
// upstream_side.cpp (the resolvers: sending, answers, failures, failover)
// and dnssec_side.cpp (validation).
#pragma once

#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "dnsgate/metrics.hpp"
#include "dnsgate/proxy.hpp"
#include "dnsgate/response.hpp"
#include "dnsgate/socket.hpp"
#include "dnssec/validator.hpp"
#include "net/clock.hpp"
#include "net/datagram_batch.hpp"
#include "net/datagram_ring.hpp"
#include "net/frame_reader.hpp"
#include "net/peer_address.hpp"
#include "net/udp_send_batch.hpp"
#include "proxy/inflight_table.hpp"
#include "upstream/resolver_set.hpp"
#include "upstream/upstream.hpp"

namespace dnsgate {

// What an epoll event is about: the kind in the high half; in the low
// half a TCP client's connection slot, or a resolver's index and its
// descriptor slot.
enum class Source : std::uint32_t {
  udp_listener = 1,
  tcp_listener,
  upstream,
  tcp_client,
  wake,    // the stop eventfd
  reload,  // the config mailbox's eventfd
};

inline std::uint64_t tag(Source source, std::uint32_t index = 0) {
  return std::uint64_t{static_cast<std::uint32_t>(source)} << 32 | index;
}

// A workload's TCP connection: frames in, framed answers out.
struct TcpClient {
  UniqueFd socket;
  PeerAddress peer;
  std::uint32_t generation = 0;
  FrameReader reader;
  std::vector<std::uint8_t> out;
  std::size_t out_written = 0;
  std::size_t inflight = 0;
  SteadyTime last_activity{};
  SteadyTime frame_started{};
  bool frame_in_progress = false;
  bool reading = true;        // the loop reads this connection
  std::uint32_t watched = 0;  // the epoll events asked for
  bool open = false;
};

// A workload's datagram: its octets and who sent it.
struct WorkloadDatagram {
  std::span<std::uint8_t> packet;
  const PeerAddress* peer = nullptr;
};

// Who asked: where the answer goes.
struct ClientRef {
  Transport transport = Transport::udp;
  const PeerAddress* peer = nullptr;
  std::uint32_t connection = 0;
  std::uint32_t generation = 0;
};

class ProxyLoop {
 public:
  ProxyLoop(const DnsProxyConfig& config, const ProxySockets& sockets, DnsQueryEmitter& emitter,
            const ProxyHooks& hooks);
  ~ProxyLoop();
  ProxyLoop(const ProxyLoop&) = delete;
  ProxyLoop& operator=(const ProxyLoop&) = delete;

  DnsProxyStats run(const std::atomic<bool>& shutdown);

 private:
  struct Clock {
    SteadyTime steady;
    WallTime wall;
  };
  static Clock now() {
    return {std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
  }

  // One resolver as the loop sees it: the transport, and the listener
  // that tells the loop which resolver spoke.
  class ResolverPort final : public UpstreamListener {
   public:
    ResolverPort(ProxyLoop& loop, std::uint8_t index) : loop_(loop), index_(index) {}
    void on_answer(std::span<std::uint8_t> answer, SteadyTime now) override;
    void on_failure(std::uint16_t upstream_id, UpstreamError error, SteadyTime now) override;
    std::span<const std::uint8_t> pending_query(std::uint16_t upstream_id) noexcept override;

   private:
    ProxyLoop& loop_;
    std::uint8_t index_;
  };
  // The UDP listener on the io_uring backend: the ring hands it datagrams
  // one by one, it hands them to the loop in batches, as recvmmsg does.
  class ListenerPort final : public DatagramReceiver {
   public:
    explicit ListenerPort(ProxyLoop& loop) : loop_(loop) {}
    void on_datagram(std::span<std::uint8_t> payload, const sockaddr* source,
                     socklen_t source_length, SteadyTime now) override;
    void on_receive_error(int error, SteadyTime now) override;
    void on_send_error(std::uint16_t tag, int error, SteadyTime now) override;
    void on_turn_end(SteadyTime now) override;

   private:
    ProxyLoop& loop_;
    std::array<WorkloadDatagram, DatagramBatch::kBatch> gathered_{};
    std::array<PeerAddress, DatagramBatch::kBatch> peers_{};
    std::size_t count_ = 0;
  };
  // A slot of resolvers_: the resolvers of the config in force, and those a
  // reload left out, which retire once no query in flight names them.
  // An empty slot has no upstream.
  struct Resolver {
    std::unique_ptr<ResolverPort> port;
    std::unique_ptr<Upstream> upstream;
    std::vector<IoInterest> registered;           // what epoll watches, by slot
    UpstreamCounters counted;                     // the loop's share: queries, answers, failures
    std::shared_ptr<const DnsProxyConfig> owner;  // keeps `config` alive while retired
    const ResolverConfig* config = nullptr;
    std::size_t position = 0;  // in the config in force's list (ResolverSet's index)
    bool retired = false;
    ResolverMetrics* metrics = nullptr;
    std::uint64_t downs_published = 0;  // of resolver_set_.times_down(position)
  };
  static constexpr std::size_t kNoResolver = ResolverSet::kNone;
  // Slot indexes are 8 bits in queries and epoll tags.
  static constexpr std::size_t kMaxResolverSlots = 255;

  // proxy_loop.cpp: the verdict on each query, synthesized answers, events.
  void read_datagrams(const Clock& now);
  void handle_datagrams(std::span<const WorkloadDatagram> batch, const Clock& now);
  bool handle_query(std::span<std::uint8_t> packet, const ClientRef& client, const Clock& now);
  bool decide(std::span<std::uint8_t> packet, const ParseResult<ParsedQuery>& parsed,
              const ClientRef& client, const Clock& now, const bool* allowed);
  void choose_io_backend();
  void stop_listening();
  int wait_for_io(std::chrono::milliseconds timeout, std::span<epoll_event> ready);
  bool deliver(const ClientRef& client, std::span<const std::uint8_t> answer);
  void send_to_client_now(const PeerAddress& peer, std::span<const std::uint8_t> answer);
  void flush_to_clients();
  void flush_sends(const Clock& now);
  void answer_locally(const QueryEcho& echo, const ClientRef& client, Rcode rcode,
                      ExtendedError ede);
  QueryRecord record_of(const InflightQuery& query, const Clock& now) const;
  void emit(const QueryRecord& record);
  ClientRef client_ref(const InflightQuery& query) const noexcept;
  void release(InflightQuery& query);
  void expire(const Clock& now);
  void finish(InflightQuery& query, ReasonCode reason, const Clock& now);
  SteadyTime next_wake(SteadyTime now, SteadyTime drain_until, SteadyTime next_sweep) const;
  void dispatch(const epoll_event& ready, const Clock& now);

  // workload_tcp.cpp: the workload's TCP connections.
  void accept_connections(const Clock& now);
  void on_client_event(std::uint32_t index, std::uint32_t events, const Clock& now);
  void read_frames(TcpClient& client, std::uint32_t index, const Clock& now);
  bool handle_frames(TcpClient& client, std::uint32_t index, const Clock& now);
  void flush_client(TcpClient& client, std::uint32_t index);
  void close_client(TcpClient& client, std::uint32_t index);
  void update_client_interest(TcpClient& client, std::uint32_t index);
  void sweep_connections(const Clock& now);
  void resume_clients(const Clock& now);
  void stop_reading_clients();
  void close_all_clients();
  TcpClient* client_of(std::uint32_t connection, std::uint32_t generation) noexcept;

  // upstream_side.cpp: the resolvers.
  void open_resolvers(const ProxySockets& sockets);
  void send_upstream(InflightQuery& query, const Clock& now);
  bool try_resolver(InflightQuery& query, std::size_t resolver, const Clock& now);
  void on_upstream_answer(std::uint8_t resolver, std::span<std::uint8_t> packet, const Clock& now);
  void relay_answer(InflightQuery& query, std::span<const std::uint8_t> answer, DnssecState dnssec,
                    const Clock& now);
  void on_upstream_failure(std::uint8_t resolver, std::uint16_t upstream_id, UpstreamError error,
                           const Clock& now);
  void on_upstream_io(std::uint32_t index, std::uint32_t events, const Clock& now);
  void sync_interest(std::size_t resolver);
  void run_upstream_timers(const Clock& now);
  void flush_upstreams(const Clock& now);
  SteadyTime next_upstream_timer() const noexcept;
  void collect_upstream_stats();
  bool put_resolvers_in_force(const std::shared_ptr<const DnsProxyConfig>& config, int udp_fd);
  std::size_t position_of(std::size_t slot) const noexcept;
  std::size_t choose_resolver(const InflightQuery& query, const Clock& now);
  void reap_retired();
  void unsend(InflightQuery& query);

  // Hot reload (DESIGN §12), proxy_loop.cpp.
  void take_reload();
  void take_reload_if_posted();
  void publish_metrics(const Clock& now);

  // dnssec_side.cpp: validation (DESIGN §9), and the fetches of chain
  // material it asks for, which travel through the same resolvers.
  void open_validator();
  void ask_for_dnssec(InflightQuery& query, bool checking_disabled);
  void on_checked_answer(InflightQuery& query, std::span<std::uint8_t> packet, const Clock& now);
  void evaluate_held(InflightQuery& query, const Clock& now);
  void conclude(InflightQuery& query, const dnssec::Verdict& verdict, const Clock& now);
  void relay_shaped(InflightQuery& query, std::span<const std::uint8_t> packet,
                    const dnssec::Verdict& verdict, const Clock& now);
  void wait_for_chain(InflightQuery& waiter, const dnssec::ChainNeed& need, const Clock& now);
  void end_fetch(InflightQuery& fetch, bool resume_waiters, const Clock& now);
  void resume(const std::vector<std::pair<std::uint16_t, std::uint32_t>>& waiters,
              const Clock& now);
  std::uint32_t validator_now(const Clock& now) const;

  // The config in force; the caller's at start (not owned), then each
  // reload's. Queries in flight keep what they need of an older one.
  std::shared_ptr<const DnsProxyConfig> config_owner_;
  const DnsProxyConfig* config_;
  std::uint64_t policy_version_ = 0;
  ProxyHooks hooks_;
  std::shared_ptr<const DnsProxyConfig> deferred_reload_;  // waits for free resolver slots
  Clock turn_clock_{};  // read once per turn of the loop; transports' callbacks use it
  int udp_listener_;
  int tcp_listener_;
  DnsQueryEmitter& emitter_;
  InflightTable table_;
  DnsProxyStats stats_;
  DatagramBatch batch_;
  UdpSendBatch to_clients_;
  std::array<std::uint8_t, kMaxSynthesizedOctets> synthesized_{};
  std::vector<std::uint8_t> scratch_;

  std::vector<Resolver> resolvers_;
  std::vector<std::size_t> in_force_;  // position in the config -> slot
  std::uint32_t resolver_generation_ = 0;
  std::size_t retired_ = 0;                // slots retired and not yet reaped
  UpstreamCounters reaped_;                // what reaped transports counted (unsolicited, connects)
  std::deque<ResolverMetrics> unboarded_;  // resolvers' figures when no board is attached
  ResolverSet resolver_set_;

  // With dnssec.mode validate: the validator, and the chain fetches in
  // flight, each with the slots (upstream id, serial) waiting on it.
  struct ChainFetch {
    std::uint16_t upstream_id = 0;
    std::uint32_t serial = 0;
    std::vector<std::pair<std::uint16_t, std::uint32_t>> waiters;
  };
  std::unique_ptr<dnssec::Validator> validator_;
  std::unordered_map<std::string, ChainFetch> fetches_;
  std::uint32_t next_serial_ = 0;
  std::vector<std::uint8_t> shaped_;

  UniqueFd epoll_;
  // The io_uring backend (config `io`); null on epoll. Made before the
  // resolvers, whose do53-udp sockets it carries too.
  std::unique_ptr<DatagramRing> ring_;
  ListenerPort listener_port_{*this};
  DatagramRing::Handle listener_handle_ = DatagramRing::kNoHandle;
  // One receive batch's parsed queries and verdicts (batched policy).
  std::array<std::optional<ParseResult<ParsedQuery>>, DatagramBatch::kBatch> parsed_;
  std::array<const QueryName*, DatagramBatch::kBatch> batch_names_{};
  std::array<bool, DatagramBatch::kBatch> batch_allowed_{};
  std::array<std::uint8_t, DatagramBatch::kBatch> batch_verdict_{};
  std::vector<std::unique_ptr<TcpClient>> clients_;
  std::vector<std::uint32_t> free_clients_;
  std::vector<std::uint32_t> resumed_clients_;
  std::size_t open_clients_ = 0;
  bool draining_ = false;
};

}  // namespace dnsgate
