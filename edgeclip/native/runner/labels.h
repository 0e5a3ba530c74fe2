// Labels to rank images against: their names and unit text embeddings, checked to the runtime's
// limits, either baked into the bundle (the plan's `labels` line) or set at run time through a
// prompt; and CLIP's ranking, a softmax over 100 x cosine.
#ifndef EDGECLIP_LABELS_H_
#define EDGECLIP_LABELS_H_

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "npy.h"
#include "plan.h"

namespace edgeclip {

constexpr size_t kMaxLabels = 10000, kMaxLabelBytes = 256;

struct Labels {
  std::vector<std::string> names;
  std::vector<float> embeddings;  // names.size() rows of D
};

inline void CheckLabels(const std::vector<std::string>& names) {
  if (names.empty()) throw std::invalid_argument("the label list is empty; give at least one label");
  if (names.size() > kMaxLabels) {
    throw std::invalid_argument(std::to_string(names.size()) + " labels are over the limit of " +
                                std::to_string(kMaxLabels));
  }
  for (const std::string& name : names) {
    if (name.empty() || name.size() > kMaxLabelBytes || name.find_first_of("\r\n") != std::string::npos) {
      throw std::invalid_argument("the label '" + name.substr(0, 40) + "' is not 1 to " +
                                  std::to_string(kMaxLabelBytes) + " bytes without a newline");
    }
  }
}

// Each label put into the prompt at its one "{}".
inline std::vector<std::string> Prompted(const std::vector<std::string>& names, const std::string& prompt) {
  CheckLabels(names);
  const size_t at = prompt.find("{}");
  if (at == std::string::npos || prompt.find("{}", at + 1) != std::string::npos) {
    throw std::invalid_argument("the prompt '" + prompt + "' must contain {} exactly once, where the label goes");
  }
  std::vector<std::string> texts;
  for (const std::string& name : names) texts.push_back(prompt.substr(0, at) + name + prompt.substr(at + 2));
  return texts;
}

// The plan's baked labels, checked against each other and the embedding size `dim` (-1: unknown).
inline Labels ReadBakedLabels(const LabelsSpec& spec, int dim) {
  std::ifstream in(spec.names, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the baked label names " + spec.names + "; rebuild the bundle");
  std::stringstream raw;
  raw << in.rdbuf();
  std::string text = raw.str();
  if (!text.empty() && text.back() == '\n') text.pop_back();
  Labels labels;
  for (size_t start = 0; start <= text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    labels.names.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  try {
    CheckLabels(labels.names);
  } catch (const std::exception& e) {
    throw std::runtime_error("the baked labels " + spec.names + ": " + e.what());
  }
  HostArray array = ReadNpy(spec.embeddings);
  const size_t n = labels.names.size();
  if (array.dtype.code != kDLFloat || array.dtype.bits != 32 || array.shape.size() != 2 ||
      array.shape[0] != static_cast<int64_t>(n) || (dim >= 0 && array.shape[1] != dim)) {
    std::string shape;
    for (int64_t d : array.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    throw std::runtime_error("the baked label embeddings " + spec.embeddings + " must be float32 [" +
                             std::to_string(n) + ", " + (dim >= 0 ? std::to_string(dim) : "D") + "], not " +
                             (array.dtype.code == kDLFloat && array.dtype.bits == 32 ? "" : "another dtype ") + "[" +
                             shape + "]; rebuild the bundle with edgeclip build --labels");
  }
  const auto* rows = reinterpret_cast<const float*>(array.bytes.data());
  labels.embeddings.assign(rows, rows + n * static_cast<size_t>(array.shape[1]));
  for (size_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int64_t j = 0; j < array.shape[1]; ++j) norm += double{rows[i * array.shape[1] + j]} * rows[i * array.shape[1] + j];
    if (std::abs(std::sqrt(norm) - 1.0) > 1e-3) {
      throw std::runtime_error("the baked label embedding of '" + labels.names[i] + "' is not L2-normalised; "
                               "rebuild the bundle with edgeclip build --labels");
    }
  }
  return labels;
}

// probs[i] = softmax over labels of 100 x cosine(image, label i).
inline void Softmax100(const Labels& labels, const float* image, size_t dim, float* probs) {
  const size_t n = labels.names.size();
  if (n == 0) throw std::runtime_error("there are no labels; set some with edgeclip_set_labels (--labels)");
  double norm = 0;
  for (size_t j = 0; j < dim; ++j) norm += double{image[j]} * image[j];
  norm = std::max(std::sqrt(norm), 1e-12);
  std::vector<double> logits(n);
  for (size_t i = 0; i < n; ++i) {
    double dot = 0;
    for (size_t j = 0; j < dim; ++j) dot += double{labels.embeddings[i * dim + j]} * image[j];
    logits[i] = 100.0 * dot / norm;
  }
  const double top = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (double& l : logits) sum += (l = std::exp(l - top));
  for (size_t i = 0; i < n; ++i) probs[i] = static_cast<float>(logits[i] / sum);
}

}  // namespace edgeclip

#endif  // EDGECLIP_LABELS_H_
