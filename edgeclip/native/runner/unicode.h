// Unicode for the tokenizers, from the generated tables (unicode_tables.h): UTF-8, table look-ups,
// Python's str.lower (with its Final_Sigma rule) and NFC as Python's unicodedata computes them.
#ifndef EDGECLIP_UNICODE_H_
#define EDGECLIP_UNICODE_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "unicode_tables.h"

namespace edgeclip::unicode {

using Text = std::u32string;

inline Text DecodeUtf8(const std::string& bytes) {
  Text out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    auto b = static_cast<unsigned char>(bytes[i]);
    int extra = b < 0x80 ? 0 : (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : -1;
    char32_t cp = extra == 0 ? b : extra == 1 ? b & 0x1F : extra == 2 ? b & 0x0F : b & 0x07;
    if (extra < 0 || i + extra >= bytes.size()) throw std::runtime_error("the text is not valid UTF-8");
    for (int k = 1; k <= extra; ++k) {
      auto c = static_cast<unsigned char>(bytes[i + k]);
      if ((c >> 6) != 2) throw std::runtime_error("the text is not valid UTF-8");
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      throw std::runtime_error("the text is not valid UTF-8 (overlong, surrogate or beyond U+10FFFF)");
    }
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

inline void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline std::string EncodeUtf8(const Text& text) {
  std::string out;
  for (char32_t cp : text) AppendUtf8(out, cp);
  return out;
}

// The entry of a table sorted by `first` whose [first, last] holds cp, or nullptr.
template <typename Entry, size_t N>
const Entry* Find(const Entry (&table)[N], char32_t cp) {
  auto after = std::upper_bound(std::begin(table), std::end(table), cp,
                                [](char32_t c, const Entry& e) { return c < e.first; });
  if (after == std::begin(table)) return nullptr;
  const Entry* e = std::prev(after);
  return cp <= e->last ? e : nullptr;
}

template <size_t N>
int RangeValue(const tables::Range (&table)[N], char32_t cp, int absent) {
  const tables::Range* e = Find(table, cp);
  return e ? e->value : absent;
}

// A CharMap entry that applies to cp (runs may skip every other code point), or nullptr.
template <size_t N>
const tables::CharMap* FindMap(const tables::CharMap (&table)[N], char32_t cp) {
  const tables::CharMap* e = Find(table, cp);
  return e && (cp - e->first) % e->step == 0 ? e : nullptr;
}

template <size_t N>
const char* FindMulti(const tables::MultiMap (&table)[N], char32_t cp) {
  for (const tables::MultiMap& m : table) {
    if (m.cp == cp) return m.utf8;
  }
  return nullptr;
}

// Hangul syllables decompose (and compose) by arithmetic, not by table.
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

inline void AppendHangulJamo(Text& out, char32_t cp) {
  int s = static_cast<int>(cp - kSBase);
  out.push_back(kLBase + s / kNCount);
  out.push_back(kVBase + s % kNCount / kTCount);
  if (s % kTCount) out.push_back(kTBase + s % kTCount);
}

inline bool IsHangulSyllable(char32_t cp) { return cp >= kSBase && cp < kSBase + kSCount; }

inline int CombiningClass(char32_t cp) { return RangeValue(tables::kCombiningClass, cp, 0); }

// Stable sort by combining class inside every run of non-starters (canonical ordering).
inline void CanonicalOrder(Text& text) {
  for (size_t i = 0; i < text.size();) {
    if (CombiningClass(text[i]) == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && CombiningClass(text[end]) != 0) ++end;
    std::stable_sort(text.begin() + i, text.begin() + end,
                     [](char32_t a, char32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = end;
  }
}

inline const tables::Decomposition* FindDecomposition(char32_t cp) {
  auto end = std::end(tables::kDecompositions);
  auto it = std::lower_bound(std::begin(tables::kDecompositions), end, cp,
                             [](const tables::Decomposition& d, char32_t c) { return d.cp < c; });
  return it != end && it->cp == cp ? it : nullptr;
}

inline void AppendCanonicalDecomposition(Text& out, char32_t cp) {
  if (IsHangulSyllable(cp)) return AppendHangulJamo(out, cp);
  const tables::Decomposition* d = FindDecomposition(cp);
  if (d == nullptr) return out.push_back(cp);
  AppendCanonicalDecomposition(out, d->first);
  if (d->second) AppendCanonicalDecomposition(out, d->second);
}

// The primary composite of (a, b), or 0.
inline char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (IsHangulSyllable(a) && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  static const std::unordered_map<uint64_t, char32_t> pairs = [] {
    std::unordered_map<uint64_t, char32_t> built;
    for (const tables::Decomposition& d : tables::kDecompositions) {
      if (d.composes) built[(uint64_t{d.first} << 32) | d.second] = d.cp;
    }
    return built;
  }();
  auto it = pairs.find((uint64_t{a} << 32) | b);
  return it == pairs.end() ? 0 : it->second;
}

// Canonical decomposition, ordering, then composition of every unblocked pair (UAX #15).
inline Text Nfc(const Text& text) {
  Text d;
  for (char32_t cp : text) AppendCanonicalDecomposition(d, cp);
  CanonicalOrder(d);
  if (d.empty()) return d;
  size_t starter = 0, kept = 1;
  int last_class = CombiningClass(d[0]) ? 256 : 0;
  for (size_t i = 1; i < d.size(); ++i) {
    char32_t cp = d[i];
    int cls = CombiningClass(cp);
    char32_t composite = Compose(d[starter], cp);
    if (composite != 0 && (last_class < cls || last_class == 0)) {
      d[starter] = composite;
      continue;
    }
    if (cls == 0) starter = kept;
    last_class = cls;
    d[kept++] = cp;
  }
  d.resize(kept);
  return d;
}

// CPython's Final_Sigma test for a capital sigma at i: a cased letter before it and none after,
// skipping case-ignorable code points both ways.
inline bool FinalSigma(const Text& text, size_t i) {
  auto context = [](char32_t cp) { return RangeValue(tables::kSigmaContext, cp, 0); };
  size_t j = i;
  while (j > 0 && context(text[j - 1]) == 1) --j;
  if (j == 0 || context(text[j - 1]) != 2) return false;
  size_t k = i + 1;
  while (k < text.size() && context(text[k]) == 1) ++k;
  return k == text.size() || context(text[k]) != 2;
}

// str.lower: full lowercase mappings, U+03A3 by its context.
inline Text PythonLower(const Text& text) {
  Text out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t cp = text[i];
    if (cp == 0x3A3) {
      out.push_back(FinalSigma(text, i) ? 0x3C2 : 0x3C3);
    } else if (const char* multi = FindMulti(tables::kPythonLowerMulti, cp)) {
      out += DecodeUtf8(multi);
    } else if (const tables::CharMap* m = FindMap(tables::kPythonLower, cp)) {
      out.push_back(static_cast<char32_t>(static_cast<int64_t>(cp) + m->delta));
    } else {
      out.push_back(cp);
    }
  }
  return out;
}

}  // namespace edgeclip::unicode

#endif  // EDGECLIP_UNICODE_H_
