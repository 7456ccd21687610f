// A DNS response read whole, for validation: every record with its owner
// and RDATA in canonical form (RFC 4034 6.2), and where it sits in the
// packet so the answer can be re-encoded without DNSSEC records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dnssec/dname.hpp"

namespace dnsgate::dnssec {

namespace rrtype {
inline constexpr std::uint16_t kA = 1;
inline constexpr std::uint16_t kNs = 2;
inline constexpr std::uint16_t kCname = 5;
inline constexpr std::uint16_t kSoa = 6;
inline constexpr std::uint16_t kDname = 39;
inline constexpr std::uint16_t kOpt = 41;
inline constexpr std::uint16_t kDs = 43;
inline constexpr std::uint16_t kRrsig = 46;
inline constexpr std::uint16_t kNsec = 47;
inline constexpr std::uint16_t kDnskey = 48;
inline constexpr std::uint16_t kNsec3 = 50;
inline constexpr std::uint16_t kNsec3param = 51;
inline constexpr std::uint16_t kAny = 255;
}  // namespace rrtype

inline constexpr std::uint16_t kClassIn = 1;

enum class Section : std::uint8_t { answer, authority, additional };

struct Record {
  Section section = Section::answer;
  Dname owner;  // canonical: uncompressed, lower case
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
  std::uint32_t ttl = 0;
  // Canonical RDATA: embedded names uncompressed, and lower-cased for the
  // types RFC 4034 6.2 lists (as amended by RFC 6840 5.1: not NSEC's).
  std::string rdata;
  std::size_t wire_start = 0;  // the record's octets in the packet
  std::size_t wire_end = 0;

  std::span<const std::uint8_t> rdata_bytes() const noexcept { return bytes_of(rdata); }
};

struct Message {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;
  Dname qname;  // canonical
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
  std::size_t question_end = 0;
  std::vector<Record> records;  // answer, authority, additional in order; OPT included

  std::uint8_t rcode() const noexcept { return static_cast<std::uint8_t>(flags & 0x000F); }
};

enum class MessageError : std::uint8_t {
  truncated,
  bad_name,
  no_question,
  bad_rdata,  // an RDATA whose embedded names do not fit its length
};
std::string_view to_string(MessageError error) noexcept;

// Reads every record the header announces. Pure: no I/O, no exceptions
// beyond std::bad_alloc.
std::variant<Message, MessageError> read_message(std::span<const std::uint8_t> packet);

// Appends the RDATA at packet[start, start + length) of a record of `type`
// with its embedded names uncompressed, lower-cased when `lowercase`; false
// when a name does not fit.
bool append_rdata(std::span<const std::uint8_t> packet, std::size_t start, std::size_t length,
                  std::uint16_t type, bool lowercase, std::string& out);

// Reads the (possibly compressed) name at `offset` into `out` as it is
// (case kept); returns the offset just past it in the record, or 0 when it
// is not a name.
std::size_t read_wire_name(std::span<const std::uint8_t> packet, std::size_t offset, Dname& out);

}  // namespace dnsgate::dnssec
