#include "proxy/inflight_table.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace dnsgate {

InflightTable::InflightTable(std::size_t capacity)
    : capacity_(capacity),
      slots_(std::allocator<InflightQuery>().allocate(capacity)),
      next_(capacity, kNoSlot),
      prev_(capacity, kNoSlot),
      by_upstream_id_(65536, kNoSlot) {
  free_.reserve(capacity);
}

InflightTable::~InflightTable() {
  std::destroy_n(slots_, built_);
  std::allocator<InflightQuery>().deallocate(slots_, capacity_);
}

std::uint16_t InflightTable::random_u16() noexcept {
  if (random_used_ + 2 > random_pool_.size()) {
    std::size_t filled = 0;
    while (filled < random_pool_.size()) {
      const ssize_t got = getrandom(random_pool_.data() + filled, random_pool_.size() - filled, 0);
      if (got > 0) {
        filled += static_cast<std::size_t>(got);
      } else if (got < 0 && errno != EINTR) {
        break;  // cannot happen on Linux >= 3.17 once the pool is initialised
      }
    }
    random_used_ = 0;
  }
  const auto value =
      static_cast<std::uint16_t>(random_pool_[random_used_] << 8 | random_pool_[random_used_ + 1]);
  random_used_ += 2;
  return value;
}

std::uint16_t InflightTable::fresh_id() noexcept {
  // At most 65535 of 65536 ids are in use, so a free one exists. Random
  // probes find one quickly at the default load (10,000 of 65,536); a scan
  // from a random start bounds the worst case.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::uint16_t id = random_u16();
    if (by_upstream_id_[id] == kNoSlot) return id;
  }
  std::uint16_t id = random_u16();
  while (by_upstream_id_[id] != kNoSlot) ++id;
  return id;
}

std::uint32_t InflightTable::index_of(const InflightQuery& query) const noexcept {
  return static_cast<std::uint32_t>(&query - slots_);
}

InflightQuery* InflightTable::insert(SteadyTime received) noexcept {
  std::uint32_t index = kNoSlot;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else if (built_ < capacity_) {
    index = built_++;
    std::construct_at(&slots_[index]);
  } else {
    return nullptr;
  }
  InflightQuery& query = slots_[index];
  query.upstream_id = fresh_id();
  query.received = received;
  by_upstream_id_[query.upstream_id] = index;
  prev_[index] = tail_;
  next_[index] = kNoSlot;
  if (tail_ != kNoSlot) {
    next_[tail_] = index;
  } else {
    head_ = index;
  }
  tail_ = index;
  ++size_;
  return &query;
}

InflightQuery* InflightTable::find(std::uint16_t upstream_id) noexcept {
  const std::uint32_t index = by_upstream_id_[upstream_id];
  return index == kNoSlot ? nullptr : &slots_[index];
}

void InflightTable::erase(InflightQuery& query) noexcept {
  const std::uint32_t index = index_of(query);
  by_upstream_id_[query.upstream_id] = kNoSlot;
  const std::uint32_t before = prev_[index];
  const std::uint32_t after = next_[index];
  if (before != kNoSlot) {
    next_[before] = after;
  } else {
    head_ = after;
  }
  if (after != kNoSlot) {
    prev_[after] = before;
  } else {
    tail_ = before;
  }
  free_.push_back(index);
  --size_;
}

InflightQuery* InflightTable::oldest() noexcept {
  return head_ == kNoSlot ? nullptr : &slots_[head_];
}

}  // namespace dnsgate
