#include "dnsgate/parser.hpp"

#include <array>
#include <optional>
#include <string>

#include "dns/wire.hpp"

namespace dnsgate {

namespace {

constexpr std::uint8_t kLabelTypeMask = 0xC0;
constexpr std::uint8_t kPointerType = 0xC0;
constexpr std::size_t kRecordFixedOctets = 10;   // TYPE CLASS TTL RDLENGTH
constexpr std::size_t kQuestionFixedOctets = 4;  // QTYPE QCLASS

enum class Compression : bool { forbidden, allowed };

// Where a name ends in the packet (just past its last octet or its first
// pointer), or why it is not a name.
struct NameScan {
  bool ok = false;
  ParseError error = ParseError::truncated_question;
  std::size_t end = 0;
  bool is_root = false;
};

// Walks the name at `offset`. Pointers must land at or after the header and
// strictly before the label sequence that contains them, so every jump goes
// backwards and no packet can make the walk loop. When `copy` is given, the
// uncompressed wire form is written to it (it holds kMaxNameOctets).
NameScan scan_name(std::span<const std::uint8_t> packet, std::size_t offset,
                   Compression compression, ParseError truncated, std::uint8_t* copy) noexcept {
  NameScan scan;
  std::size_t at = offset;
  std::size_t segment_start = offset;
  std::size_t total = 0;
  bool jumped = false;
  while (true) {
    if (at >= packet.size()) {
      scan.error = truncated;
      return scan;
    }
    const std::uint8_t length = packet[at];
    const std::uint8_t type = length & kLabelTypeMask;
    if (type == kPointerType) {
      if (at + 1 >= packet.size()) {
        scan.error = truncated;
        return scan;
      }
      const std::size_t target = static_cast<std::size_t>(length & 0x3F) << 8 | packet[at + 1];
      if (target < kHeaderOctets) {
        scan.error = ParseError::pointer_into_header;
        return scan;
      }
      if (compression == Compression::forbidden || target >= segment_start) {
        scan.error = ParseError::pointer_not_backward;
        return scan;
      }
      if (!jumped) scan.end = at + 2;
      jumped = true;
      segment_start = target;
      at = target;
      continue;
    }
    if (type != 0) {
      scan.error = ParseError::bad_label_type;
      return scan;
    }
    if (length == 0) {
      if (copy != nullptr) copy[total] = 0;
      scan.is_root = total == 0;
      if (!jumped) scan.end = at + 1;
      scan.ok = true;
      return scan;
    }
    // The root octet still has to fit after this label.
    if (total + 1 + length + 1 > kMaxNameOctets) {
      scan.error = ParseError::name_too_long;
      return scan;
    }
    if (at + 1 + length > packet.size()) {
      scan.error = truncated;
      return scan;
    }
    if (copy != nullptr) {
      for (std::size_t i = 0; i <= length; ++i) copy[total + i] = packet[at + i];
    }
    total += 1 + length;
    at += 1 + length;
  }
}

MessageHeader read_header(std::span<const std::uint8_t> packet) noexcept {
  MessageHeader header;
  header.id = read_u16(packet, 0);
  header.flags = read_u16(packet, 2);
  header.qdcount = read_u16(packet, 4);
  header.ancount = read_u16(packet, 6);
  header.nscount = read_u16(packet, 8);
  header.arcount = read_u16(packet, 10);
  return header;
}

// The question at offset 12; on success `end` is just past QCLASS and no
// error is returned.
std::optional<ParseError> read_question(std::span<const std::uint8_t> packet, Question& question,
                                        std::size_t& end) noexcept {
  std::array<std::uint8_t, kMaxNameOctets> wire{};
  const NameScan scan = scan_name(packet, kHeaderOctets, Compression::forbidden,
                                  ParseError::truncated_question, wire.data());
  if (!scan.ok) return scan.error;
  if (scan.end + kQuestionFixedOctets > packet.size()) return ParseError::truncated_question;
  const auto name = QueryName::from_wire({wire.data(), scan.end - kHeaderOctets});
  if (!name) return ParseError::truncated_question;  // unreachable: scan_name checked it all
  question.name = *name;
  question.qtype = read_u16(packet, scan.end);
  question.qclass = read_u16(packet, scan.end + 2);
  end = scan.end + kQuestionFixedOctets;
  return std::nullopt;
}

}  // namespace

std::string_view to_string(ParseError error) noexcept {
  switch (error) {
    case ParseError::too_short:
      return "too_short";
    case ParseError::response_bit_set:
      return "response_bit_set";
    case ParseError::bad_question_count:
      return "bad_question_count";
    case ParseError::truncated_question:
      return "truncated_question";
    case ParseError::bad_label_type:
      return "bad_label_type";
    case ParseError::pointer_into_header:
      return "pointer_into_header";
    case ParseError::pointer_not_backward:
      return "pointer_not_backward";
    case ParseError::name_too_long:
      return "name_too_long";
    case ParseError::truncated_record:
      return "truncated_record";
    case ParseError::bad_opt_record:
      return "bad_opt_record";
    case ParseError::trailing_data:
      return "trailing_data";
    case ParseError::not_a_response:
      return "not_a_response";
  }
  return "unknown";
}

namespace {

// Everything after the header, laid out as a query: the question when
// QDCOUNT is 1 (the caller has ruled out any other count but 0), then every
// record the header announces, sized by the octets actually present, so a
// lying count fails at the first missing record.
std::optional<ParseError> read_body(std::span<const std::uint8_t> packet,
                                    ParsedQuery& query) noexcept {
  if (query.header.qdcount == 1) {
    if (const auto error = read_question(packet, query.question, query.question_end)) {
      return error;
    }
    query.has_question = true;
  }
  std::size_t at = query.question_end;
  const std::size_t answer_and_authority = std::size_t{query.header.ancount} + query.header.nscount;
  const std::size_t records = answer_and_authority + query.header.arcount;
  for (std::size_t index = 0; index < records; ++index) {
    const NameScan owner =
        scan_name(packet, at, Compression::allowed, ParseError::truncated_record, nullptr);
    if (!owner.ok) return owner.error;
    at = owner.end;
    if (at + kRecordFixedOctets > packet.size()) return ParseError::truncated_record;
    const std::uint16_t type = read_u16(packet, at);
    const std::uint16_t rclass = read_u16(packet, at + 2);
    const std::uint32_t ttl = read_u32(packet, at + 4);
    const std::size_t rdlength = read_u16(packet, at + 8);
    at += kRecordFixedOctets;
    if (at + rdlength > packet.size()) return ParseError::truncated_record;
    at += rdlength;
    if (type == kTypeOpt) {
      // RFC 6891 6.1.1: one OPT, owned by the root, in the additional section.
      if (query.edns.present || !owner.is_root || index < answer_and_authority) {
        return ParseError::bad_opt_record;
      }
      query.edns.present = true;
      query.edns.udp_payload_size = rclass;
      query.edns.version = static_cast<std::uint8_t>(ttl >> 16);
      query.edns.dnssec_ok = (ttl & 0x8000U) != 0;
    }
  }
  if (at != packet.size()) return ParseError::trailing_data;
  return std::nullopt;
}

}  // namespace

ParseResult<ParsedQuery> parse_query(std::span<const std::uint8_t> packet) noexcept {
  if (packet.size() < kHeaderOctets) return ParseError::too_short;
  ParsedQuery query;
  query.header = read_header(packet);
  if (query.header.qr()) return ParseError::response_bit_set;
  if (query.header.opcode() == kOpcodeQuery) {
    if (query.header.qdcount != 1) return ParseError::bad_question_count;
    if (const auto error = read_body(packet, query)) return *error;
    return query;
  }
  // Another opcode: NOTIMP from the header alone when the rest is not what
  // a query would be (RFC 8906 3.1.4).
  if (query.header.qdcount <= 1 && !read_body(packet, query).has_value()) return query;
  ParsedQuery header_only;
  header_only.header = query.header;
  header_only.header_only = true;
  return header_only;
}

ParseResult<ResponseQuestion> parse_response_question(
    std::span<const std::uint8_t> packet) noexcept {
  if (packet.size() < kHeaderOctets) return ParseError::too_short;
  ResponseQuestion response;
  response.header = read_header(packet);
  if (!response.header.qr()) return ParseError::not_a_response;
  if (response.header.qdcount == 0) return response;
  if (response.header.qdcount != 1) return ParseError::bad_question_count;
  std::size_t end = 0;
  if (const auto error = read_question(packet, response.question, end)) return *error;
  return response;
}

namespace {

struct CodeName {
  std::uint16_t code;
  std::string_view name;
};

constexpr std::array kTypeNames{
    CodeName{1, "A"},       CodeName{2, "NS"},       CodeName{5, "CNAME"},
    CodeName{6, "SOA"},     CodeName{12, "PTR"},     CodeName{13, "HINFO"},
    CodeName{15, "MX"},     CodeName{16, "TXT"},     CodeName{17, "RP"},
    CodeName{18, "AFSDB"},  CodeName{24, "SIG"},     CodeName{25, "KEY"},
    CodeName{28, "AAAA"},   CodeName{29, "LOC"},     CodeName{33, "SRV"},
    CodeName{35, "NAPTR"},  CodeName{36, "KX"},      CodeName{37, "CERT"},
    CodeName{39, "DNAME"},  CodeName{41, "OPT"},     CodeName{42, "APL"},
    CodeName{43, "DS"},     CodeName{44, "SSHFP"},   CodeName{45, "IPSECKEY"},
    CodeName{46, "RRSIG"},  CodeName{47, "NSEC"},    CodeName{48, "DNSKEY"},
    CodeName{49, "DHCID"},  CodeName{50, "NSEC3"},   CodeName{51, "NSEC3PARAM"},
    CodeName{52, "TLSA"},   CodeName{53, "SMIMEA"},  CodeName{55, "HIP"},
    CodeName{59, "CDS"},    CodeName{60, "CDNSKEY"}, CodeName{61, "OPENPGPKEY"},
    CodeName{62, "CSYNC"},  CodeName{63, "ZONEMD"},  CodeName{64, "SVCB"},
    CodeName{65, "HTTPS"},  CodeName{99, "SPF"},     CodeName{108, "EUI48"},
    CodeName{109, "EUI64"}, CodeName{249, "TKEY"},   CodeName{250, "TSIG"},
    CodeName{251, "IXFR"},  CodeName{252, "AXFR"},   CodeName{255, "ANY"},
    CodeName{256, "URI"},   CodeName{257, "CAA"},
};

constexpr std::array kClassNames{
    CodeName{1, "IN"},     CodeName{3, "CH"},    CodeName{4, "HS"},
    CodeName{254, "NONE"}, CodeName{255, "ANY"},
};

constexpr std::array kRcodeNames{
    CodeName{0, "NOERROR"},  CodeName{1, "FORMERR"},    CodeName{2, "SERVFAIL"},
    CodeName{3, "NXDOMAIN"}, CodeName{4, "NOTIMP"},     CodeName{5, "REFUSED"},
    CodeName{6, "YXDOMAIN"}, CodeName{7, "YXRRSET"},    CodeName{8, "NXRRSET"},
    CodeName{9, "NOTAUTH"},  CodeName{10, "NOTZONE"},   CodeName{11, "DSOTYPENI"},
    CodeName{16, "BADVERS"}, CodeName{23, "BADCOOKIE"},
};

constexpr std::array kOpcodeNames{
    CodeName{0, "QUERY"},  CodeName{1, "IQUERY"}, CodeName{2, "STATUS"},
    CodeName{4, "NOTIFY"}, CodeName{5, "UPDATE"}, CodeName{6, "DSO"},
};

template <std::size_t N>
std::string name_or_number(const std::array<CodeName, N>& table, std::uint16_t code,
                           std::string_view prefix) {
  for (const CodeName& entry : table) {
    if (entry.code == code) return std::string(entry.name);
  }
  return std::string(prefix) + std::to_string(code);
}

}  // namespace

std::string qtype_to_string(std::uint16_t qtype) {
  return name_or_number(kTypeNames, qtype, "TYPE");
}

std::string qclass_to_string(std::uint16_t qclass) {
  return name_or_number(kClassNames, qclass, "CLASS");
}

std::string rcode_to_string(std::uint8_t rcode) {
  return name_or_number(kRcodeNames, rcode, "RCODE");
}

std::string opcode_to_string(std::uint8_t opcode) {
  return name_or_number(kOpcodeNames, opcode, "OPCODE");
}

}  // namespace dnsgate
