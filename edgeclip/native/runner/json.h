// A small, strict JSON reader (RFC 8259: no comments, no trailing commas, nesting bounded), enough
// for the runner to read the bundle's manifest.json itself rather than a second copy of its facts,
// and the writer that gives a serve request's "id" back as it came.
#ifndef EDGECLIP_JSON_H_
#define EDGECLIP_JSON_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "report.h"

namespace edgeclip {

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::vector<Json> items;                            // an array's elements
  std::vector<std::pair<std::string, Json>> fields;  // an object's members, in file order

  const Json* Find(const std::string& key) const {
    for (const auto& [name, value] : fields) {
      if (name == key) return &value;
    }
    return nullptr;
  }
};

class JsonReader {
 public:
  static Json Parse(const std::string& text) {
    JsonReader reader(text);
    Json value = reader.Value(0);
    reader.Space();
    if (reader.at_ != text.size()) reader.Fail("text after the JSON value");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 64;
  explicit JsonReader(const std::string& text) : s_(text) {}

  [[noreturn]] void Fail(const std::string& what) const {
    throw std::runtime_error("bad JSON at byte " + std::to_string(at_) + ": " + what);
  }
  void Space() {
    while (at_ < s_.size() && std::strchr(" \t\r\n", s_[at_]) != nullptr && s_[at_] != '\0') ++at_;
  }
  bool Eat(char c) {
    Space();
    if (at_ < s_.size() && s_[at_] == c) return ++at_, true;
    return false;
  }
  void Expect(char c) {
    if (!Eat(c)) Fail(std::string("expected '") + c + "'");
  }
  bool Word(const char* word) {
    const size_t n = std::strlen(word);
    if (s_.compare(at_, n, word) != 0) return false;
    at_ += n;
    return true;
  }

  Json Value(int depth) {
    if (depth > kMaxDepth) Fail("nested too deeply");
    Space();
    if (at_ >= s_.size()) Fail("unexpected end");
    Json v;
    const char c = s_[at_];
    if (c == '{') {
      v.kind = Json::kObject;
      ++at_;
      if (Eat('}')) return v;
      do {
        Space();
        std::string key = String();
        Expect(':');
        v.fields.emplace_back(std::move(key), Value(depth + 1));
      } while (Eat(','));
      Expect('}');
    } else if (c == '[') {
      v.kind = Json::kArray;
      ++at_;
      if (Eat(']')) return v;
      do v.items.push_back(Value(depth + 1)); while (Eat(','));
      Expect(']');
    } else if (c == '"') {
      v.kind = Json::kString;
      v.text = String();
    } else if (Word("true") || Word("false")) {
      v.kind = Json::kBool;
      v.boolean = c == 't';
    } else if (Word("null")) {
      v.kind = Json::kNull;
    } else {
      v.kind = Json::kNumber;
      v.number = Number();
    }
    return v;
  }

  double Number() {
    const size_t start = at_;
    auto digits = [&] {
      const size_t from = at_;
      while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
      return at_ > from;
    };
    if (at_ < s_.size() && s_[at_] == '-') ++at_;
    if (at_ < s_.size() && s_[at_] == '0') ++at_;
    else if (!digits()) Fail("expected a value");
    if (at_ < s_.size() && s_[at_] == '.' && (++at_, !digits())) Fail("a digit must follow '.'");
    if (at_ < s_.size() && (s_[at_] == 'e' || s_[at_] == 'E')) {
      ++at_;
      if (at_ < s_.size() && (s_[at_] == '+' || s_[at_] == '-')) ++at_;
      if (!digits()) Fail("a digit must follow the exponent");
    }
    return std::strtod(s_.substr(start, at_ - start).c_str(), nullptr);
  }

  unsigned Hex4() {
    if (at_ + 4 > s_.size()) Fail("short \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[at_++];
      code <<= 4;
      if (h >= '0' && h <= '9') code |= h - '0';
      else if (h >= 'a' && h <= 'f') code |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') code |= h - 'A' + 10;
      else Fail("bad \\u escape");
    }
    return code;
  }

  static void Utf8(unsigned code, std::string* out) {
    if (code < 0x80) {
      *out += static_cast<char>(code);
    } else if (code < 0x800) {
      *out += static_cast<char>(0xC0 | code >> 6);
      *out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      *out += static_cast<char>(0xE0 | code >> 12);
      *out += static_cast<char>(0x80 | (code >> 6 & 0x3F));
      *out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | code >> 18);
      *out += static_cast<char>(0x80 | (code >> 12 & 0x3F));
      *out += static_cast<char>(0x80 | (code >> 6 & 0x3F));
      *out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }

  std::string String() {
    if (at_ >= s_.size() || s_[at_] != '"') Fail("expected a string");
    ++at_;
    std::string out;
    while (true) {
      if (at_ >= s_.size()) Fail("unterminated string");
      const char c = s_[at_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) Fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= s_.size()) Fail("unterminated string");
      const char e = s_[at_++];
      const char* simple = std::strchr("\"\\/bfnrt", e);
      if (e != '\0' && simple != nullptr) {
        out += "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      } else if (e == 'u') {
        unsigned code = Hex4();
        if (code >= 0xD800 && code < 0xDC00) {  // a surrogate pair
          if (!Word("\\u")) Fail("lone surrogate");
          const unsigned low = Hex4();
          if (low < 0xDC00 || low >= 0xE000) Fail("bad surrogate pair");
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        } else if (code >= 0xDC00 && code < 0xE000) {
          Fail("lone surrogate");
        }
        Utf8(code, &out);
      } else {
        Fail("bad escape");
      }
    }
  }

  const std::string& s_;
  size_t at_ = 0;
};

// `v` as compact JSON: whole numbers below 2^53 as integers, others with 17 significant digits
// (the same double back); a number too big for a double was read as infinity and is written null.
inline std::string JsonText(const Json& v) {
  switch (v.kind) {
    case Json::kNull: return "null";
    case Json::kBool: return v.boolean ? "true" : "false";
    case Json::kString: return Quoted(v.text);
    case Json::kNumber: {
      if (!std::isfinite(v.number)) return "null";
      char buf[32];
      if (v.number == std::trunc(v.number) && std::fabs(v.number) < 9007199254740992.0) {
        std::snprintf(buf, sizeof(buf), "%.0f", v.number);
      } else {
        std::snprintf(buf, sizeof(buf), "%.17g", v.number);
      }
      return buf;
    }
    case Json::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < v.items.size(); ++i) out += (i ? ", " : "") + JsonText(v.items[i]);
      return out + "]";
    }
    case Json::kObject: {
      std::string out = "{";
      for (size_t i = 0; i < v.fields.size(); ++i) {
        out += (i ? ", " : "") + Quoted(v.fields[i].first) + ": " + JsonText(v.fields[i].second);
      }
      return out + "}";
    }
  }
  return "null";
}

}  // namespace edgeclip

#endif  // EDGECLIP_JSON_H_
