// `edgeclip-runner tokenize`: text to the text tower's inputs, through the C API, one JSON line per
// text: {"ids": [...]} plus "mask" when the tower takes an attention mask. The plan says the
// context length and the tower's inputs; the library does the tokenizing.
#ifndef EDGECLIP_TOKENIZE_COMMAND_H_
#define EDGECLIP_TOKENIZE_COMMAND_H_

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.h"
#include "model_handle.h"
#include "plan.h"
#include "results.h"

namespace edgeclip {

constexpr const char* kTokenizeUsage =
    "tokenize [--bundle DIR] [--variant NAME] [--threads N] (--text TEXT | --text-file FILE)...";

// One text per line of the file ('\n' ends a line; a last line needs none).
inline std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the text file " + path);
  std::stringstream raw;
  raw << in.rdbuf();
  const std::string all = raw.str();
  std::vector<std::string> lines;
  for (size_t start = 0; start < all.size();) {
    size_t end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    lines.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The --text values and the lines of each --text-file, in command-line order. The C API takes C
// strings, which end at a NUL byte, so a text holding one is refused rather than cut short.
inline std::vector<std::string> Texts(const Args& args) {
  std::vector<std::string> texts;
  for (const auto& [flag, value] : args.InOrder({"--text", "--text-file"})) {
    if (flag == "--text") {
      texts.push_back(value);
      continue;
    }
    for (std::string& line : ReadLines(value)) {
      if (line.find('\0') != std::string::npos) throw std::runtime_error(value + " holds a NUL byte; texts are C strings, remove it");
      texts.push_back(std::move(line));
    }
  }
  return texts;
}

inline void TokenizeMain(const Args& args, const std::string& bundle) {
  if (!args.Has("--text") && !args.Has("--text-file")) throw UsageError("tokenize needs --text or --text-file");
  const std::vector<std::string> texts = Texts(args);
  const Plan plan = ReadPlan(bundle);
  if (!plan.tokenizer) throw UsageError(bundle + "/runner.plan has no tokenizer line; rebuild the bundle");
  const ModelHandle model(bundle, args, 0, "tokenize");
  for (const std::string& text : texts) std::printf("%s\n", TokenizeJson(model.get(), *plan.tokenizer, text).c_str());
}

}  // namespace edgeclip

#endif  // EDGECLIP_TOKENIZE_COMMAND_H_
