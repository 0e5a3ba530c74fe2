// `edgeclip-runner tokenize`: text to the text tower's inputs on the device, with the tokenizer
// the plan's `tokenizer` line names, one JSON line per text: {"ids": [...], "mask": [...]}.
#ifndef EDGECLIP_TOKENIZE_H_
#define EDGECLIP_TOKENIZE_H_

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bpe.h"
#include "plan.h"
#include "wordpiece.h"

namespace edgeclip {

constexpr const char* kTokenizeUsage = "tokenize [--bundle DIR] (--text TEXT | --text-file FILE)...";

struct TokenizeOptions {
  std::string bundle;
  std::vector<std::string> texts;
};

// One text per line of the file ('\n' ends a line; a last line needs none).
inline void ReadTextFile(const std::string& path, std::vector<std::string>& texts) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument("cannot read the text file " + path);
  std::stringstream raw;
  raw << in.rdbuf();
  std::string all = raw.str();
  for (size_t start = 0; start < all.size();) {
    size_t end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    texts.push_back(all.substr(start, end - start));
    start = end + 1;
  }
}

inline TokenizeOptions ParseTokenizeArgs(int argc, char** argv, const std::function<std::string()>& default_bundle) {
  TokenizeOptions opt;
  bool any = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    std::string value = argv[++i];
    if (flag == "--bundle") opt.bundle = value;
    else if (flag == "--text") opt.texts.push_back(value);
    else if (flag == "--text-file") ReadTextFile(value, opt.texts);
    else throw std::invalid_argument("unknown option " + flag);
    any = any || flag != "--bundle";
  }
  if (!any) throw std::invalid_argument("tokenize needs --text or --text-file");
  if (opt.bundle.empty()) opt.bundle = default_bundle();
  return opt;
}

inline std::string IdsJson(const std::vector<int64_t>& values) {
  std::string json = "[";
  for (size_t i = 0; i < values.size(); ++i) json += (i ? ", " : "") + std::to_string(values[i]);
  return json + "]";
}

// Runs the tokenizer over every text; returns the exit status (2 usage, 3 tokenizing failed).
inline int TokenizeMain(int argc, char** argv, const std::function<std::string()>& default_bundle) {
  TokenizeOptions opt;
  TokenizerSpec spec;
  try {
    opt = ParseTokenizeArgs(argc, argv, default_bundle);
    Plan plan = ReadPlan(opt.bundle);
    if (!plan.tokenizer) throw std::runtime_error(opt.bundle + "/runner.plan has no tokenizer line; rebuild the bundle");
    spec = *plan.tokenizer;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeclip-runner: %s\nusage: edgeclip-runner %s\n", e.what(), kTokenizeUsage);
    return 2;
  }
  try {
    bool mask = false;
    for (const std::string& input : spec.inputs) mask = mask || input == "attention_mask";
    std::unique_ptr<ClipBpe> bpe;
    std::unique_ptr<WordPiece> wordpiece;
    if (spec.kind == "clip-bpe") {
      bpe = std::make_unique<ClipBpe>(spec.vocab);
    } else if (spec.kind == "wordpiece" && spec.lowercase) {
      wordpiece = std::make_unique<WordPiece>(spec.vocab);
    } else {
      throw std::runtime_error("tokenizer '" + spec.kind + (spec.lowercase ? "" : "' without lowercase") +
                               "' is not built into this runner; it has clip-bpe and lowercase wordpiece");
    }
    for (const std::string& text : opt.texts) {
      std::vector<int64_t> ids;
      size_t length = 0;
      if (bpe) {
        ids = bpe->Encode(text, spec.context);
        while (ids[length] != bpe->EndId()) ++length;  // the mask covers start .. the first end token
        ++length;
      } else {
        ids = wordpiece->Encode(text, spec.context, &length);
      }
      std::string json = "{\"ids\": " + IdsJson(ids);
      if (mask) {
        std::vector<int64_t> real(ids.size(), 0);
        std::fill(real.begin(), real.begin() + length, 1);
        json += ", \"mask\": " + IdsJson(real);
      }
      std::printf("%s}\n", json.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeclip-runner: %s\n", e.what());
    return 3;
  }
  return 0;
}

}  // namespace edgeclip

#endif  // EDGECLIP_TOKENIZE_H_
