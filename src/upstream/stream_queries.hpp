// StreamQueries: the queries a connection-based transport (do53-tcp, DoT,
// DoH, DoQ) has sent and not yet seen answered, so that the ones stranded
// on a connection that broke can be sent again on the next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dnsgate {

class StreamQueries {
 public:
  // `id` was written on connection `generation` (never 0); `attempt`:
  // whether this write counts against the query's attempts.
  void sent(std::uint16_t id, std::uint32_t generation, bool attempt = true) {
    if (generation_.empty()) {
      generation_.assign(65536, 0);
      attempts_.assign(65536, 0);
    }
    if (generation_[id] == 0) {
      ++live_;
      attempts_[id] = 0;
      ids_.push_back(id);
      if (ids_.size() > 4 * live_ + 1024) prune();
    }
    generation_[id] = generation;
    if (attempt && attempts_[id] < 0x7F) ++attempts_[id];
  }

  bool pending(std::uint16_t id) const noexcept {
    return !generation_.empty() && generation_[id] != 0;
  }
  std::uint32_t generation(std::uint16_t id) const noexcept {
    return generation_.empty() ? 0 : generation_[id];
  }
  std::uint8_t attempts(std::uint16_t id) const noexcept {
    return generation_.empty() ? 0 : attempts_[id];
  }

  // Answered or cancelled.
  void forget(std::uint16_t id) noexcept {
    if (!pending(id)) return;
    generation_[id] = 0;
    --live_;
  }

  std::size_t size() const noexcept { return live_; }

  // Calls visit(id) for every query pending on `generation`; visit may call
  // sent() or forget() for that id.
  template <class Visit>
  void for_each_on(std::uint32_t generation, Visit&& visit) {
    prune();
    const std::size_t count = ids_.size();  // ids re-sent inside visit are not revisited
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint16_t id = ids_[i];
      if (generation_[id] == generation) visit(id);
    }
  }

 private:
  // Drops ids no longer pending, keeping the first place of the others, so
  // the list stays proportional to what is in flight. An id forgotten and
  // sent again appears twice: a mark in attempts_ keeps only its first.
  void prune() noexcept {
    constexpr std::uint8_t kSeen = 0x80;
    std::size_t kept = 0;
    for (const std::uint16_t id : ids_) {
      if (generation_[id] == 0 || (attempts_[id] & kSeen) != 0) continue;
      attempts_[id] |= kSeen;
      ids_[kept++] = id;
    }
    ids_.resize(kept);
    for (const std::uint16_t id : ids_) attempts_[id] &= static_cast<std::uint8_t>(~kSeen);
  }

  std::vector<std::uint32_t> generation_;  // by id; 0: not pending
  std::vector<std::uint8_t> attempts_;     // by id: writes of the query
  std::vector<std::uint16_t> ids_;         // in the order first sent; may hold stale ids
  std::size_t live_ = 0;
};

}  // namespace dnsgate
