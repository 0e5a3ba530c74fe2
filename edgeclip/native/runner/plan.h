// The runner's plan: `runner.plan`, written by `edgeclip build`, says which modules to load and
// what to feed them (format: see edgeclip_runner.cc).
#ifndef EDGECLIP_PLAN_H_
#define EDGECLIP_PLAN_H_

#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edgeclip {

// `batch N MODULE.so FUNCTION`: the tower compiled for N rows a call, taking the tower's params and
// packed weights (the same tensors as its batch 1 module) after its N-row data inputs.
struct BatchModule {
  int batch = 0;
  std::string module_path, function;
};

constexpr int kMaxBatch = 64;  // as edgeclip.formats.manifest.MAX_BATCH

// `packed FILE SHAPE [from STORED]`: a stored ternary weight, unpacked to a uint8 array of SHAPE;
// with `from`, the stream is another kernel family's tiling (uint8 STORED) of the same trits,
// re-tiled at load (a fat x86 bundle stores its weights once, in the AVX-512 layout).
struct PackedWeight {
  std::string path;
  std::vector<int64_t> shape, stored_shape;  // stored_shape empty: the stream is SHAPE's own
};

struct Tower {
  std::string variant, name, module_path, function;
  std::vector<std::string> data, params, expected;
  std::vector<PackedWeight> packed;
  std::vector<BatchModule> batches;  // ascending, all over 1
};

// `tokenizer KIND VOCAB CONTEXT INPUT[,INPUT] [lowercase]`: what `edgeclip-runner tokenize` runs.
struct TokenizerSpec {
  std::string kind, vocab;
  size_t context = 0;
  std::vector<std::string> inputs;
  bool lowercase = false;
};

// `labels NAMES EMBEDDINGS`: labels baked in at build time, their names (UTF-8, one a line) and
// their text embeddings (float32 .npy [N, D], rows L2-normalised).
struct LabelsSpec {
  std::string names, embeddings;
};

// `variant NAME FEATURES` / `alternative TARGET FEATURES`: the CPU features (Linux names,
// cpu_features.h) a variant's modules need, or another target of the bundle's arch and what it
// needs. FEATURES is comma-separated, `-` for none. Variants are listed best first.
struct CpuNeeds {
  std::string name;
  std::vector<std::string> features;
};

constexpr size_t kMaxPlanEntries = 64;  // variant or alternative lines a plan may hold

struct Plan {
  std::vector<CpuNeeds> variants, alternatives;  // a variant with no line needs nothing
  std::vector<Tower> towers;
  std::optional<TokenizerSpec> tokenizer;
  std::optional<LabelsSpec> labels;
};

inline TokenizerSpec ParseTokenizer(std::istringstream& words, const std::string& bundle, const std::string& line) {
  TokenizerSpec spec;
  std::string inputs, flag;
  long long context = 0;
  if (!(words >> spec.kind >> spec.vocab >> context >> inputs) || context < 2) {
    throw std::runtime_error("runner.plan: bad tokenizer line: " + line);
  }
  spec.vocab = bundle + "/" + spec.vocab;
  spec.context = static_cast<size_t>(context);
  std::stringstream names(inputs);
  for (std::string name; std::getline(names, name, ',');) spec.inputs.push_back(name);
  while (words >> flag) {
    if (flag != "lowercase") throw std::runtime_error("runner.plan: unknown tokenizer flag '" + flag + "'");
    spec.lowercase = true;
  }
  return spec;
}

inline CpuNeeds ParseNeeds(std::istringstream& words, const std::string& line) {
  CpuNeeds needs;
  std::string list, extra;
  if (!(words >> needs.name >> list) || (words >> extra)) {
    throw std::runtime_error("runner.plan: a variant or alternative line is `KIND NAME FEATURES` (comma-separated, "
                             "- for none): " + line);
  }
  std::stringstream names(list == "-" ? "" : list);
  for (std::string name; std::getline(names, name, ',');) {
    if (name.empty() || name.size() > 32 || needs.features.size() >= kMaxPlanEntries) {
      throw std::runtime_error("runner.plan: bad feature list: " + line);
    }
    needs.features.push_back(name);
  }
  return needs;
}

