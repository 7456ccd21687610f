// The pieces every part of the config reader shares: fields with their
// path and line, and the first error found, thrown to parse_config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "dnsgate/config.hpp"

namespace dnsgate::config_reader {

// The first error found ends the walk. The walk is deep and every level
// would otherwise have to test and forward a result; the exception never
// leaves parse_config.
struct Rejection {
  ConfigError error;
};

[[noreturn]] void reject(std::string field, int line, std::string message);

// yaml-cpp counts lines from 0 and marks nodes without a position with -1.
int line_of(const YAML::Node& node);
std::string_view kind_of(const YAML::Node& node);

// One `key: value` of a map, with everything an error message needs.
struct Field {
  std::string path;  // "dnsAuthority.resolvers[0].address"
  std::string key;   // "address"
  int line = 0;      // the key's line: a null value's own mark points past it
  YAML::Node value;
};

std::string child_path(std::string_view parent, std::string_view key);
std::string lower_ascii(std::string_view text);

// The entries of a map, in file order, after refusing unknown and
// duplicated keys.
std::vector<Field> read_map(const YAML::Node& node, const std::string& path, int line,
                            std::initializer_list<std::string_view> known);
const Field* find_field(const std::vector<Field>& fields, std::string_view key);
std::string read_string(const YAML::Node& node, const std::string& path, int line);
std::int64_t read_integer(const YAML::Node& node, const std::string& path, int line,
                          std::int64_t min, std::int64_t max);
Endpoint read_endpoint(const Field& field);

}  // namespace dnsgate::config_reader
