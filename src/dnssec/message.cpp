#include "dnssec/message.hpp"

#include "dns/wire.hpp"

namespace dnsgate::dnssec {

namespace {

constexpr std::size_t kHeader = 12;
constexpr std::size_t kRecordFixed = 10;  // TYPE CLASS TTL RDLENGTH

// How the names inside an RDATA are laid out (RFC 1035 3.3, RFC 4034 6.2).
// `lowercase` follows RFC 4034 6.2 as amended by RFC 6840 5.1.
struct RdataNames {
  std::uint8_t fixed_before = 0;  // octets before the first name
  std::uint8_t names = 0;         // names in a row
  bool lowercase = true;
};

bool rdata_names(std::uint16_t type, RdataNames& layout) noexcept {
  switch (type) {
    case 2:   // NS
    case 3:   // MD
    case 4:   // MF
    case 5:   // CNAME
    case 7:   // MB
    case 8:   // MG
    case 9:   // MR
    case 12:  // PTR
    case 39:  // DNAME
      layout = {0, 1, true};
      return true;
    case 6:   // SOA: MNAME RNAME, then 20 octets
    case 14:  // MINFO
    case 17:  // RP
      layout = {0, 2, true};
      return true;
    case 15:  // MX
    case 18:  // AFSDB
    case 21:  // RT
    case 36:  // KX
      layout = {2, 1, true};
      return true;
    case 26:  // PX
      layout = {2, 2, true};
      return true;
    case 33:  // SRV
      layout = {6, 1, true};
      return true;
    case 46:  // RRSIG: the signer after 18 octets
      layout = {18, 1, true};
      return true;
    case 47:  // NSEC: the next name, case kept (RFC 6840 5.1)
      layout = {0, 1, false};
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string_view to_string(MessageError error) noexcept {
  switch (error) {
    case MessageError::truncated:
      return "truncated";
    case MessageError::bad_name:
      return "bad_name";
    case MessageError::no_question:
      return "no_question";
    case MessageError::bad_rdata:
      return "bad_rdata";
  }
  return "unknown";
}

std::size_t read_wire_name(std::span<const std::uint8_t> packet, std::size_t offset, Dname& out) {
  out.clear();
  std::size_t at = offset;
  std::size_t end = 0;
  std::size_t limit = offset;  // a pointer must land strictly before this
  while (true) {
    if (at >= packet.size()) return 0;
    const std::uint8_t length = packet[at];
    if ((length & 0xC0) == 0xC0) {
      if (at + 1 >= packet.size()) return 0;
      const std::size_t target = static_cast<std::size_t>(length & 0x3F) << 8 | packet[at + 1];
      if (target < kHeader || target >= limit) return 0;
      if (end == 0) end = at + 2;
      limit = target;
      at = target;
      continue;
    }
    if ((length & 0xC0) != 0) return 0;
    if (out.size() + 1 + length + 1 > 255) return 0;
    if (at + 1 + length > packet.size()) return 0;
    out.append(reinterpret_cast<const char*>(packet.data() + at), 1 + std::size_t{length});
    if (length == 0) return end == 0 ? at + 1 : end;
    at += 1 + length;
  }
}

bool append_rdata(std::span<const std::uint8_t> packet, std::size_t start, std::size_t length,
                  std::uint16_t type, bool lowercase, std::string& out) {
  const std::size_t end = start + length;
  if (end > packet.size()) return false;
  RdataNames layout;
  if (!rdata_names(type, layout)) {
    out.append(reinterpret_cast<const char*>(packet.data() + start), length);
    return true;
  }
  if (layout.fixed_before > length) return false;
  out.append(reinterpret_cast<const char*>(packet.data() + start), layout.fixed_before);
  std::size_t at = start + layout.fixed_before;
  Dname name;
  for (std::uint8_t i = 0; i < layout.names; ++i) {
    const std::size_t next = read_wire_name(packet.first(end), at, name);
    if (next == 0) return false;
    if (lowercase && layout.lowercase) {
      lowercase_wire_name({reinterpret_cast<std::uint8_t*>(name.data()), name.size()});
    }
    out += name;
    at = next;
  }
  out.append(reinterpret_cast<const char*>(packet.data() + at), end - at);
  return true;
}

std::variant<Message, MessageError> read_message(std::span<const std::uint8_t> packet) {
  if (packet.size() < kHeader) return MessageError::truncated;
  Message message;
  message.id = read_u16(packet, 0);
  message.flags = read_u16(packet, 2);
  if (read_u16(packet, 4) != 1) return MessageError::no_question;
  std::size_t at = read_wire_name(packet, kHeader, message.qname);
  if (at == 0) return MessageError::bad_name;
  if (at + 4 > packet.size()) return MessageError::truncated;
  lowercase_wire_name(
      {reinterpret_cast<std::uint8_t*>(message.qname.data()), message.qname.size()});
  message.qtype = read_u16(packet, at);
  message.qclass = read_u16(packet, at + 2);
  at += 4;
  message.question_end = at;
  const std::size_t counts[3] = {read_u16(packet, 6), read_u16(packet, 8), read_u16(packet, 10)};
  message.records.reserve(counts[0] + counts[1] + counts[2]);
  for (std::size_t section = 0; section < 3; ++section) {
    for (std::size_t i = 0; i < counts[section]; ++i) {
      Record record;
      record.section = static_cast<Section>(section);
      record.wire_start = at;
      at = read_wire_name(packet, at, record.owner);
      if (at == 0) return MessageError::bad_name;
      if (at + kRecordFixed > packet.size()) return MessageError::truncated;
      lowercase_wire_name(
          {reinterpret_cast<std::uint8_t*>(record.owner.data()), record.owner.size()});
      record.type = read_u16(packet, at);
      record.klass = read_u16(packet, at + 2);
      record.ttl = read_u32(packet, at + 4);
      const std::size_t rdlength = read_u16(packet, at + 8);
      at += kRecordFixed;
      if (at + rdlength > packet.size()) return MessageError::truncated;
      if (!append_rdata(packet, at, rdlength, record.type, true, record.rdata)) {
        return MessageError::bad_rdata;
      }
      at += rdlength;
      record.wire_end = at;
      message.records.push_back(std::move(record));
    }
  }
  return message;
}

}  // namespace dnsgate::dnssec
