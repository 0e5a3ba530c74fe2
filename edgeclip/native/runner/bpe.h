// CLIP's byte-level BPE, as edgeclip/models/tokenizer.py (ClipTokenizer) computes it: html-unescape
// twice, NFC, collapse White_Space, strip, str.lower; the word pattern; bytes to printable
// symbols; merges by rank; start + ids + end, truncated keeping the end, zero padded.
#ifndef EDGECLIP_BPE_H_
#define EDGECLIP_BPE_H_

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "html.h"
#include "inflate.h"
#include "unicode.h"

namespace edgeclip {

using unicode::Text;

// Python's clean_text: html.unescape twice, NFC, \s+ -> " ", strip (str.isspace), lower.
inline Text ClipCleanText(const std::string& utf8) {
  Text text = unicode::Nfc(html::Unescape(html::Unescape(unicode::DecodeUtf8(utf8))));
  Text collapsed;
  for (size_t i = 0; i < text.size();) {
    if (unicode::RangeValue(tables::kWordClass, text[i], -1) != 0) {
      collapsed.push_back(text[i++]);
      continue;
    }
    collapsed.push_back(' ');
    while (i < text.size() && unicode::RangeValue(tables::kWordClass, text[i], -1) == 0) ++i;
  }
  auto space = [](char32_t c) { return unicode::RangeValue(tables::kPythonSpace, c, 0) != 0; };
  size_t begin = 0, end = collapsed.size();
  while (begin < end && space(collapsed[begin])) ++begin;
  while (end > begin && space(collapsed[end - 1])) --end;
  return unicode::PythonLower(collapsed.substr(begin, end - begin));
}

// The words of CLIP's pattern (regex module, IGNORECASE): the two special tokens, 's 't 're 've
// 'm 'll 'd, a run of letters, one digit, a run of anything else but whitespace.
class ClipWords {
 public:
  static std::vector<Text> Split(const Text& text) {
    static const char32_t* const kLiterals[] = {U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re",
                                                U"'ve", U"'m", U"'ll", U"'d"};
    std::vector<Text> words;
    for (size_t i = 0; i < text.size();) {
      size_t end = i;
      for (const char32_t* literal : kLiterals) {
        size_t k = 0;
        while (literal[k] && i + k < text.size() && Matches(literal[k], text[i + k])) ++k;
        if (!literal[k]) {
          end = i + k;
          break;
        }
      }
      int cls = Class(text[i]);
      if (end == i && (cls == kLetter || cls == kOther)) {
        while (end < text.size() && Class(text[end]) == cls) ++end;
      } else if (end == i && cls == kNumber) {
        end = i + 1;
      }
      if (end == i) {
        ++i;  // whitespace, or a code point no alternative matches (e.g. U+0345)
        continue;
      }
      words.push_back(text.substr(i, end - i));
      i = end;
    }
    return words;
  }

 private:
  static constexpr int kLetter = 1, kNumber = 2, kOther = -1;
  static int Class(char32_t c) { return unicode::RangeValue(tables::kWordClass, c, kOther); }
  static bool Matches(char32_t pattern, char32_t c) {
    if (c == pattern) return true;
    if (pattern >= 'a' && pattern <= 'z' && c == pattern - 32) return true;
    for (const tables::Charref& fold : tables::kLiteralFolds) {
      if (fold.number == c && fold.cp == pattern) return true;
    }
    return false;
  }
};

class ClipBpe {
 public:
  static constexpr size_t kMergeCount = 49152 - 256 - 2;

