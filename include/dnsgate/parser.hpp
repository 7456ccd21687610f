// The DNS wire parser: pure functions from bytes to a result that says
// exactly what was wrong. No I/O, no policy, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

#include "dnsgate/name.hpp"

namespace dnsgate {

inline constexpr std::size_t kHeaderOctets = 12;

// Header flag masks (RFC 1035 4.1.1, RFC 4035 for AD/CD). Explicit masks,
// never compiler bit-fields, so the layout is the wire's.
namespace flag {
inline constexpr std::uint16_t kQr = 0x8000;
inline constexpr std::uint16_t kOpcodeMask = 0x7800;
inline constexpr int kOpcodeShift = 11;
inline constexpr std::uint16_t kAa = 0x0400;
inline constexpr std::uint16_t kTc = 0x0200;
inline constexpr std::uint16_t kRd = 0x0100;
inline constexpr std::uint16_t kRa = 0x0080;
inline constexpr std::uint16_t kZ = 0x0040;  // reserved: zero in every response
inline constexpr std::uint16_t kAd = 0x0020;
inline constexpr std::uint16_t kCd = 0x0010;
inline constexpr std::uint16_t kRcodeMask = 0x000F;
}  // namespace flag

inline constexpr std::uint8_t kOpcodeQuery = 0;
inline constexpr std::uint16_t kTypeOpt = 41;

struct MessageHeader {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;
  std::uint16_t qdcount = 0;
  std::uint16_t ancount = 0;
  std::uint16_t nscount = 0;
  std::uint16_t arcount = 0;

  bool qr() const noexcept { return (flags & flag::kQr) != 0; }
  std::uint8_t opcode() const noexcept {
    return static_cast<std::uint8_t>((flags & flag::kOpcodeMask) >> flag::kOpcodeShift);
  }
  std::uint8_t rcode() const noexcept {
    return static_cast<std::uint8_t>(flags & flag::kRcodeMask);
  }
};

struct Question {
  QueryName name;
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
};

// What the query's OPT record (RFC 6891) said, if it had one.
struct EdnsInfo {
  bool present = false;
  std::uint16_t udp_payload_size = 0;
  std::uint8_t version = 0;
  bool dnssec_ok = false;
};

// Every reason the parser rejects a packet; each is counted and reported.
enum class ParseError : std::uint8_t {
  too_short,             // fewer than 12 octets: no complete header
  response_bit_set,      // QR=1 in what should be a query
  bad_question_count,    // QDCOUNT != 1 in a QUERY
  truncated_question,    // the packet ends inside the question
  bad_label_type,        // label type 0x40 or 0x80 (reserved / extended)
  pointer_into_header,   // compression pointer to an offset < 12
  pointer_not_backward,  // pointer to itself, forward, or looping
  name_too_long,         // more than 255 octets
  truncated_record,      // an answer/authority/additional record runs past the end
  bad_opt_record,        // OPT not owned by the root, or more than one OPT
  trailing_data,         // octets after the last record the header announced
  not_a_response,        // (responses only) QR=0
};
inline constexpr std::size_t kParseErrorCount = 12;

// Stable snake_case name of a reason, as used in events and stats.
std::string_view to_string(ParseError error) noexcept;

template <class T>
class ParseResult {
 public:
  ParseResult(T value) : state_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  ParseResult(ParseError error) : state_(error) {}    // NOLINT(google-explicit-constructor)
  bool ok() const noexcept { return std::holds_alternative<T>(state_); }
  const T& value() const { return std::get<T>(state_); }
  ParseError error() const { return std::get<ParseError>(state_); }

 private:
  std::variant<T, ParseError> state_;
};

struct ParsedQuery {
  MessageHeader header;
  // False only for an opcode other than QUERY sent with QDCOUNT 0, or whose
  // message is not laid out as a query (`header_only`).
  bool has_question = false;
  Question question;
  // Offset just past QCLASS: packet[12, question_end) is the question exactly
  // as asked, case included; 12 (nothing) when there is no question.
  std::size_t question_end = kHeaderOctets;
  EdnsInfo edns;
  // An opcode other than QUERY whose message past the header is not a
  // standard one (QDCOUNT above 1, a bad name, trailing octets, DSO TLVs...):
  // only the header was read, and the answer is the header alone (RFC 8906
  // 3.1.4: nothing but the header need match for an unknown opcode).
  bool header_only = false;
};

// Parses a query as a workload sends it.
//
// A QUERY (opcode 0) is a header with QR=0, exactly one question whose name
// carries no compression, then every record the header announces
// (compression allowed, pointers strictly backwards), at most one OPT, and
// nothing after; anything else is an error.
//
// Any other opcode is accepted once the header is complete and QR=0, since
// dnsgate answers it NOTIMP whatever follows. When the rest is laid out as
// above with QDCOUNT 0 or 1, the question and the OPT are read as for a
// QUERY (to be echoed); otherwise the result is `header_only`.
ParseResult<ParsedQuery> parse_query(std::span<const std::uint8_t> packet) noexcept;

struct ResponseQuestion {
  MessageHeader header;
  Question question;  // meaningful only when header.qdcount == 1
};

// Parses just enough of an upstream response to decide whether it answers a
// query in flight: the header (QR must be 1) and the question, if any.
ParseResult<ResponseQuestion> parse_response_question(
    std::span<const std::uint8_t> packet) noexcept;

// Presentation names: "A", "AAAA", ... or "TYPE65280" (RFC 3597);
// "IN", "CH", "HS", "NONE", "ANY" or "CLASS7"; "NOERROR", ..., "BADVERS"
// (16, an extended rcode, RFC 6891) or "RCODE11".
std::string qtype_to_string(std::uint16_t qtype);
std::string qclass_to_string(std::uint16_t qclass);
std::string rcode_to_string(std::uint8_t rcode);
// "QUERY", "IQUERY", "STATUS", "NOTIFY", "UPDATE", "DSO" or "OPCODE15".
std::string opcode_to_string(std::uint8_t opcode);

}  // namespace dnsgate
