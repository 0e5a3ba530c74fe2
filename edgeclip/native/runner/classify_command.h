// `edgeclip-runner classify --image FILE... [--labels "a,b" | --labels-file F] [--prompt P] [--top K]`:
// one JSON line per image, {"image": PATH, "top": [{"label": L, "p": P}, ...]}, the K likeliest
// labels first. Without --labels the bundle's baked labels are used and no text tower is loaded.
#ifndef EDGECLIP_CLASSIFY_COMMAND_H_
#define EDGECLIP_CLASSIFY_COMMAND_H_

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.h"
#include "model_handle.h"
#include "results.h"
#include "tokenize_command.h"

namespace edgeclip {

constexpr const char* kClassifyUsage =
    "classify [--bundle DIR] [--variant NAME] [--threads N] --image FILE... "
    "[--labels \"a,b,c\" | --labels-file F] [--prompt \"a photo of a {}\"] [--top K]";

// "a, b,c" -> {"a", "b", "c"}: split on commas, spaces around each label dropped.
inline std::vector<std::string> SplitLabels(const std::string& list) {
  std::vector<std::string> labels;
  if (list.find_first_not_of(" \t") == std::string::npos) return labels;
  for (size_t start = 0; start <= list.size();) {
    const size_t end = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, end - start);
    const size_t first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
    labels.push_back(first == std::string::npos ? "" : item.substr(first, last - first + 1));
    start = end + 1;
  }
  return labels;
}

inline void ClassifyMain(const Args& args, const std::string& bundle) {
  const std::vector<std::string> images = args.All("--image");
  if (images.empty()) throw UsageError("classify needs --image FILE...");
  if (args.Has("--labels") && args.Has("--labels-file")) throw UsageError("give --labels or --labels-file, not both");
  const bool own_labels = args.Has("--labels") || args.Has("--labels-file");
  if (args.Has("--prompt") && !own_labels) {
    throw UsageError("--prompt needs --labels or --labels-file (baked labels keep the prompt they were built with)");
  }
  const int top = args.Int("--top", 5, 1);
  ModelHandle model(bundle, args, own_labels ? EDGECLIP_IMAGE | EDGECLIP_TEXT : EDGECLIP_IMAGE, "classify");
  if (own_labels) {
    const std::vector<std::string> labels =
        args.Has("--labels") ? SplitLabels(args.One("--labels")) : ReadLines(args.One("--labels-file"));
    std::vector<const char*> names;
    for (const std::string& label : labels) names.push_back(label.c_str());
    const std::string prompt = args.One("--prompt", "{}");
    Checked(edgeclip_set_labels(model.get(), names.data(), static_cast<int>(names.size()), prompt.c_str()));
  } else if (edgeclip_label_count(model.get()) == 0) {
    throw std::runtime_error("this bundle has no baked labels; pass --labels or rebuild with edgeclip build --labels");
  }
  for (const std::string& image : images) {
    std::printf("%s\n", ClassifyJson(model.get(), image, top).c_str());
    std::fflush(stdout);
  }
}

}  // namespace edgeclip

#endif  // EDGECLIP_CLASSIFY_COMMAND_H_
