// One input through the C API to its JSON answer: the line the runner's classify, embed and
// tokenize modes print is, byte for byte, the "result" of the same serve request, because both
// build it here (compiled into the runner and into libedgeclip's edgeclip_handle_request).
#ifndef EDGECLIP_RESULTS_H_
#define EDGECLIP_RESULTS_H_

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgeclip.h"
#include "plan.h"
#include "report.h"

namespace edgeclip {

// `status` when it is not -1, else the library's error as an exception.
inline int Checked(int status) {
  if (status == -1) throw std::runtime_error(edgeclip_last_error());
  return status;
}

// A float as JSON: nine significant digits, enough to give back the same float32.
inline std::string FloatJson(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
  return buf;
}

inline std::string FloatsJson(const std::vector<float>& values) {
  std::string json = "[";
  for (size_t i = 0; i < values.size(); ++i) json += (i ? ", " : "") + FloatJson(values[i]);
  return json + "]";
}

inline std::string IdsJson(const std::vector<long long>& values) {
  std::string json = "[";
  for (size_t i = 0; i < values.size(); ++i) json += (i ? ", " : "") + std::to_string(values[i]);
  return json + "]";
}

// {"image": PATH, "top": [{"label": L, "p": P}, ...]}: the `top` likeliest of the model's labels first.
inline std::string ClassifyJson(edgeclip_model* model, const std::string& image, int top) {
  const int count = edgeclip_label_count(model);
  std::vector<float> embedding(static_cast<size_t>(Checked(edgeclip_embedding_dim(model)))),
      probs(static_cast<size_t>(count));
  Checked(edgeclip_embed_image_file(model, image.c_str(), embedding.data()));
  Checked(edgeclip_classify(model, embedding.data(), probs.data()));
  std::vector<int> order(probs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
  std::string json = "{\"image\": " + Quoted(image) + ", \"top\": [";
  for (int i = 0; i < std::min(top, count); ++i) {
    json += (i ? ", " : "") + std::string("{\"label\": ") + Quoted(edgeclip_label(model, order[i])) +
            ", \"p\": " + FloatJson(probs[order[i]]) + "}";
  }
  return json + "]}";
}

// {"image"|"text": INPUT, "embedding": [...]}: one input's line, however its embedding was computed.
inline std::string EmbeddingJson(bool image, const std::string& input, const std::vector<float>& embedding) {
  return std::string("{\"") + (image ? "image" : "text") + "\": " + Quoted(input) +
         ", \"embedding\": " + FloatsJson(embedding) + "}";
}

// {"image": PATH, "embedding": [...]} or {"text": TEXT, "embedding": [...]}.
inline std::string EmbedJson(edgeclip_model* model, bool image, const std::string& input) {
  std::vector<float> embedding(static_cast<size_t>(Checked(edgeclip_embedding_dim(model))));
  Checked(image ? edgeclip_embed_image_file(model, input.c_str(), embedding.data())
                : edgeclip_embed_text(model, input.c_str(), embedding.data()));
  return EmbeddingJson(image, input, embedding);
}

// {"ids": [...]} plus "mask" when the text tower (as the plan's tokenizer line says) takes one.
inline std::string TokenizeJson(edgeclip_model* model, const TokenizerSpec& spec, const std::string& text) {
  std::vector<long long> ids(spec.context);
  const int length = Checked(edgeclip_tokenize(model, text.c_str(), ids.data(), static_cast<int>(ids.size())));
  std::string json = "{\"ids\": " + IdsJson(ids);
  if (std::find(spec.inputs.begin(), spec.inputs.end(), "attention_mask") != spec.inputs.end()) {
    std::vector<long long> real(ids.size(), 0);
    std::fill(real.begin(), real.begin() + length, 1);
    json += ", \"mask\": " + IdsJson(real);
  }
  return json + "}";
}

// One query's JSON line: what was asked, then the hits with each item's text (and line) or path.
inline std::string HitsJson(const edgeclip_index* index, const std::string& asked, const std::vector<int>& ids,
                            const std::vector<float>& scores, int found) {
  const bool image_items = edgeclip_index_tower(index) == EDGECLIP_IMAGE;
  std::string json = asked + ", \"results\": [";
  for (int i = 0; i < found; ++i) {
    const int id = ids[static_cast<size_t>(i)];
    json += (i ? ", " : "") + std::string("{\"id\": ") + std::to_string(id);
    if (image_items) {
      json += ", \"path\": " + Quoted(edgeclip_index_item(index, id));
    } else {
      json += ", \"line\": " + std::to_string(edgeclip_index_line(index, id)) + ", \"text\": " +
              Quoted(edgeclip_index_item(index, id));
    }
    json += ", \"score\": " + FloatJson(scores[static_cast<size_t>(i)]) + "}";
  }
  return json + "]";
}

}  // namespace edgeclip

#endif  // EDGECLIP_RESULTS_H_
