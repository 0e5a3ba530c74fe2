// edgeclip-runner: the bundle's command line on the device, with no Python. `edgeclip-runner MODE
// [--flags]`: bench (measure the towers, one JSON object), classify, embed, tokenize (through
// libedgeclip's C API, one JSON line per input), index and search (a corpus's embeddings in an
// index file, and its nearest items to a query), serve (the same as JSON-lines requests to one
// loaded model), preprocess (an image to the image tower's input), cpu (the CPU features it sees).
// Errors: one line on stderr, exit status 1 (this CPU lacks a feature the bundle's code needs:
// variants.h), 2 (usage) or 3 (bad input or a failure).
//
// The bundle folder defaults to the parent of this binary's folder (the binary is bin/ in the
// bundle; libedgeclip and the TVM runtime are found through its RUNPATH, $ORIGIN/../lib). What to
// run is read from `runner.plan` (written by `edgeclip build`), a line-based text file:
//
//   variant NAME FEATURES                     a variant and the CPU features it needs (a,b or -), best first
//   alternative TARGET FEATURES               another target of the arch and what it needs
//   module VARIANT TOWER MODULE.so FUNCTION   a Relax VM executable and its entry function
//   batch N MODULE.so FUNCTION                after a module line: the tower compiled for N rows,
//                                             taking the same params and packed weights
//   data FILE.npy                             an input of the tower (--input replaces them in order)
//   param FILE.npy                            a fixed argument (e.g. weights), after the data
//   packed FILE.npy D0,D1,...                 2-bit packed ternary weights of that uint8 shape,
//                                             stored base-3 (5 trits a byte), after the params
//   expected FILE.npy                         the reference output for the bundled data
//   tokenizer KIND VOCAB CONTEXT INPUTS [lowercase]  the text tower's tokenizer (tokenizer.h)
//   labels NAMES EMBEDDINGS                   baked labels: names one a line, float32 [N, D] unit rows
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <stdexcept>
#include <string>

#include "args.h"
#include "bench.h"
#include "classify_command.h"
#include "cpu_features.h"
#include "embed_command.h"
#include "preprocess_command.h"
#include "search_command.h"
#include "serve_command.h"
#include "tokenize_command.h"

namespace {

using namespace edgeclip;  // NOLINT: the runner is this namespace's one program

struct Mode {
  const char* name;
  const char* usage;
  const char* summary;
  std::set<std::string> single, multi, repeatable;
  void (*main)(const Args&, const std::string& bundle);
};

const Mode kModes[] = {
    {"bench", kBenchUsage, "time the towers and check them against the reference outputs (one JSON object)",
     {"--bundle", "--variant", "--runs", "--warmup", "--threads", "--tower", "--input", "--save-outputs", "--batch",
      "--image"}, {},
     {"--input"}, [](const Args& a, const std::string& b) { BenchMain(ParseBench(a, b)); }},
    {"classify", kClassifyUsage, "rank labels for images (one JSON line per image)",
     {"--bundle", "--variant", "--threads", "--labels", "--labels-file", "--prompt", "--top"}, {"--image"}, {},
     ClassifyMain},
    {"embed", kEmbedUsage, "L2-normalised image or text embeddings (JSON lines, or one .npy with --out)",
     {"--bundle", "--variant", "--threads", "--text", "--text-file", "--out", "--batch"}, {"--image"},
     {"--text", "--text-file"}, EmbedMain},
    {"tokenize", kTokenizeUsage, "the text tower's token ids (and mask) for texts (one JSON line per text)",
     {"--bundle", "--variant", "--threads", "--text", "--text-file"}, {}, {"--text", "--text-file"}, TokenizeMain},
    {"index", kIndexUsage, "embed a corpus (text lines or images) into a search index file",
     {"--bundle", "--variant", "--threads", "--text-file", "--out", "--encoding", "--batch"}, {"--image"}, {},
     IndexMain},
    {"search", kSearchUsage, "the k nearest items of an index to a text, image or vector (JSON lines)",
     {"--bundle", "--variant", "--threads", "--index", "--query", "--image", "--vector", "--k", "--rerank"},
     {}, {}, SearchMain},
    {"serve", kServeUsage, "load once, answer JSON-lines requests on stdin/stdout or a Unix socket",
     {"--bundle", "--variant", "--threads", "--towers", "--socket"}, {}, {}, ServeMain},
    {"cpu", "cpu", "the CPU features this process may use, as the variants are checked (one JSON object)", {}, {}, {},
     [](const Args&, const std::string&) { std::printf("%s\n", CpuFeaturesJson().c_str()); }},
    {"preprocess", kPreprocessUsage, "an image to the image tower's input, as .npy",
     {"--bundle", "--threads", "--image", "--out", "--uint8-out"}, {}, {},
     [](const Args& a, const std::string& b) { PreprocessMain(a, b); }},
};

std::string DefaultBundle(const char* argv0) {
  char path[PATH_MAX];
  std::string self;
  if (std::strchr(argv0, '/') != nullptr && realpath(argv0, path) != nullptr) {
    self = path;
  } else {
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0) throw UsageError("cannot find this binary's folder; pass --bundle DIR");
    self.assign(path, static_cast<size_t>(n));
  }
  std::string bin = self.substr(0, self.rfind('/'));
  return bin.substr(0, bin.rfind('/'));
}

void PrintModes(FILE* to) {
  std::fprintf(to, "usage: edgeclip-runner MODE [--bundle DIR] [--threads N] ...; `edgeclip-runner MODE --help` for one\n");
  for (const Mode& mode : kModes) std::fprintf(to, "  %-11s %s\n", mode.name, mode.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "edgeclip-runner: no mode given; run edgeclip-runner --help for bench, classify, embed, "
                         "tokenize, index, search, serve, preprocess and cpu\n");
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintModes(stdout);
    return 0;
  }
  const Mode* mode = nullptr;
  for (const Mode& m : kModes) {
    if (name == m.name) mode = &m;
  }
  if (mode == nullptr) {
    std::fprintf(stderr, "edgeclip-runner: unknown mode '%s'; the modes are bench, classify, embed, tokenize, "
                         "serve, preprocess and cpu (edgeclip-runner --help)\n", name.c_str());
    return 2;
  }
  try {
    const Args args(argc - 1, argv + 1, mode->single, mode->multi, mode->repeatable);
    if (args.Help()) {
      std::printf("usage: edgeclip-runner %s\n  %s\n", mode->usage, mode->summary);
      return 0;
    }
    mode->main(args, args.Has("--bundle") ? args.One("--bundle") : DefaultBundle(argv[0]));
  } catch (const CpuRefusal& e) {
    std::fprintf(stderr, "edgeclip-runner %s: %s\n", mode->name, e.what());
    return 1;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "edgeclip-runner %s: %s (see edgeclip-runner %s --help)\n", mode->name, e.what(), mode->name);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeclip-runner %s: %s\n", mode->name, e.what());
    return 3;
  }
  return 0;
}
