#include "dnssec/answer_rewrite.hpp"

#include <string>

#include "dns/wire.hpp"
#include "dnssec/message.hpp"

namespace dnsgate::dnssec {

namespace {

constexpr std::size_t kHeader = 12;
constexpr std::uint16_t kAd = 0x0020;
constexpr std::uint16_t kCd = 0x0010;
constexpr std::uint16_t kDoBit = 0x8000;
constexpr std::uint16_t kOptionExtendedError = 15;

bool is_dnssec_type(std::uint16_t type) {
  return type == rrtype::kRrsig || type == rrtype::kNsec || type == rrtype::kNsec3;
}

void put_u16(std::vector<std::uint8_t>& out, std::uint16_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value & 0xFF));
}

void set_u16(std::vector<std::uint8_t>& out, std::size_t at, std::uint16_t value) {
  out[at] = static_cast<std::uint8_t>(value >> 8);
  out[at + 1] = static_cast<std::uint8_t>(value & 0xFF);
}

std::uint16_t shaped_flags(std::uint16_t flags, const RelayShape& shape) {
  flags = static_cast<std::uint16_t>(flags & ~(kAd | kCd));
  if (shape.authentic) flags |= kAd;
  if (shape.checking_disabled) flags |= kCd;
  return flags;
}

}  // namespace

bool shape_answer(std::span<const std::uint8_t> packet, const RelayShape& shape,
                  std::vector<std::uint8_t>& out) {
  out.clear();
  if (packet.size() < kHeader) return false;
  const bool keep_dnssec = shape.client_do;
  if (keep_dnssec && shape.ede == 0xFFFF) {
    // The upstream's bytes as they came, but the id and the AD and CD bits.
    out.assign(packet.begin(), packet.end());
    set_u16(out, 0, shape.client_id);
    set_u16(out, 2, shaped_flags(read_u16(packet, 2), shape));
    return true;
  }
  const auto parsed = read_message(packet);
  if (!std::holds_alternative<Message>(parsed)) return false;
  const Message& message = std::get<Message>(parsed);

  out.assign(packet.begin(), packet.begin() + static_cast<std::ptrdiff_t>(message.question_end));
  set_u16(out, 0, shape.client_id);
  set_u16(out, 2, shaped_flags(read_u16(packet, 2), shape));
  std::uint16_t counts[3] = {0, 0, 0};
  const std::span<const std::uint8_t> question_name =
      packet.subspan(kHeader, message.question_end - 4 - kHeader);
  Dname owner;
  std::string rdata;
  for (const Record& record : message.records) {
    // Only the DNSSEC type asked for stays (its RRSIGs go unless asked for).
    if (!keep_dnssec && is_dnssec_type(record.type) && record.type != message.qtype) continue;
    const bool is_opt = record.type == rrtype::kOpt;
    if (is_opt && !shape.client_opt) continue;
    const std::size_t fixed = read_wire_name(packet, record.wire_start, owner);
    if (fixed == 0) return false;
    // The owner as it came (case kept), a pointer to the question when it is the same name.
    if (owner.size() == question_name.size() &&
        std::equal(owner.begin(), owner.end(), question_name.begin(),
                   [](char a, std::uint8_t b) { return static_cast<std::uint8_t>(a) == b; })) {
      put_u16(out, 0xC000 | kHeader);
    } else {
      out.insert(out.end(), owner.begin(), owner.end());
    }
    const std::size_t type_at = out.size();
    out.insert(out.end(), packet.begin() + static_cast<std::ptrdiff_t>(fixed),
               packet.begin() + static_cast<std::ptrdiff_t>(fixed + 8));
    rdata.clear();
    if (!append_rdata(packet, fixed + 10, read_u16(packet, fixed + 8), record.type, false, rdata)) {
      return false;
    }
    if (is_opt) {
      // TTL = extended rcode, version, flags: DO as the workload sent it.
      std::uint16_t flags = read_u16(out, type_at + 6);
      flags = static_cast<std::uint16_t>(shape.client_do ? flags | kDoBit : flags & ~kDoBit);
      set_u16(out, type_at + 6, flags);
      if (shape.ede != 0xFFFF) {
        rdata.push_back(static_cast<char>(kOptionExtendedError >> 8));
        rdata.push_back(static_cast<char>(kOptionExtendedError & 0xFF));
        rdata.push_back(0);
        rdata.push_back(2);
        rdata.push_back(static_cast<char>(shape.ede >> 8));
        rdata.push_back(static_cast<char>(shape.ede & 0xFF));
      }
    }
    if (rdata.size() > 0xFFFF) return false;
    put_u16(out, static_cast<std::uint16_t>(rdata.size()));
    out.insert(out.end(), rdata.begin(), rdata.end());
    ++counts[static_cast<std::size_t>(record.section)];
  }
  set_u16(out, 6, counts[0]);
  set_u16(out, 8, counts[1]);
  set_u16(out, 10, counts[2]);
  return true;
}

}  // namespace dnsgate::dnssec
