#include "dnssec/trust_anchor.hpp"

// libdnssec's headers declare C functions without extern "C".
extern "C" {
#include <libdnssec/binary.h>
#include <libdnssec/error.h>
}

#include <cctype>
#include <charconv>
#include <fstream>

namespace dnsgate::dnssec {

namespace {

std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> words;
  std::size_t at = 0;
  while (at < text.size()) {
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at])) != 0) ++at;
    const std::size_t start = at;
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at])) == 0) ++at;
    if (at > start) words.push_back(text.substr(start, at - start));
  }
  return words;
}

template <class T>
bool number(std::string_view word, T& out) {
  unsigned long value = 0;
  const auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), value);
  if (error != std::errc{} || end != word.data() + word.size() || value > T(~T{0})) return false;
  out = static_cast<T>(value);
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

void append_u16(std::string& out, std::uint16_t value) {
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value & 0xFF));
}

}  // namespace

std::variant<AnchorRecord, std::string> parse_anchor_record(std::string_view text) {
  std::vector<std::string_view> words = split_words(text);
  if (words.empty()) return std::string("empty trust anchor");
  AnchorRecord record;
  const auto zone = from_text(words[0]);
  if (!zone) return "bad owner name '" + std::string(words[0]) + "'";
  record.zone = *zone;
  std::size_t at = 1;
  std::uint32_t ttl = 0;
  if (at < words.size() && number(words[at], ttl)) ++at;
  if (at < words.size() && iequals(words[at], "IN")) ++at;
  if (at >= words.size()) return std::string("missing record type (DS or DNSKEY)");
  const std::string_view type = words[at++];
  std::string tail;
  if (iequals(type, "DS")) {
    std::uint16_t tag = 0;
    std::uint8_t algorithm = 0;
    std::uint8_t digest_type = 0;
    if (at + 4 > words.size() || !number(words[at], tag) || !number(words[at + 1], algorithm) ||
        !number(words[at + 2], digest_type)) {
      return std::string("a DS needs: KEYTAG ALGORITHM DIGESTTYPE DIGEST");
    }
    for (std::size_t i = at + 3; i < words.size(); ++i) tail += words[i];
    if (tail.size() % 2 != 0 || tail.empty()) return std::string("DS digest is not hex");
    record.type = 43;
    append_u16(record.rdata, tag);
    record.rdata.push_back(static_cast<char>(algorithm));
    record.rdata.push_back(static_cast<char>(digest_type));
    for (std::size_t i = 0; i < tail.size(); i += 2) {
      const int high = hex_value(tail[i]);
      const int low = hex_value(tail[i + 1]);
      if (high < 0 || low < 0) return std::string("DS digest is not hex");
      record.rdata.push_back(static_cast<char>(high << 4 | low));
    }
    const std::size_t want = digest_type == 2 ? 32 : digest_type == 4 ? 48 : 0;
    if (want != 0 && record.rdata.size() - 4 != want) {
      return "DS digest type " + std::to_string(digest_type) + " needs " + std::to_string(want) +
             " octets, got " + std::to_string(record.rdata.size() - 4);
    }
    return record;
  }
  if (iequals(type, "DNSKEY")) {
    std::uint16_t flags = 0;
    std::uint8_t protocol = 0;
    std::uint8_t algorithm = 0;
    if (at + 4 > words.size() || !number(words[at], flags) || !number(words[at + 1], protocol) ||
        !number(words[at + 2], algorithm)) {
      return std::string("a DNSKEY needs: FLAGS PROTOCOL ALGORITHM PUBLICKEY");
    }
    if (protocol != 3) return std::string("DNSKEY protocol must be 3");
    for (std::size_t i = at + 3; i < words.size(); ++i) tail += words[i];
    dnssec_binary_t base64{tail.size(), reinterpret_cast<std::uint8_t*>(tail.data())};
    dnssec_binary_t key{};
    if (dnssec_binary_from_base64(&base64, &key) != DNSSEC_EOK || key.size == 0) {
      return std::string("DNSKEY public key is not base64");
    }
    record.type = 48;
    append_u16(record.rdata, flags);
    record.rdata.push_back(static_cast<char>(protocol));
    record.rdata.push_back(static_cast<char>(algorithm));
    record.rdata.append(reinterpret_cast<const char*>(key.data), key.size);
    dnssec_binary_free(&key);
    return record;
  }
  return "record type '" + std::string(type) + "' is not DS or DNSKEY";
}

std::vector<TrustAnchor> group_anchors(const std::vector<AnchorRecord>& records) {
  std::vector<TrustAnchor> anchors;
  for (const AnchorRecord& record : records) {
    TrustAnchor* anchor = nullptr;
    for (TrustAnchor& existing : anchors) {
      if (existing.zone == record.zone) anchor = &existing;
    }
    if (anchor == nullptr) {
      anchors.push_back(TrustAnchor{record.zone, {}, {}});
      anchor = &anchors.back();
    }
    (record.type == 43 ? anchor->ds : anchor->dnskeys).push_back(record.rdata);
  }
  return anchors;
}

std::variant<std::vector<AnchorRecord>, std::string> read_anchor_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "cannot read " + path;
  std::vector<AnchorRecord> records;
  std::string line;
  int number_of_line = 0;
  while (std::getline(in, line)) {
    ++number_of_line;
    const std::size_t comment = line.find(';');
    if (comment != std::string::npos) line.resize(comment);
    if (split_words(line).empty()) continue;
    auto parsed = parse_anchor_record(line);
    if (auto* error = std::get_if<std::string>(&parsed)) {
      return path + ":" + std::to_string(number_of_line) + ": " + *error;
    }
    records.push_back(std::get<AnchorRecord>(std::move(parsed)));
  }
  if (records.empty()) return path + ": no trust anchor in it";
  return records;
}

}  // namespace dnsgate::dnssec
