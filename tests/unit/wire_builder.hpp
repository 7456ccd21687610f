// A tiny builder for DNS packets in tests. It writes exactly the octets it is
// told to (big-endian integers, length-prefixed labels) and validates
// nothing, so tests can assemble hostile packets as easily as good ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

namespace dnsgate::test {

using Bytes = std::vector<std::uint8_t>;

class Wire {
 public:
  Wire& u8(std::uint8_t v) {
    bytes_.push_back(v);
    return *this;
  }
  Wire& u16(std::uint16_t v) {
    bytes_.push_back(static_cast<std::uint8_t>(v >> 8));
    bytes_.push_back(static_cast<std::uint8_t>(v & 0xFF));
    return *this;
  }
  Wire& u32(std::uint32_t v) {
    u16(static_cast<std::uint16_t>(v >> 16));
    return u16(static_cast<std::uint16_t>(v & 0xFFFF));
  }
  Wire& raw(std::initializer_list<std::uint8_t> octets) {
    bytes_.insert(bytes_.end(), octets.begin(), octets.end());
    return *this;
  }
  Wire& raw(std::span<const std::uint8_t> octets) {
    bytes_.insert(bytes_.end(), octets.begin(), octets.end());
    return *this;
  }
  // One length-prefixed label, written as given (no length check).
  Wire& label(std::string_view text) {
    u8(static_cast<std::uint8_t>(text.size()));
    for (char c : text) u8(static_cast<std::uint8_t>(c));
    return *this;
  }
  // A dotted name split on '.', then the root label. "" or "." is the root.
  Wire& name(std::string_view dotted) {
    while (!dotted.empty() && dotted != ".") {
      const auto dot = dotted.find('.');
      label(dotted.substr(0, dot));
      dotted = dot == std::string_view::npos ? std::string_view{} : dotted.substr(dot + 1);
    }
    return u8(0);
  }
  // A compression pointer to `offset`.
  Wire& pointer(std::uint16_t offset) { return u16(static_cast<std::uint16_t>(0xC000 | offset)); }

  Wire& header(std::uint16_t id, std::uint16_t flags, std::uint16_t qdcount, std::uint16_t ancount,
               std::uint16_t nscount, std::uint16_t arcount) {
    return u16(id).u16(flags).u16(qdcount).u16(ancount).u16(nscount).u16(arcount);
  }
  Wire& question(std::string_view dotted, std::uint16_t qtype = 1, std::uint16_t qclass = 1) {
    return name(dotted).u16(qtype).u16(qclass);
  }
  // Fixed part of a record after its owner name, then rdata.
  Wire& rr_tail(std::uint16_t type, std::uint16_t rclass, std::uint32_t ttl,
                std::initializer_list<std::uint8_t> rdata) {
    u16(type).u16(rclass).u32(ttl).u16(static_cast<std::uint16_t>(rdata.size()));
    return raw(rdata);
  }
  // An OPT record owned by the root: CLASS = payload size, TTL = ext-rcode,
  // version, flags (DO = 0x8000).
  Wire& opt(std::uint16_t payload, std::uint32_t ttl,
            std::initializer_list<std::uint8_t> rdata = {}) {
    u8(0);
    return rr_tail(41, payload, ttl, rdata);
  }

  std::size_t size() const { return bytes_.size(); }
  const Bytes& bytes() const { return bytes_; }
  Bytes build() const { return bytes_; }

 private:
  Bytes bytes_;
};

}  // namespace dnsgate::test
