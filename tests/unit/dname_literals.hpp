// Names for the DNSSEC unit tests, written as text.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "dnssec/dname.hpp"

namespace dnsgate::dnssec::testing {

// The canonical wire form of a presentation name (lower case).
inline Dname N(std::string_view text) {
  const auto name = from_text(text);
  EXPECT_TRUE(name.has_value()) << text;
  return name.value_or(Dname(1, '\0'));
}

// A wire name with the case of `text` kept ("a.B." -> \1a\1B\0).
inline std::string WireAsSent(std::string_view text) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t dot = text.find('.', start);
    const std::size_t end = dot == std::string_view::npos ? text.size() : dot;
    out.push_back(static_cast<char>(end - start));
    out.append(text.substr(start, end - start));
    start = end + 1;
  }
  out.push_back('\0');
  return out;
}

}  // namespace dnsgate::dnssec::testing
