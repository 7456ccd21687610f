#include "dnssec/key_cache.hpp"

namespace dnsgate::dnssec {

std::string KeyCache::key_of(DnameView name, std::uint16_t type) {
  std::string key;
  key.reserve(name.size() + 2);
  key.push_back(static_cast<char>(type >> 8));
  key.push_back(static_cast<char>(type & 0xFF));
  key.append(name);
  return key;
}

const ChainEntry* KeyCache::find(DnameView name, std::uint16_t type, std::uint32_t now) {
  const auto found = entries_.find(key_of(name, type));
  if (found == entries_.end()) return nullptr;
  if (static_cast<std::int32_t>(found->second->entry.expires - now) <= 0) {
    order_.erase(found->second);
    entries_.erase(found);
    return nullptr;
  }
  order_.splice(order_.begin(), order_, found->second);
  return &found->second->entry;
}

void KeyCache::store(DnameView name, std::uint16_t type, ChainEntry entry) {
  std::string key = key_of(name, type);
  const auto found = entries_.find(key);
  if (found != entries_.end()) {
    found->second->entry = std::move(entry);
    order_.splice(order_.begin(), order_, found->second);
    return;
  }
  if (entries_.size() >= capacity_) {
    entries_.erase(order_.back().key);
    order_.pop_back();
  }
  order_.push_front(Slot{key, std::move(entry)});
  entries_.emplace(std::move(key), order_.begin());
}

bool SignatureMemo::contains(const std::string& key) {
  const auto found = index_.find(key);
  if (found == index_.end()) return false;
  order_.splice(order_.begin(), order_, found->second);
  return true;
}

void SignatureMemo::insert(const std::string& key) {
  if (index_.contains(key)) return;
  if (index_.size() >= capacity_) {
    index_.erase(order_.back());
    order_.pop_back();
  }
  order_.push_front(key);
  index_.emplace(order_.front(), order_.begin());
}

}  // namespace dnsgate::dnssec
