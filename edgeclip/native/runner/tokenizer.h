// The text tower's tokenizer, as the plan's `tokenizer` line names it: CLIP BPE or lowercase BERT
// WordPiece, text to the padded ids the tower sees and how many of them are real tokens.
#ifndef EDGECLIP_TOKENIZER_H_
#define EDGECLIP_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bpe.h"
#include "plan.h"
#include "wordpiece.h"

namespace edgeclip {

class Tokenizer {
 public:
  explicit Tokenizer(const TokenizerSpec& spec) : context_(spec.context) {
    if (spec.kind == "clip-bpe") {
      bpe_ = std::make_unique<ClipBpe>(spec.vocab);
    } else if (spec.kind == "wordpiece" && spec.lowercase) {
      wordpiece_ = std::make_unique<WordPiece>(spec.vocab);
    } else {
      throw std::runtime_error("tokenizer '" + spec.kind + (spec.lowercase ? "" : "' without lowercase") +
                               "' is not built into this runtime; it has clip-bpe and lowercase wordpiece");
    }
  }

  size_t Context() const { return context_; }

  // The `Context()` ids of `utf8`; *length = the real tokens among them (the mask's ones).
  std::vector<int64_t> Encode(const std::string& utf8, size_t* length) {
    if (wordpiece_) return wordpiece_->Encode(utf8, context_, length);
    std::vector<int64_t> ids = bpe_->Encode(utf8, context_);
    size_t n = 0;
    while (ids[n] != bpe_->EndId()) ++n;  // the mask covers start .. the first end token
    *length = n + 1;
    return ids;
  }

 private:
  size_t context_;
  std::unique_ptr<ClipBpe> bpe_;
  std::unique_ptr<WordPiece> wordpiece_;
};

}  // namespace edgeclip

#endif  // EDGECLIP_TOKENIZER_H_
