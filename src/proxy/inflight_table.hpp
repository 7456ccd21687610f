// InflightTable: the queries sent upstream and not yet answered.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dnsgate/events.hpp"
#include "dnsgate/parser.hpp"
#include "dnsgate/response.hpp"
#include "dnsgate/upstream_error.hpp"
#include "dnssec/validator.hpp"
#include "net/clock.hpp"
#include "net/peer_address.hpp"

namespace dnsgate {

// Everything needed to relay the answer, synthesize a SERVFAIL, write the
// event, or send the query again (on a new connection, to the next resolver).
struct InflightQuery {
  Transport client_transport = Transport::udp;
  std::uint32_t connection = 0;             // the TCP client's connection slot
  std::uint32_t connection_generation = 0;  // tells a reused slot from the original
  bool sent = false;                        // handed to `resolver`, which must be told when it ends
  bool forwarded = false;     // handed to some resolver at least once (counted in `forwarded`)
  std::uint8_t resolver = 0;  // the loop's resolver slot it waits on (or last tried)
  std::uint32_t resolvers_tried = 0;      // a bit per position in the config's resolver list
  std::uint32_t resolver_generation = 0;  // the resolver list `resolvers_tried` refers to
  std::uint64_t policy_version = 0;       // the allowlist that let it through (its event says)
  SteadyTime sent_at{};                   // to `resolver`: the upstream latency counts from here
  SteadyTime answer_arrived{};            // validation time counts from here (with dnssec)
  UpstreamError last_error;               // why the previous resolver failed it, if one did
  std::uint16_t udp_answer_limit = 512;   // the largest answer a UDP client can take
  // The query as the resolvers get it (the upstream id in place of the
  // workload's); the slot keeps the capacity, so reuse allocates nothing.
  std::vector<std::uint8_t> upstream_query;
  std::uint16_t client_id = 0;
  std::uint16_t upstream_id = 0;
  std::uint16_t query_flags = 0;
  std::uint16_t question_octets = 0;
  std::uint32_t size = 0;
  EdnsInfo edns;
  SteadyTime received{};
  WallTime received_wall{};
  PeerAddress client;
  std::array<std::uint8_t, kMaxNameOctets + 4> question{};  // as asked, case kept

  // DNSSEC validation (dnssec_side.cpp). A slot is a workload's query or a
  // fetch of chain material the validator asked for; either may wait, its
  // answer held, until other chain material has come.
  enum class Role : std::uint8_t { workload, chain_fetch };
  Role role = Role::workload;
  bool validate = false;        // the answer is validated before it is relayed
  bool awaiting_chain = false;  // its answer waits in `held_answer`
  std::uint8_t chain_rounds = 0;
  std::uint16_t dnssec_detail = 0xFFFF;  // the second EDE of a bogus verdict
  std::uint32_t serial = 0;              // tells the slot a waiter was from its reuse
  std::vector<std::uint8_t> held_answer;
  dnssec::ChainNeed chain;  // chain_fetch: what it fetches

  std::span<const std::uint8_t> question_wire() const noexcept {
    return {question.data(), question_octets};
  }
  QueryEcho echo() const noexcept { return {client_id, query_flags, question_wire(), edns}; }
};

// A fixed number of slots allocated once. Each slot is found by its upstream
// id (a fresh random 16-bit id per query) and sits on a list in arrival
// order; every query has the same timeout, so arrival order is deadline
// order and the oldest query is always the next to expire.
//
// The slots are sized for the worst case (maxInflight, 10,000 by default,
// about 5 MB) but built on first use and reused last-freed-first, so only
// as many pages as queries were ever in flight at once become resident.
class InflightTable {
 public:
  static constexpr std::uint32_t kNoSlot = 0xFFFFFFFF;

  explicit InflightTable(std::size_t capacity);
  ~InflightTable();
  InflightTable(const InflightTable&) = delete;
  InflightTable& operator=(const InflightTable&) = delete;

  // A free slot with a fresh upstream id not in use, or nullptr when full.
  InflightQuery* insert(SteadyTime received) noexcept;
  InflightQuery* find(std::uint16_t upstream_id) noexcept;
  void erase(InflightQuery& query) noexcept;
  InflightQuery* oldest() noexcept;
  const InflightQuery* oldest() const noexcept {
    return head_ == kNoSlot ? nullptr : &slots_[head_];
  }

  // Calls `visit` for every query in flight, oldest first; `visit` may erase
  // the query it is given.
  template <class Visit>
  void for_each(Visit&& visit) {
    std::uint32_t index = head_;
    while (index != kNoSlot) {
      const std::uint32_t after = next_[index];
      visit(slots_[index]);
      index = after;
    }
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  std::uint16_t fresh_id() noexcept;
  std::uint16_t random_u16() noexcept;
  std::uint32_t index_of(const InflightQuery& query) const noexcept;

  std::size_t capacity_;
  InflightQuery* slots_;             // raw storage for capacity_ slots
  std::uint32_t built_ = 0;          // slots [0, built_) have been constructed
  std::vector<std::uint32_t> next_;  // arrival-order links, kNoSlot-terminated
  std::vector<std::uint32_t> prev_;
  std::vector<std::uint32_t> free_;  // stack of freed slot indices (built ones)
  std::vector<std::uint32_t> by_upstream_id_;
  std::uint32_t head_ = kNoSlot;
  std::uint32_t tail_ = kNoSlot;
  std::size_t size_ = 0;

  // Ids come from the kernel's CSPRNG, fetched in batches so the hot path
  // makes no system call for them.
  std::array<std::uint8_t, 4096> random_pool_{};
  std::size_t random_used_ = 4096;
};

}  // namespace dnsgate
