// Trust anchors: DS or DNSKEY records in presentation form, from the
// config's dnssec.trustAnchors or from Debian's dns-root-data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dnssec/dname.hpp"

namespace dnsgate::dnssec {

// Where Debian's dns-root-data keeps the root zone's DS records.
inline constexpr std::string_view kRootAnchorFile = "/usr/share/dns/root.ds";

struct TrustAnchor {
  Dname zone;
  std::vector<std::string> ds;       // DS RDATAs (wire)
  std::vector<std::string> dnskeys;  // DNSKEY RDATAs (wire)
};

struct AnchorRecord {
  Dname zone;
  std::uint16_t type = 0;  // DS or DNSKEY
  std::string rdata;
};

// One record: "NAME [TTL] [IN] DS KEYTAG ALGORITHM DIGESTTYPE HEX" or
// "NAME [TTL] [IN] DNSKEY FLAGS 3 ALGORITHM BASE64" (the digest and the key
// may be split by spaces). The error says what is wrong.
std::variant<AnchorRecord, std::string> parse_anchor_record(std::string_view text);

// Groups records by zone.
std::vector<TrustAnchor> group_anchors(const std::vector<AnchorRecord>& records);

// The DS lines of a file like kRootAnchorFile (blank lines and ';' comments
// skipped); an error names the line.
std::variant<std::vector<AnchorRecord>, std::string> read_anchor_file(const std::string& path);

}  // namespace dnsgate::dnssec
