// BERT WordPiece as transformers' BertTokenizer(vocab, do_lower_case=True) runs it (the Rust
// tokenizers pipeline): special tokens split out of the raw text; BertNormalizer (drop controls,
// whitespace -> " ", pad CJK ideographs with spaces, NFD and drop Mn, lowercase); BertPreTokenizer
// (split on spaces, punctuation alone); greedy longest-match-first WordPiece with "##" and [UNK]
// (words over 100 characters are [UNK]); [CLS] ... [SEP], truncated and padded with [PAD].
#ifndef EDGECLIP_WORDPIECE_H_
#define EDGECLIP_WORDPIECE_H_

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "unicode.h"

namespace edgeclip {

class WordPiece {
 public:
  static constexpr size_t kMaxWordChars = 100;

  explicit WordPiece(const std::string& vocab_path) {
    std::ifstream in(vocab_path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read the WordPiece vocabulary " + vocab_path + "; is the bundle whole?");
    std::stringstream raw;
    raw << in.rdbuf();
    int64_t id = 0;
    for (const unicode::Text& line : SplitLines(unicode::DecodeUtf8(raw.str()))) vocab_[unicode::EncodeUtf8(line)] = id++;
    for (const char* special : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
      if (!vocab_.count(special)) throw std::runtime_error("the WordPiece vocabulary " + vocab_path + " has no " + special);
    }
    pad_ = vocab_.at("[PAD]"), unk_ = vocab_.at("[UNK]"), cls_ = vocab_.at("[CLS]"), sep_ = vocab_.at("[SEP]");
  }

  // [CLS] + ids + [SEP], the ids cut to context - 2, padded with [PAD]; *length: the real tokens.
  std::vector<int64_t> Encode(const std::string& utf8, size_t context, size_t* length) const {
    std::vector<int64_t> ids;
    unicode::Text text = unicode::DecodeUtf8(utf8);
    size_t segment = 0;
    for (size_t i = 0; i <= text.size(); ++i) {
      const std::string* special = i < text.size() ? SpecialAt(text, i) : nullptr;
      if (special == nullptr && i < text.size()) continue;
      for (const unicode::Text& word : PreTokenize(Normalize(text.substr(segment, i - segment)))) Pieces(word, ids);
      if (special == nullptr) break;
      ids.push_back(vocab_.at(*special));
      i += special->size() - 1;
      segment = i + 1;
    }
    size_t keep = context >= 2 ? context - 2 : 0;
    if (ids.size() > keep) ids.resize(keep);
    ids.insert(ids.begin(), cls_);
    ids.push_back(sep_);
    *length = ids.size();
    ids.resize(std::max(context, ids.size()), pad_);
    return ids;
  }

 private:
  // str.splitlines: \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029 (after universal newlines).
  static std::vector<unicode::Text> SplitLines(const unicode::Text& text) {
    std::vector<unicode::Text> lines;
    unicode::Text line;
    for (size_t i = 0; i < text.size(); ++i) {
      char32_t c = text[i];
      bool breaks = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
                    c == 0x2028 || c == 0x2029;
      if (!breaks) {
        line.push_back(c);
        continue;
      }
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      lines.push_back(line);
      line.clear();
    }
    if (!line.empty()) lines.push_back(line);
    return lines;
  }

  // The special token that starts at text[i] (added tokens match the raw text), or nullptr.
  static const std::string* SpecialAt(const unicode::Text& text, size_t i) {
    static const std::string kSpecials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    if (text[i] != '[') return nullptr;
    for (const std::string& special : kSpecials) {
      size_t k = 0;
      while (k < special.size() && i + k < text.size() && text[i + k] == static_cast<char32_t>(special[k])) ++k;
      if (k == special.size()) return &special;
    }
    return nullptr;
  }

  static unicode::Text Normalize(const unicode::Text& text) {
    unicode::Text out;
    for (char32_t cp : text) {
      if (unicode::IsHangulSyllable(cp)) {
        unicode::AppendHangulJamo(out, cp);
      } else if (const char* multi = unicode::FindMulti(tables::kBertNormalizeMulti, cp)) {
        out += unicode::DecodeUtf8(multi);
      } else if (const tables::CharMap* m = unicode::FindMap(tables::kBertNormalize, cp)) {
        char32_t target = static_cast<char32_t>(static_cast<int64_t>(cp) + m->delta);
        if (m->kind == 1) out.push_back(target);
        if (m->kind == 2) out += {U' ', target, U' '};
      } else {
        out.push_back(cp);
      }
    }
    unicode::CanonicalOrder(out);  // NFD orders the marks that survive (spacing marks, e.g. U+1D165)
    return out;
  }

  static std::vector<unicode::Text> PreTokenize(const unicode::Text& text) {
    std::vector<unicode::Text> words;
    unicode::Text word;
    auto flush = [&] {
      if (!word.empty()) words.push_back(word);
      word.clear();
    };
    for (char32_t c : text) {
      if (c == ' ') {
        flush();
      } else if (unicode::RangeValue(tables::kBertPunctuation, c, 0)) {
        flush();
        words.push_back(unicode::Text(1, c));
      } else {
        word.push_back(c);
      }
    }
    flush();
    return words;
  }

  // Greedy longest match first; one unmatched remainder makes the whole word [UNK].
  void Pieces(const unicode::Text& word, std::vector<int64_t>& ids) const {
    if (word.size() > kMaxWordChars) return ids.push_back(unk_);
    std::vector<int64_t> pieces;
    for (size_t start = 0; start < word.size();) {
      size_t end = word.size();
      int64_t found = -1;
      for (; end > start; --end) {
        auto it = vocab_.find((start ? "##" : "") + unicode::EncodeUtf8(word.substr(start, end - start)));
        if (it != vocab_.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) return ids.push_back(unk_);
      pieces.push_back(found);
      start = end;
    }
    ids.insert(ids.end(), pieces.begin(), pieces.end());
  }

  std::unordered_map<std::string, int64_t> vocab_;
  int64_t pad_ = 0, unk_ = 0, cls_ = 0, sep_ = 0;
};

}  // namespace edgeclip

#endif  // EDGECLIP_WORDPIECE_H_
