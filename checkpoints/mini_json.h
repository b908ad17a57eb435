// A minimal JSON reader and string escaper, just enough for safetensors headers
// (objects, arrays, strings, integers, the literals). Not a general JSON library:
// numbers are kept as text. Pure functions; thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace lockstep::ckpt::json {

struct Value {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  std::string text;  // string contents, or the number / literal as written
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // in document order

  const Value* Find(const std::string& key) const;  // objects only; nullptr if absent
};

// InvalidArgument with the byte offset of the first error.
Result<Value> Parse(const std::string& text);
// "..." with ", \ and control characters escaped.
std::string Quote(const std::string& s);

}  // namespace lockstep::ckpt::json
