// Python's html.unescape: numeric references with its replacement rules, the HTML5 named
// references (with the legacy ones that need no semicolon, and the longest-prefix fallback).
#ifndef EDGECLIP_HTML_H_
#define EDGECLIP_HTML_H_

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>

#include "unicode.h"

namespace edgeclip::html {

using unicode::Text;

inline const char* Entity(const std::string& name) {
  auto end = std::end(tables::kEntities);
  auto it = std::lower_bound(std::begin(tables::kEntities), end, name,
                             [](const tables::Entity& e, const std::string& n) { return std::strcmp(e.name, n.c_str()) < 0; });
  return it != end && name == it->name ? it->utf8 : nullptr;
}

// What `&#...` becomes; `number` is capped just past U+10FFFF, as only "too large" matters.
inline Text Numeric(uint32_t number) {
  for (const tables::Charref& c : tables::kInvalidCharrefs) {
    if (c.number == number) return Text(1, c.cp);
  }
  if ((number >= 0xD800 && number <= 0xDFFF) || number > 0x10FFFF) return Text(1, 0xFFFD);
  if (unicode::RangeValue(tables::kInvalidCodepoints, number, 0)) return Text();
  return Text(1, number);
}

inline bool IsDigit(char32_t c, int base) {
  return (c >= '0' && c <= '9') || (base == 16 && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
}

// At text[i] == '&': the replacement and the end of the reference, or false where Python's
// pattern `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` does not match.
inline bool Reference(const Text& text, size_t i, Text* out, size_t* end) {
  size_t j = i + 1, n = text.size();
  if (j < n && text[j] == '#') {
    int base = 10;
    size_t k = j + 1;
    if (k < n && (text[k] == 'x' || text[k] == 'X')) base = 16, ++k;
    if (k >= n || !IsDigit(text[k], base)) return false;
    uint32_t number = 0;
    for (; k < n && IsDigit(text[k], base); ++k) {
      uint32_t digit = text[k] <= '9' ? text[k] - '0' : (text[k] | 0x20) - 'a' + 10;
      number = std::min<uint32_t>(number * base + digit, 0x110000);
    }
    *end = k < n && text[k] == ';' ? k + 1 : k;
    *out = Numeric(number);
    return true;
  }
  size_t k = j;
  while (k < n && k - j < 32 && std::u32string_view(U"\t\n\f <&#;").find(text[k]) == std::u32string_view::npos) ++k;
  if (k == j) return false;
  if (k < n && text[k] == ';') ++k;
  *end = k;
  Text name = text.substr(j, k - j);
  if (const char* whole = Entity(unicode::EncodeUtf8(name))) {
    *out = unicode::DecodeUtf8(whole);
    return true;
  }
  for (size_t len = name.size() - 1; len > 1; --len) {
    if (const char* prefix = Entity(unicode::EncodeUtf8(name.substr(0, len)))) {
      *out = unicode::DecodeUtf8(prefix) + name.substr(len);
      return true;
    }
  }
  *out = U"&" + name;
  return true;
}

inline Text Unescape(const Text& text) {
  Text out;
  for (size_t i = 0; i < text.size();) {
    Text replacement;
    size_t end = 0;
    if (text[i] == '&' && Reference(text, i, &replacement, &end)) {
      out += replacement;
      i = end;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

}  // namespace edgeclip::html

#endif  // EDGECLIP_HTML_H_
