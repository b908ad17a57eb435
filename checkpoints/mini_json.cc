#include "checkpoints/mini_json.h"

#include <cstdio>

namespace lockstep::ckpt::json {
namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Result<Value> ParseDocument() {
    Value v;
    LS_RETURN_IF_ERROR(ParseValue(&v, 0));
    SkipSpace();
    if (pos_ != s_.size()) return Error("trailing characters");
    return v;
  }

 private:
  Status Error(const std::string& what) const {
    return InvalidArgumentError("JSON: " + what + " at byte " + std::to_string(pos_));
  }
  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Status ParseValue(Value* v, int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    SkipSpace();
    if (pos_ >= s_.size()) return Error("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return ParseObject(v, depth);
    if (c == '[') return ParseArray(v, depth);
    if (c == '"') {
      v->kind = Value::Kind::kString;
      return ParseString(&v->text);
    }
    for (const char* lit : {"true", "false", "null"}) {
      const std::string l = lit;
      if (s_.compare(pos_, l.size(), l) == 0) {
        v->kind = l == "null" ? Value::Kind::kNull : Value::Kind::kBool;
        v->text = l;
        pos_ += l.size();
        return Status::Ok();
      }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      const size_t start = pos_;
      while (pos_ < s_.size() && std::string("+-.eE0123456789").find(s_[pos_]) != std::string::npos)
        ++pos_;
      v->kind = Value::Kind::kNumber;
      v->text = s_.substr(start, pos_ - start);
      return Status::Ok();
    }
    return Error(std::string("unexpected character '") + c + "'");
  }

  Status ParseObject(Value* v, int depth) {
    v->kind = Value::Kind::kObject;
    ++pos_;  // {
    if (Consume('}')) return Status::Ok();
    do {
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Error("expected a key");
      std::string key;
      LS_RETURN_IF_ERROR(ParseString(&key));
      if (!Consume(':')) return Error("expected ':'");
      Value item;
      LS_RETURN_IF_ERROR(ParseValue(&item, depth + 1));
      v->object.emplace_back(std::move(key), std::move(item));
    } while (Consume(','));
    if (!Consume('}')) return Error("expected ',' or '}'");
    return Status::Ok();
  }

  Status ParseArray(Value* v, int depth) {
    v->kind = Value::Kind::kArray;
    ++pos_;  // [
    if (Consume(']')) return Status::Ok();
    do {
      Value item;
      LS_RETURN_IF_ERROR(ParseValue(&item, depth + 1));
      v->array.push_back(std::move(item));
    } while (Consume(','));
    if (!Consume(']')) return Error("expected ',' or ']'");
    return Status::Ok();
  }

  Status ParseString(std::string* out) {
    ++pos_;  // "
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') return Status::Ok();
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) break;
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return Error("short \\u escape");
          unsigned code = 0;
          for (int i = 0; i < 4; ++i) {
            char h = s_[pos_++];
            code <<= 4;
            if (h >= '0' && h <= '9')
              code |= h - '0';
            else if (h >= 'a' && h <= 'f')
              code |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F')
              code |= h - 'A' + 10;
            else
              return Error("bad \\u escape");
          }
          // UTF-8 encode (surrogate pairs are not joined: names are ASCII in practice).
          if (code < 0x80) {
            out->push_back(static_cast<char>(code));
          } else if (code < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (code >> 6)));
            out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (code >> 12)));
            out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
          }
          break;
        }
        default:
          return Error("bad escape");
      }
    }
    return Error("unterminated string");
  }

  const std::string& s_;
  size_t pos_ = 0;
};

}  // namespace

const Value* Value::Find(const std::string& key) const {
  for (const auto& [k, v] : object) {
    if (k == key) return &v;
  }
  return nullptr;
}

Result<Value> Parse(const std::string& text) { return Parser(text).ParseDocument(); }

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace lockstep::ckpt::json