inline std::vector<int64_t> ParseShape(std::istringstream& words, const std::string& line) {
  std::string text;
  std::vector<int64_t> shape;
  if (words >> text) {
    std::stringstream dims(text);
    for (std::string dim; std::getline(dims, dim, ',');) shape.push_back(std::stoll(dim));
  }
  if (shape.empty()) throw std::runtime_error("runner.plan: a packed line needs a shape: " + line);
  return shape;
}

inline PackedWeight ParsePacked(const std::string& path, std::istringstream& words, const std::string& line) {
  PackedWeight weight{path, ParseShape(words, line), {}};
  std::string from, extra;
  if (words >> from) {
    if (from != "from") throw std::runtime_error("runner.plan: a packed line is `packed FILE SHAPE [from STORED]`: " + line);
    weight.stored_shape = ParseShape(words, line);
  }
  if (words >> extra) throw std::runtime_error("runner.plan: a packed line is `packed FILE SHAPE [from STORED]`: " + line);
  return weight;
}

inline Plan ReadPlan(const std::string& bundle) {
  std::ifstream in(bundle + "/runner.plan");
  if (!in) throw std::runtime_error("cannot read " + bundle + "/runner.plan; is this an extracted bundle?");
  Plan plan;
  std::vector<Tower>& towers = plan.towers;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind, path;
    if (!(words >> kind) || kind[0] == '#') continue;
    if (kind == "module") {
      Tower t;
      words >> t.variant >> t.name >> t.module_path >> t.function;
      if (t.function.empty()) throw std::runtime_error("runner.plan: bad module line: " + line);
      towers.push_back(t);
      continue;
    }
    if (kind == "variant" || kind == "alternative") {
      std::vector<CpuNeeds>& list = kind == "variant" ? plan.variants : plan.alternatives;
      if (list.size() >= kMaxPlanEntries) throw std::runtime_error("runner.plan: too many " + kind + " lines");
      list.push_back(ParseNeeds(words, line));
      continue;
    }
    if (kind == "tokenizer") {
      plan.tokenizer = ParseTokenizer(words, bundle, line);
      continue;
    }
    if (kind == "batch") {
      BatchModule b;
      std::string extra;
      if (towers.empty() || !(words >> b.batch >> b.module_path >> b.function) || (words >> extra) ||
          b.batch <= (towers.back().batches.empty() ? 1 : towers.back().batches.back().batch) || b.batch > kMaxBatch) {
        throw std::runtime_error("runner.plan: a batch line is `batch N MODULE.so FUNCTION` after its module line, "
                                 "N ascending from 2 to " + std::to_string(kMaxBatch) + ": " + line);
      }
      towers.back().batches.push_back(b);
      continue;
    }
    if (kind == "labels") {
      LabelsSpec labels;
      std::string extra;
      if (!(words >> labels.names >> labels.embeddings) || (words >> extra)) {
        throw std::runtime_error("runner.plan: a labels line is `labels NAMES EMBEDDINGS`: " + line);
      }
      plan.labels = LabelsSpec{bundle + "/" + labels.names, bundle + "/" + labels.embeddings};
      continue;
    }
    if (towers.empty() || !(words >> path)) throw std::runtime_error("runner.plan: bad line: " + line);
    path = bundle + "/" + path;
    if (kind == "packed") towers.back().packed.push_back(ParsePacked(path, words, line));
    else if (kind == "data") towers.back().data.push_back(path);
    else if (kind == "param") towers.back().params.push_back(path);
    else if (kind == "expected") towers.back().expected.push_back(path);
    else throw std::runtime_error("runner.plan: unknown line kind '" + kind + "'");
  }
  return plan;
}

}  // namespace edgeclip

#endif  // EDGECLIP_PLAN_H_
