// What the delivery backends share (nats_delivery.cpp, http_delivery.cpp).
#include "events/delivery.hpp"

#include <algorithm>

namespace dnsgate {

namespace {

// Every line dnsgate writes starts so (cloud_event.cpp): the id is found
// without parsing the JSON, at the rate the sink sends.
constexpr std::string_view kIdPrefix = R"({"specversion":"1.0","id":")";

// Generated ids are 36 (a UUID); ids given by the caller may be other
// lengths. Past this an id is not one dnsgate wrote, and a header that
// long would only cost the server memory in its duplicate window.
constexpr std::size_t kMaxIdLength = 64;

}  // namespace

std::string_view event_id_of(std::string_view line) noexcept {
  if (!line.starts_with(kIdPrefix)) {
    return {};
  }
  const std::string_view rest = line.substr(kIdPrefix.size());
  const std::size_t end = rest.find('"');
  if (end == std::string_view::npos || end == 0 || end > kMaxIdLength) {
    return {};
  }
  const std::string_view id = rest.substr(0, end);
  // An escaped id would need unescaping to match what the reader of the
  // stream sees, and a control character cannot go into a NATS header.
  const bool plain = std::all_of(id.begin(), id.end(), [](char c) {
    const auto octet = static_cast<unsigned char>(c);
    return octet > ' ' && octet < 0x7F && c != '\\';
  });
  return plain ? id : std::string_view{};
}

}  // namespace dnsgate