  explicit ClipBpe(const std::string& vocab_path) {
    std::ifstream in(vocab_path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read the CLIP vocabulary " + vocab_path + "; is the bundle whole?");
    std::stringstream raw;
    raw << in.rdbuf();
    std::string text;
    try {
      text = inflate::Gunzip(raw.str());
    } catch (const inflate::Error& e) {
      throw std::runtime_error("the CLIP vocabulary " + vocab_path + " is not a gzipped text file: " + e.what());
    }
    std::vector<std::pair<std::string, std::string>> merges;
    std::istringstream lines(text);
    std::string line;
    std::getline(lines, line);  // the version line
    while (merges.size() < kMergeCount && std::getline(lines, line)) {
      std::istringstream words(line);
      std::string a, b, rest;
      if (!(words >> a >> b) || (words >> rest)) throw std::runtime_error("the CLIP vocabulary " + vocab_path + " is malformed");
      merges.emplace_back(a, b);
    }
    if (merges.size() != kMergeCount) throw std::runtime_error("the CLIP vocabulary " + vocab_path + " is truncated");
    std::vector<std::string> tokens;
    for (int b : ByteOrder()) tokens.push_back(Symbol(b));
    for (int b : ByteOrder()) tokens.push_back(Symbol(b) + "</w>");
    for (const auto& [a, b] : merges) tokens.push_back(a + b);
    tokens.push_back("<|startoftext|>");
    tokens.push_back("<|endoftext|>");
    for (size_t i = 0; i < tokens.size(); ++i) vocab_[tokens[i]] = static_cast<int64_t>(i);
    for (size_t rank = 0; rank < merges.size(); ++rank) ranks_[merges[rank].first + ' ' + merges[rank].second] = rank;
    start_id_ = vocab_.at("<|startoftext|>");
    end_id_ = vocab_.at("<|endoftext|>");
  }

  int64_t EndId() const { return end_id_; }

  // Start + BPE ids + end, truncated to `context` keeping the end token, zero padded.
  std::vector<int64_t> Encode(const std::string& utf8, size_t context) {
    std::vector<int64_t> ids{start_id_};
    for (const Text& word : ClipWords::Split(ClipCleanText(utf8))) {
      std::string bytes = unicode::EncodeUtf8(word);
      if (bytes == "<|startoftext|>" || bytes == "<|endoftext|>") {  // not a folded spelling of them
        ids.push_back(vocab_.at(bytes));
        continue;
      }
      std::string symbols;
      for (unsigned char b : bytes) symbols += Symbol(b);
      const std::vector<int64_t>& word_ids = Word(symbols);
      ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    }
    ids.push_back(end_id_);
    if (ids.size() > context) {
      ids.resize(context);
      ids.back() = end_id_;
    }
    ids.resize(context, 0);
    return ids;
  }

 private:
  // The printable symbol of a byte: visible Latin-1 bytes themselves, the others 256 upwards.
  static std::string Symbol(int byte) {
    static const std::vector<std::string> table = [] {
      std::vector<std::string> t(256);
      int hidden = 0;
      for (int b = 0; b < 256; ++b) {
        std::string s;
        unicode::AppendUtf8(s, Visible(b) ? b : 256 + hidden++);
        t[b] = s;
      }
      return t;
    }();
    return table[byte];
  }
  static bool Visible(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }
  // The base vocabulary's order: visible bytes first, then the hidden ones.
  static std::vector<int> ByteOrder() {
    std::vector<int> order;
    for (int pass = 0; pass < 2; ++pass) {
      for (int b = 0; b < 256; ++b) {
        if (Visible(b) == (pass == 0)) order.push_back(b);
      }
    }
    return order;
  }

  // Merge the lowest-ranked adjacent pair until none has a rank; the last symbol ends the word.
  const std::vector<int64_t>& Word(const std::string& symbols) {
    auto cached = cache_.find(symbols);
    if (cached != cache_.end()) return cached->second;
    std::vector<std::string> parts;
    for (char32_t c : unicode::DecodeUtf8(symbols)) {
      parts.emplace_back();
      unicode::AppendUtf8(parts.back(), c);
    }
    parts.back() += "</w>";
    while (parts.size() > 1) {
      size_t best = SIZE_MAX;
      std::string best_pair;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto rank = ranks_.find(parts[i] + ' ' + parts[i + 1]);
        if (rank != ranks_.end() && rank->second < best) best = rank->second, best_pair = rank->first;
      }
      if (best == SIZE_MAX) break;
      std::vector<std::string> merged;
      for (size_t i = 0; i < parts.size(); ++i) {
        if (i + 1 < parts.size() && parts[i] + ' ' + parts[i + 1] == best_pair) {
          merged.push_back(parts[i] + parts[i + 1]);
          ++i;
        } else {
          merged.push_back(parts[i]);
        }
      }
      parts = std::move(merged);
    }
    std::vector<int64_t> ids;
    for (const std::string& part : parts) ids.push_back(vocab_.at(part));
    return cache_[symbols] = ids;
  }

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, size_t> ranks_;
  std::unordered_map<std::string, std::vector<int64_t>> cache_;
  int64_t start_id_ = 0, end_id_ = 0;
};

}  // namespace edgeclip

#endif  // EDGECLIP_BPE_H_
