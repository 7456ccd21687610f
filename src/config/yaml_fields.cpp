#include "config/yaml_fields.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace dnsgate::config_reader {

namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// An unknown key is most often a typo or a wrong case of a known one; say
// which, since the operator's intended setting is otherwise silently absent.
std::string unknown_field_message(std::string_view key,
                                  std::initializer_list<std::string_view> known) {
  std::string_view closest;
  std::size_t best = 3;  // suggest only within two edits
  const std::string key_lower = lower_ascii(key);
  for (std::string_view candidate : known) {
    const std::size_t distance = edit_distance(key_lower, lower_ascii(candidate));
    if (distance < best) {
      best = distance;
      closest = candidate;
    }
  }
  std::string message = fmt::format("unknown field \"{}\"", key);
  if (!closest.empty()) message += fmt::format(" (did you mean \"{}\"?)", closest);
  message += "; valid fields here:";
  const char* separator = " ";
  for (std::string_view candidate : known) {
    message += separator;
    message += candidate;
    separator = ", ";
  }
  return message;
}

}  // namespace

void reject(std::string field, int line, std::string message) {
  throw Rejection{ConfigError{std::move(field), line, std::move(message)}};
}

// yaml-cpp counts lines from 0 and marks nodes without a position with -1.
int line_of(const YAML::Node& node) {
  const int line = node.Mark().line;
  return line >= 0 ? line + 1 : 0;
}

std::string_view kind_of(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a single value";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

std::string child_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return fmt::format("{}.{}", parent, key);
}

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The entries of a map, in file order, after refusing unknown and
// duplicated keys (yaml-cpp keeps both copies of a duplicate and a lookup
// would silently use one of them).
std::vector<Field> read_map(const YAML::Node& node, const std::string& path, int line,
                            std::initializer_list<std::string_view> known) {
  if (!node.IsMap()) {
    reject(path, line, fmt::format("expected a map of fields, found {}", kind_of(node)));
  }
  std::vector<Field> fields;
  for (const auto& entry : node) {
    const YAML::Node& key_node = entry.first;
    const int key_line = line_of(key_node);
    if (!key_node.IsScalar()) {
      reject(path, key_line,
             fmt::format("field names must be plain words, found {}", kind_of(key_node)));
    }
    const std::string& key = key_node.Scalar();
    const std::string field_path = child_path(path, key);
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      reject(field_path, key_line, unknown_field_message(key, known));
    }
    for (const Field& seen : fields) {
      if (seen.key == key) {
        reject(field_path, key_line,
               fmt::format("duplicate field (first given on line {})", seen.line));
      }
    }
    fields.push_back(Field{field_path, key, key_line, entry.second});
  }
  return fields;
}

const Field* find_field(const std::vector<Field>& fields, std::string_view key) {
  for (const Field& field : fields) {
    if (field.key == key) return &field;
  }
  return nullptr;
}

std::string read_string(const YAML::Node& node, const std::string& path, int line) {
  if (!node.IsScalar())
    reject(path, line, fmt::format("expected a value, found {}", kind_of(node)));
  return node.Scalar();
}

// A plain YAML/JSON integer within [min, max]. A quoted number is refused:
// the file's author wrote a string, and a generator that quotes numbers
// may also have mangled them.
std::int64_t read_integer(const YAML::Node& node, const std::string& path, int line,
                          std::int64_t min, std::int64_t max) {
  const std::string range = fmt::format("an integer from {} to {}", min, max);
  if (!node.IsScalar())
    reject(path, line, fmt::format("expected {}, found {}", range, kind_of(node)));
  const std::string& text = node.Scalar();
  if (node.Tag() != "?") {
    reject(path, line, fmt::format("expected {}, found the quoted string \"{}\"", range, text));
  }
  std::int64_t value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  const bool digits_only =
      !text.empty() && std::all_of(text.begin() + (text.front() == '-' ? 1 : 0), text.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
  const auto [end, ec] = std::from_chars(first, last, value);
  if (!digits_only || text == "-" || ec != std::errc{} || end != last || value < min ||
      value > max) {
    reject(path, line, fmt::format("expected {}, found {}", range, text));
  }
  return value;
}

Endpoint read_endpoint(const Field& field) {
  const std::string text = read_string(field.value, field.path, field.line);
  auto endpoint = Endpoint::parse(text);
  if (!endpoint) {
    reject(field.path, field.line,
           fmt::format("\"{}\" is not an address and port (write 192.0.2.1:53 or "
                       "[2001:db8::1]:53; host names are not accepted)",
                       text));
  }
  return *endpoint;
}

}  // namespace dnsgate::config_reader
