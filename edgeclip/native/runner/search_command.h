// `edgeclip-runner index (--text-file F | --image DIR...) --out INDEX [--encoding int8|binary]`
// embeds a corpus (every line of F, or the images; --batch N items a tower call) and writes an index;
// `edgeclip-runner search --index INDEX (--query T | --image Q | --vector Q.npy) [--k 10]` prints
// one JSON line per query: {"query"|"image"|"vector": ..., "results": [{"id", "line", "text" |
// "path", "score"}, ...]}. --vector takes float32 [N, D] query rows and needs no model. "ms" is
// the search call's own time in this process (embedding the query included; not the process start).
#ifndef EDGECLIP_SEARCH_COMMAND_H_
#define EDGECLIP_SEARCH_COMMAND_H_

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.h"
#include "edgeclip.h"
#include "embed_command.h"
#include "model_handle.h"
#include "npy.h"
#include "report.h"
#include "results.h"
#include "tokenize_command.h"

namespace edgeclip {

constexpr const char* kIndexUsage =
    "index [--bundle DIR] [--variant ternary|fp32] [--threads N] (--text-file F | --image FILE|DIR...) --out INDEX "
    "[--encoding int8|binary] [--batch N]";
constexpr const char* kSearchUsage =
    "search [--bundle DIR] [--variant ternary|fp32] [--threads N] --index INDEX (--query T | --image FILE | --vector "
    "Q.npy) [--k 10] [--rerank N]";

inline void IndexMain(const Args& args, const std::string& bundle) {
  const bool images = args.Has("--image"), texts = args.Has("--text-file");
  if (images == texts) throw UsageError("index needs --text-file F or --image FILE|DIR..., not both");
  if (!args.Has("--out")) throw UsageError("index needs --out INDEX, the file to write");
  const int batch = args.Int("--batch", 1, 1);
  if (batch > kMaxBatch) throw UsageError("--batch needs a whole number from 1 to " + std::to_string(kMaxBatch));
  const std::string encoding = args.One("--encoding", "int8");
  if (encoding != "binary" && encoding != "int8") throw UsageError("--encoding must be binary or int8, not '" + encoding + "'");
  const std::vector<std::string> items = images ? ExpandImages(args.All("--image")) : Texts(args);
  if (items.empty()) throw std::runtime_error("the corpus is empty; give a text file with lines or some images");
  const int tower = images ? EDGECLIP_IMAGE : EDGECLIP_TEXT;
  ModelHandle model(bundle, args, tower, "index");
  std::vector<const char*> pointers;
  for (const std::string& item : items) pointers.push_back(item.c_str());
  const std::string out = args.One("--out");
  Checked(edgeclip_index_build(model.get(), tower, pointers.data(), nullptr, static_cast<int>(items.size()), batch,
                               encoding.c_str(), out.c_str()));
  std::printf("{\"out\": %s, \"count\": %zu, \"dim\": %d, \"encoding\": %s}\n", Quoted(out).c_str(), items.size(),
              model.Dim(), Quoted(encoding).c_str());
}

inline void SearchMain(const Args& args, const std::string& bundle) {
  const int given = args.Has("--query") + args.Has("--image") + args.Has("--vector");
  if (given != 1) throw UsageError("search needs one of --query T, --image FILE or --vector Q.npy");
  if (!args.Has("--index")) throw UsageError("search needs --index INDEX (made by edgeclip-runner index)");
  const int k = args.Int("--k", 10, 1), rerank = args.Int("--rerank", 0, 0);
  if (k > 1000) throw UsageError("--k needs a whole number from 1 to 1000");
  std::unique_ptr<edgeclip_index, void (*)(edgeclip_index*)> index(edgeclip_index_open(args.One("--index").c_str()),
                                                                   edgeclip_index_close);
  if (!index) throw std::runtime_error(edgeclip_last_error());
  std::vector<int> ids(static_cast<size_t>(k));
  std::vector<float> scores(static_cast<size_t>(k));
  if (args.Has("--vector")) {
    const HostArray queries = ReadNpy(args.One("--vector"));
    const int64_t dim = edgeclip_index_dim(index.get());
    if (queries.dtype.code != kDLFloat || queries.dtype.bits != 32 || queries.shape.size() != 2 || queries.shape[1] != dim) {
      throw std::runtime_error(args.One("--vector") + " is not a float32 [N, " + std::to_string(dim) + "] .npy");
    }
    const float* rows = reinterpret_cast<const float*>(queries.bytes.data());
    for (int64_t q = 0; q < queries.shape[0]; ++q) {
      const auto start = std::chrono::steady_clock::now();
      const int found = Checked(edgeclip_search_vector(index.get(), rows + q * dim, k, rerank, ids.data(), scores.data()));
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::string line = HitsJson(index.get(), "{\"vector\": " + std::to_string(q), ids, scores, found);
      std::printf("%s, \"ms\": %s}\n", line.c_str(), Num(ms).c_str());
    }
    return;
  }
  const bool image = args.Has("--image");
  ModelHandle model(bundle, args, image ? EDGECLIP_IMAGE : EDGECLIP_TEXT, "search");
  const std::string query = args.One(image ? "--image" : "--query");
  const auto start = std::chrono::steady_clock::now();
  const int found = Checked(image ? edgeclip_search_image(model.get(), index.get(), query.c_str(), k, rerank, ids.data(),
                                                          scores.data())
                                  : edgeclip_search_text(model.get(), index.get(), query.c_str(), k, rerank, ids.data(),
                                                         scores.data()));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const std::string asked = std::string("{\"") + (image ? "image" : "query") + "\": " + Quoted(query);
  std::printf("%s, \"ms\": %s}\n", HitsJson(index.get(), asked, ids, scores, found).c_str(), Num(ms).c_str());
}

}  // namespace edgeclip

#endif  // EDGECLIP_SEARCH_COMMAND_H_
