// The config schema: one table row per YAML key (dotted path, type, range or choices, help). The loader, the
// resolved-config writer and config comparison all walk this table, so a new key is one row in schema.cpp
// plus its field in config.h.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config.h"

namespace msa {

enum class KeyKind { Int, Float, Bool, String, Enum };

// Where a key's value lives inside a RunConfig. The field's C++ type fixes the key's kind.
using ConfigField = std::variant<int64_t* (*)(RunConfig&), double* (*)(RunConfig&), bool* (*)(RunConfig&),
                                 std::string* (*)(RunConfig&)>;

// Allowed values of numeric keys: an interval whose ends may be open, closed or absent (infinite).
struct ValueRange {
  double lo, hi;
  bool lo_open = false, hi_open = false;
};

struct KeySpec {
  std::string_view path;  // "model.d_model"; a top-level scalar has no dot ("device")
  ConfigField field;
  ValueRange range;                       // Int and Float keys only
  std::vector<std::string_view> choices;  // non-empty: a string key that takes one of these (an enum)
  std::string_view help;
  bool may_be_empty = false;  // String keys: "" is a valid value (meaning "none")

  KeyKind kind() const;
};

// Every key, grouped by section in the order the resolved config lists them.
std::span<const KeySpec> config_schema();

// The row for a full dotted path, or nullptr (also for a section name such as "model").
const KeySpec* find_key(std::string_view path);

// Stores a YAML scalar's text into c after checking type and range. `plain` is false for quoted scalars,
// which only string and enum keys accept. Throws UserError("<key>: ...") without a location; the caller adds it.
void assign_key(const KeySpec& key, RunConfig& c, const std::string& text, bool plain);

// The value as YAML scalar text that assign_key reads back to exactly the same value.
std::string format_key(const KeySpec& key, const RunConfig& c);

// "an integer", "a number", "true or false", "a string", "one of gqa, msa".
std::string describe_kind(const KeySpec& key);

// Dotted paths of the keys whose values differ between a and b (empty when the configs are equal).
std::vector<std::string> differing_keys(const RunConfig& a, const RunConfig& b);

}  // namespace msa
