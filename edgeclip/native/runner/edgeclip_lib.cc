// libedgeclip.so: the C API of edgeclip.h over the bundle's towers, preprocessing, tokenizer and
// labels. Built with -fvisibility=hidden: only the edgeclip_* functions are exported (stb_image
// and the C++ internals stay private), so an application links against nothing but this API.
#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#pragma GCC visibility push(default)
#include "edgeclip.h"
#pragma GCC visibility pop

#include "host.h"
#include "image_decode.h"
#include "index_file.h"
#include "index_scan.h"
#include "labels.h"
#include "plan.h"
#include "preprocess.h"
#include "request.h"
#include "results.h"
#include "tensors.h"
#include "tokenizer.h"
#include "tower.h"
#include "variants.h"

namespace {

using namespace edgeclip;  // NOLINT: this file is the namespace's C face

thread_local std::string last_error;

}  // namespace

struct edgeclip_index {
  edgeclip::IndexFile file;
  std::vector<std::string> items;  // NUL-terminated copies, made on first edgeclip_index_item
};

struct edgeclip_model {
  std::string bundle, variant;
  Plan plan;
  // Where more of each tower's batch sizes are loaded from (edgeclip build --batch).
  const Tower* image_plan = nullptr;
  const Tower* text_plan = nullptr;
  std::optional<TowerProgram> image, text;
  std::optional<Preprocessing> preprocessing;
  std::unique_ptr<Tokenizer> tokenizer;
  int dim = -1;
  size_t text_inputs = 0;  // the text tower's data inputs: ids, then the mask when it takes one
  Labels labels;
  // The labels of the last serve request that gave its own, embedded with its prompt.
  Labels request_labels;
  std::string request_prompt;
  // The index of the last serve search request, reopened when the path or the file changes.
  std::unique_ptr<edgeclip_index> request_index;
  std::string request_index_key;

  // The tower's first output, `rows` rows flattened and each L2-normalised, into out[rows * dim].
  void Normalised(const tvm::ffi::Any& result, size_t rows, float* out) const {
    std::vector<double> values = AsDoubles(*Flatten(result)[0].GetDLTensorPtr());
    if (values.size() != rows * static_cast<size_t>(dim)) {
      throw std::runtime_error("a tower returned " + std::to_string(values.size()) + " values, not the " +
                               std::to_string(rows) + " x " + std::to_string(dim) +
                               " of the bundle's reference output; rebuild the bundle");
    }
    for (size_t r = 0; r < rows; ++r) {
      const double* row = &values[r * dim];
      double norm = 0;
      for (int i = 0; i < dim; ++i) norm += row[i] * row[i];
      norm = std::max(std::sqrt(norm), 1e-12);
      for (int i = 0; i < dim; ++i) out[r * dim + i] = static_cast<float>(row[i] / norm);
    }
  }

  void Embed(const TowerProgram& tower, float* out) const {
    tvm::ffi::Any result;
    RunTower(tower, &result);
    Normalised(result, 1, out);
  }

  // `rgb` preprocessed into row `row` of the image tower's input `input`.
  void Preprocess(const Image& rgb, const tvm::ffi::Tensor& input, size_t row) const {
    WriteImageRow(Normalise(ResizeAndCrop(rgb, *preprocessing), *preprocessing), input, row);
  }

  void EmbedImage(const Image& rgb, float* out) {
    const TowerProgram& tower = Need(image, "image");
    if (tower.data_count == 0) throw std::runtime_error("the image tower takes no input; rebuild the bundle");
    Preprocess(rgb, tower.args[0], 0);
    Embed(tower, out);
  }

  // `count` items through the tower's compiled batch sizes up to `batch`, the largest that fits
  // the items left each call (8, then 1, 1, 1 for 11 items on a 1,8 bundle), so no call computes
  // padding: `single(i, out)` embeds item i alone, `fill(i, inputs, row)` writes it into row
  // `row` of a batch's data inputs.
  template <class Single, class Fill>
  void EmbedInBatches(TowerProgram& tower, const Tower& tower_plan, size_t count, int batch, float* out,
                      const Single& single, const Fill& fill) {
    LoadBatches(bundle, tower_plan, batch, &tower);  // only on first use of a size
    for (size_t done = 0; done < count;) {
      const BatchProgram* fit = nullptr;
      for (const BatchProgram& b : tower.batches) {
        if (b.batch <= batch && static_cast<size_t>(b.batch) <= count - done) fit = &b;
      }
      if (fit == nullptr) {
        single(done, out + done * dim);
        ++done;
        continue;
      }
      for (int r = 0; r < fit->batch; ++r) fill(done + static_cast<size_t>(r), fit->data, static_cast<size_t>(r));
      tvm::ffi::Any result;
      RunBatch(tower, *fit, &result);
      Normalised(result, static_cast<size_t>(fit->batch), out + done * dim);
      done += static_cast<size_t>(fit->batch);
    }
  }

  void EmbedImageFiles(const std::vector<std::string>& paths, int batch, float* out) {
    EmbedInBatches(
        *image, *image_plan, paths.size(), batch, out,
        [&](size_t i, float* row) { EmbedImage(DecodeImage(paths[i]), row); },
        [&](size_t i, const std::vector<tvm::ffi::Tensor>& inputs, size_t row) {
          Preprocess(DecodeImage(paths[i]), inputs[0], row);
        });
  }

  void EmbedTexts(const std::vector<std::string>& texts, int batch, float* out) {
    Need(text, "text");
    EmbedInBatches(
        *text, *text_plan, texts.size(), batch, out,
        [&](size_t i, float* row) { EmbedText(texts[i], row); },
        [&](size_t i, const std::vector<tvm::ffi::Tensor>& inputs, size_t row) { WriteTokens(texts[i], inputs, row); });
  }

  // The ids (and mask) of `utf8` written into row `row` of the text tower's data inputs `inputs`.
  void WriteTokens(const std::string& utf8, const std::vector<tvm::ffi::Tensor>& inputs, size_t row) {
    size_t length = 0;
    const std::vector<int64_t> ids = NeedTokenizer().Encode(utf8, &length);
    const std::vector<std::string>& names = plan.tokenizer->inputs;
    for (size_t i = 0; i < names.size() && i < text_inputs; ++i) {
      std::vector<int64_t> values = ids;
      if (names[i] == "attention_mask") {
        for (size_t j = 0; j < values.size(); ++j) values[j] = j < length ? 1 : 0;
      } else if (names[i] != "input_ids") {
        throw std::runtime_error("the text tower's input '" + names[i] + "' is not input_ids or attention_mask");
      }
      FillIntegers(inputs[i], values, row);
    }
  }

  void EmbedText(const std::string& utf8, float* out) {
    const TowerProgram& tower = Need(text, "text");
    WriteTokens(utf8, tower.args, 0);
    Embed(tower, out);
  }

  // Each name put into `prompt` and embedded by the text tower.
  Labels EmbedLabels(const std::vector<std::string>& names, const std::string& prompt) {
    Need(text, "text");
    const std::vector<std::string> texts = Prompted(names, prompt);
    Labels fresh{names, std::vector<float>(names.size() * static_cast<size_t>(dim))};
    for (size_t i = 0; i < texts.size(); ++i) EmbedText(texts[i], &fresh.embeddings[i * dim]);
    return fresh;
  }

  // One serve request's result (results.h, as the runner's modes print it).
  std::string Answer(const Request& r) {
    if (r.op == "tokenize") {
      NeedTokenizer();
      return TokenizeJson(this, *plan.tokenizer, *r.text);
    }
    if (r.op == "embed") return EmbedJson(this, r.image.has_value(), r.image ? *r.image : *r.text);
    if (r.op == "search") return SearchAnswer(r);
    if (!r.labels) {
      if (labels.names.empty()) {
        throw std::runtime_error("this bundle has no baked labels; give \"labels\" in the request or rebuild with "
                                 "edgeclip build --labels");
      }
      return ClassifyJson(this, *r.image, r.top);
    }
    const std::string prompt = r.prompt.value_or("{}");
    if (request_labels.names != *r.labels || request_prompt != prompt) {
      request_labels = EmbedLabels(*r.labels, prompt);
      request_prompt = prompt;
    }
    // The request's labels stand in for the model's own for this one answer, even if it fails.
    struct Lend {
      Labels &a, &b;
      ~Lend() { std::swap(a, b); }
    } lend{labels, request_labels};
    std::swap(labels, request_labels);
    return ClassifyJson(this, *r.image, r.top);
  }

  // Who this model is for an index embedded by its tower `name` (loaded or not): the manifest's
  // name, the variant, and that tower module's sha256 as the manifest lists it.
  ModelIdentity Identity(const std::string& name) const {
    const Tower* found = nullptr;
    for (const Tower& t : plan.towers) {
      if (t.variant == variant && t.name == name) found = &t;
    }
    if (found == nullptr) throw std::runtime_error("the bundle has no " + variant + " " + name + " tower");
    std::ifstream in(bundle + "/manifest.json", std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const Json manifest = JsonReader::Parse(text.str());
    const Json* bundle_name = manifest.Find("name");
    const Json* members = manifest.Find("members");
    const Json* entry = members ? members->Find(found->module_path) : nullptr;
    const Json* sha = entry ? entry->Find("sha256") : nullptr;
    if (bundle_name == nullptr || sha == nullptr || sha->kind != Json::kString) {
      throw std::runtime_error("the bundle's manifest does not list " + found->module_path + "; rebuild the bundle");
    }
    return {bundle_name->text, name, variant, sha->text};
  }

  // The index's items must come from this model, or their scores against its queries mean nothing.
  void CheckIndex(const IndexFile& index) const {
    const ModelIdentity mine = Identity(index.model().tower);
    if (!(mine == index.model()) || static_cast<uint32_t>(dim) != index.dim()) {
      throw std::runtime_error("the index " + index.path() + " was built by " + index.model().Describe() + ", not by " +
                               mine.Describe() + "; rebuild the index with this bundle or search with that one");
    }
  }

  // {"query"|"image": ..., "results": [...]}, as edgeclip-runner search prints it less its "ms".
  std::string SearchAnswer(const Request& r) {
    struct stat info{};
    const std::string key = stat(r.index->c_str(), &info) == 0
                                ? *r.index + "|" + std::to_string(info.st_mtime) + "|" + std::to_string(info.st_size)
                                : "";
    if (!request_index || key.empty() || key != request_index_key) {
      request_index.reset();
      request_index.reset(new edgeclip_index{IndexFile(*r.index), {}});
      request_index_key = key;
    }
    std::vector<int> ids(static_cast<size_t>(r.k));
    std::vector<float> scores(static_cast<size_t>(r.k));
    const edgeclip_index* index = request_index.get();
    const int found = Checked(r.image ? edgeclip_search_image(this, index, r.image->c_str(), r.k, 0, ids.data(), scores.data())
                                      : edgeclip_search_text(this, index, r.text->c_str(), r.k, 0, ids.data(), scores.data()));
    const std::string asked = r.image ? "{\"image\": " + Quoted(*r.image) : "{\"query\": " + Quoted(*r.text);
    return HitsJson(index, asked, ids, scores, found) + "}";
  }

  Tokenizer& NeedTokenizer() {
    if (!tokenizer) {
      if (!plan.tokenizer) throw std::runtime_error(bundle + "/runner.plan has no tokenizer line; rebuild the bundle");
      tokenizer = std::make_unique<Tokenizer>(*plan.tokenizer);
    }
    return *tokenizer;
  }

  static const TowerProgram& Need(const std::optional<TowerProgram>& tower, const char* name) {
    if (!tower) {
      throw std::runtime_error(std::string("the ") + name + " tower is not loaded; open the model with EDGECLIP_" +
                               (name[0] == 'i' ? "IMAGE" : "TEXT"));
    }
    return *tower;
  }

  // Row `row` of an integer tensor [rows, n] set to `values` (n of them).
  static void FillIntegers(const tvm::ffi::Tensor& tensor, const std::vector<int64_t>& values, size_t row) {
    const DLTensor& t = *tensor.GetDLTensorPtr();
    size_t n = 1;
    for (int i = 1; i < t.ndim; ++i) n *= static_cast<size_t>(t.shape[i]);
    if (t.ndim < 1 || n != values.size() || row >= static_cast<size_t>(t.shape[0]) || t.dtype.code != kDLInt ||
        (t.dtype.bits != 64 && t.dtype.bits != 32)) {
      throw std::runtime_error("the text tower's inputs are not " + std::to_string(values.size()) +
                               " int32/int64 tokens a row; rebuild the bundle");
    }
    char* base = static_cast<char*>(t.data) + t.byte_offset;
    for (size_t i = 0; i < n; ++i) {
      if (t.dtype.bits == 64) reinterpret_cast<int64_t*>(base)[row * n + i] = values[i];
      else reinterpret_cast<int32_t*>(base)[row * n + i] = static_cast<int32_t>(values[i]);
    }
  }
};

namespace {

constexpr int kMaxSearchK = 1000;
constexpr size_t kDefaultRerank = 100;

// Checks shared by the search calls; the hits into ids/scores, returning how many.
int SearchInto(const edgeclip_index* index, const float* query, int k, int rerank, int* ids, float* scores) {
  if (index == nullptr) throw std::invalid_argument("the index is NULL; edgeclip_index_open failed");
  if (query == nullptr || ids == nullptr || scores == nullptr) throw std::invalid_argument("an argument is NULL");
  if (k < 1 || k > kMaxSearchK || rerank < 0) {
    throw std::invalid_argument("k must be 1 to " + std::to_string(kMaxSearchK) + " and rerank 0 or more");
  }
  const std::vector<Hit> hits = Search(index->file, query, static_cast<size_t>(k),
                                       rerank == 0 ? kDefaultRerank : static_cast<size_t>(rerank));
  for (size_t i = 0; i < hits.size(); ++i) ids[i] = static_cast<int>(hits[i].id), scores[i] = hits[i].score;
  return static_cast<int>(hits.size());
}

// The output length of a tower: the size of its reference output in the plan.
int OutputDim(const Tower& tower) {
  if (tower.expected.empty()) throw std::runtime_error("the " + tower.name + " tower has no reference output; rebuild the bundle");
  HostArray ref = ReadNpy(tower.expected[0]);
  int64_t n = 1;
  for (int64_t d : ref.shape) n *= d;
  return static_cast<int>(n);
}

edgeclip_model* Open(const char* bundle_dir, const char* variant_or_null, int towers, int threads) {
  if (bundle_dir == nullptr) throw std::invalid_argument("edgeclip_open needs a bundle folder");
  if (towers & ~(EDGECLIP_IMAGE | EDGECLIP_TEXT)) throw std::invalid_argument("towers must be EDGECLIP_IMAGE | EDGECLIP_TEXT");
  auto model = std::make_unique<edgeclip_model>();
  model->bundle = bundle_dir;
  model->plan = ReadPlan(model->bundle);
  std::vector<std::string> wanted;
  if (towers & EDGECLIP_IMAGE) wanted.push_back("image");
  if (towers & EDGECLIP_TEXT) wanted.push_back("text");
  // Before any module loads: code for features this CPU lacks would die of SIGILL.
  const std::string named = variant_or_null ? variant_or_null : "";
  model->variant = towers == 0 ? named : ChooseVariant(model->plan, named, wanted, DetectCpuFeatures());
  const std::string& variant = model->variant;
  ChooseThreads(threads);
  for (const auto& [bit, name] : {std::pair{EDGECLIP_IMAGE, "image"}, std::pair{EDGECLIP_TEXT, "text"}}) {
    if (!(towers & bit)) continue;
    const Tower* found = nullptr;
    bool any_variant = false;
    for (const Tower& t : model->plan.towers) {
      if (t.variant == variant && t.name == name) found = &t;
      any_variant = any_variant || t.name == name;
    }
    if (!any_variant) {  // an embedding bundle of one tower (a sentence encoder is text only)
      const std::string other = bit == EDGECLIP_IMAGE ? "text" : "image";
      throw std::runtime_error("this bundle has no " + std::string(name) + " tower: it embeds " + other +
                               " only (embed --" + other + "); classifying needs a CLIP bundle with both towers");
    }
    if (found == nullptr) {
      throw std::runtime_error("the bundle has no " + variant + " " + name + " tower; rebuild it with --towers image,text" +
                               (variant == "fp32" ? " --baseline fp32" : ""));
    }
    const int dim = OutputDim(*found);
    if (model->dim >= 0 && dim != model->dim) {
      throw std::runtime_error("the image and text towers give " + std::to_string(model->dim) + " and " +
                               std::to_string(dim) + " values; they do not share an embedding space");
    }
    model->dim = dim;
    (bit == EDGECLIP_IMAGE ? model->image : model->text) = LoadTower(model->bundle, *found, {});
    if (bit == EDGECLIP_TEXT) model->text_inputs = found->data.size();
    (bit == EDGECLIP_IMAGE ? model->image_plan : model->text_plan) = found;

  }
  if (model->image) model->preprocessing = ReadPreprocessing(model->bundle);
  if (model->plan.labels) model->labels = ReadBakedLabels(*model->plan.labels, model->dim);
  return model.release();
}

// Runs `body`, turning any exception into edgeclip_last_error() and `failed`.
template <typename Result, typename Body>
Result Guard(Result failed, Body body) {
  try {
    last_error.clear();
    return body();
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown error";
  }
  for (char& c : last_error) {
    if (c == '\n' || c == '\r') c = ' ';  // one line
  }
  return failed;
}

void NeedModel(const void* model, const void* buffer) {
  if (model == nullptr) throw std::invalid_argument("the model is NULL; edgeclip_open failed");
  if (buffer == nullptr) throw std::invalid_argument("an argument is NULL");
}

// A query the model embeds (after checking the index is its own), then searched.
template <typename Embed>
int SearchEmbedded(edgeclip_model* model, const edgeclip_index* index, int k, int rerank, int* ids, float* scores,
                   Embed embed) {
  NeedModel(model, index);
  model->CheckIndex(index->file);
  std::vector<float> query(static_cast<size_t>(std::max(model->dim, 1)));
  embed(query.data());
  return SearchInto(index, query.data(), k, rerank, ids, scores);
}

}  // namespace

extern "C" {

edgeclip_model* edgeclip_open(const char* bundle_dir, const char* variant, int towers, int threads) {
  return Guard(static_cast<edgeclip_model*>(nullptr), [&] { return Open(bundle_dir, variant, towers, threads); });
}

void edgeclip_close(edgeclip_model* model) { delete model; }

const char* edgeclip_last_error(void) { return last_error.c_str(); }

const char* edgeclip_variant(const edgeclip_model* model) { return model == nullptr ? nullptr : model->variant.c_str(); }

int edgeclip_embedding_dim(const edgeclip_model* model) {
  return Guard(-1, [&] {
    NeedModel(model, model);
    if (model->dim < 0) throw std::runtime_error("no tower is loaded; open the model with EDGECLIP_IMAGE or EDGECLIP_TEXT");
    return model->dim;
  });
}

int edgeclip_embed_image_file(edgeclip_model* model, const char* path, float* out) {
  return Guard(-1, [&] {
    NeedModel(model, path);
    NeedModel(model, out);
    edgeclip_model::Need(model->image, "image");
    model->EmbedImage(DecodeImage(path), out);
    return 0;
  });
}

namespace {

// A batch call's `count` strings, after checking the count and batch it gives (`call` names it).
std::vector<std::string> BatchItems(const char* const* items, int count, int batch, const char* call, const char* what) {
  if (count < 0 || batch < 1 || batch > kMaxBatch) {
    throw std::invalid_argument(std::string(call) + " needs a count of 0 or more and a batch from 1 to " +
                                std::to_string(kMaxBatch));
  }
  std::vector<std::string> strings;
  for (int i = 0; i < count; ++i) {
    if (items[i] == nullptr) throw std::invalid_argument(std::string(what) + " " + std::to_string(i) + " is NULL");
    strings.emplace_back(items[i]);
  }
  return strings;
}

}  // namespace

int edgeclip_embed_image_files(edgeclip_model* model, const char* const* paths, int count, int batch, float* out) {
  return Guard(-1, [&] {
    NeedModel(model, paths);
    NeedModel(model, out);
    edgeclip_model::Need(model->image, "image");
    model->EmbedImageFiles(BatchItems(paths, count, batch, "edgeclip_embed_image_files", "image path"), batch, out);
    return 0;
  });
}

int edgeclip_embed_pixels(edgeclip_model* model, const unsigned char* pixels, int width, int height, int channels,
                          float* out) {
  return Guard(-1, [&] {
    NeedModel(model, pixels);
    NeedModel(model, out);
    if (channels != 1 && channels != 3) throw std::invalid_argument("channels must be 1 (gray) or 3 (RGB)");
    if (width < 1 || height < 1 || int64_t{width} * height > kMaxImagePixels) {
      throw std::invalid_argument("a " + std::to_string(width) + "x" + std::to_string(height) +
                                  " image is empty or over the limit of " + std::to_string(kMaxImagePixels) + " pixels");
    }
    Image rgb(width, height, 3);
    const size_t count = static_cast<size_t>(width) * height;
    for (size_t i = 0; i < count; ++i) {
      for (int c = 0; c < 3; ++c) rgb.pixels[3 * i + c] = pixels[i * channels + (channels == 3 ? c : 0)];
    }
    model->EmbedImage(rgb, out);
    return 0;
  });
}

int edgeclip_embed_text(edgeclip_model* model, const char* utf8, float* out) {
  return Guard(-1, [&] {
    NeedModel(model, utf8);
    NeedModel(model, out);
    model->EmbedText(utf8, out);
    return 0;
  });
}

int edgeclip_embed_texts(edgeclip_model* model, const char* const* texts, int count, int batch, float* out) {
  return Guard(-1, [&] {
    NeedModel(model, texts);
    NeedModel(model, out);
    edgeclip_model::Need(model->text, "text");
    model->EmbedTexts(BatchItems(texts, count, batch, "edgeclip_embed_texts", "text"), batch, out);
    return 0;
  });
}

int edgeclip_tokenize(edgeclip_model* model, const char* utf8, long long* ids, int capacity) {
  return Guard(-1, [&] {
    NeedModel(model, utf8);
    NeedModel(model, ids);
    Tokenizer& tokenizer = model->NeedTokenizer();
    if (capacity < 0 || static_cast<size_t>(capacity) < tokenizer.Context()) {
      throw std::invalid_argument("edgeclip_tokenize needs room for the context length, " +
                                  std::to_string(tokenizer.Context()) + " ids");
    }
    size_t length = 0;
    const std::vector<int64_t> tokens = tokenizer.Encode(utf8, &length);
    std::copy(tokens.begin(), tokens.end(), ids);
    return static_cast<int>(length);
  });
}

int edgeclip_set_labels(edgeclip_model* model, const char* const* labels, int count, const char* prompt) {
  return Guard(-1, [&] {
    NeedModel(model, model);
    edgeclip_model::Need(model->text, "text");
    if (count > 0 && labels == nullptr) throw std::invalid_argument("the labels are NULL");
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i) {
      if (labels[i] == nullptr) throw std::invalid_argument("label " + std::to_string(i) + " is NULL");
      names.emplace_back(labels[i]);
    }
    model->labels = model->EmbedLabels(names, prompt ? prompt : "{}");
    return 0;
  });
}

int edgeclip_label_count(const edgeclip_model* model) {
  return model == nullptr ? 0 : static_cast<int>(model->labels.names.size());
}

const char* edgeclip_label(const edgeclip_model* model, int index) {
  if (model == nullptr || index < 0 || index >= edgeclip_label_count(model)) return nullptr;
  return model->labels.names[static_cast<size_t>(index)].c_str();
}

int edgeclip_classify(edgeclip_model* model, const float* image_embedding, float* probs) {
  return Guard(-1, [&] {
    NeedModel(model, image_embedding);
    NeedModel(model, probs);
    if (model->dim < 0) throw std::runtime_error("no tower is loaded, so the embedding size is unknown");
    Softmax100(model->labels, image_embedding, static_cast<size_t>(model->dim), probs);
    return 0;
  });
}

int edgeclip_handle_request(edgeclip_model* model, const char* json_line, char** reply) {
  if (reply == nullptr) {
    last_error = "edgeclip_handle_request needs somewhere to put the reply; reply is NULL";
    return -1;
  }
  *reply = nullptr;
  std::string id = "null", text;
  const int status = Guard(1, [&] {
    NeedModel(model, json_line);
    if (std::strlen(json_line) > kMaxRequestBytes) throw std::invalid_argument(TooLongMessage());
    const Json doc = JsonReader::Parse(json_line);
    id = RequestId(doc);
    text = ResultReply(id, model->Answer(ReadRequest(doc)));
    return 0;
  });
  if (status != 0) text = ErrorReply(id, last_error);
  *reply = static_cast<char*>(std::malloc(text.size() + 1));
  if (*reply == nullptr) {
    last_error = "out of memory for a " + std::to_string(text.size()) + "-byte reply";
    return -1;
  }
  std::memcpy(*reply, text.c_str(), text.size() + 1);
  return status;
}

void edgeclip_free_string(char* text) { std::free(text); }

int edgeclip_index_build(edgeclip_model* model, int tower, const char* const* items, const int* lines, int count,
                         int batch, const char* encoding, const char* out_path) {
  return Guard(-1, [&] {
    NeedModel(model, items);
    NeedModel(model, out_path);
    const std::string kind = tower == EDGECLIP_IMAGE ? "image" : "text";
    if (tower != EDGECLIP_IMAGE && tower != EDGECLIP_TEXT) throw std::invalid_argument("tower must be EDGECLIP_IMAGE or EDGECLIP_TEXT");
    edgeclip_model::Need(tower == EDGECLIP_IMAGE ? model->image : model->text, kind.c_str());
    const std::string code = encoding ? encoding : "int8";
    if (code != "binary" && code != "int8") throw std::invalid_argument("encoding '" + code + "' unknown; use binary or int8");
    if (count < 1 || static_cast<uint32_t>(count) > kMaxIndexCount) {
      throw std::invalid_argument("an index holds 1 to " + std::to_string(kMaxIndexCount) + " items, not " + std::to_string(count));
    }
    std::vector<std::string> names;
    std::vector<uint32_t> numbers;
    for (int i = 0; i < count; ++i) {
      if (items[i] == nullptr) throw std::invalid_argument("item " + std::to_string(i) + " is NULL");
      names.emplace_back(items[i]);
      numbers.push_back(tower == EDGECLIP_IMAGE ? 0u : static_cast<uint32_t>(lines ? lines[i] : i + 1));
    }
    const size_t dim = static_cast<size_t>(model->dim);
    std::vector<float> rows(dim * names.size());
    if (batch < 1 || batch > kMaxBatch) throw std::invalid_argument("batch must be 1 to " + std::to_string(kMaxBatch));
    if (tower == EDGECLIP_IMAGE) model->EmbedImageFiles(names, batch, rows.data());
    else model->EmbedTexts(names, batch, rows.data());
    WriteFileAtomic(out_path, EncodeIndex(code == "int8" ? kEncodingInt8 : kEncodingBinary, kind, model->Identity(kind),
                                          rows.data(), names, numbers, static_cast<uint32_t>(dim)));
    return 0;
  });
}

edgeclip_index* edgeclip_index_open(const char* path) {
  return Guard(static_cast<edgeclip_index*>(nullptr), [&] {
    if (path == nullptr) throw std::invalid_argument("edgeclip_index_open needs a path");
    return new edgeclip_index{IndexFile(path), {}};
  });
}

void edgeclip_index_close(edgeclip_index* index) { delete index; }

int edgeclip_index_count(const edgeclip_index* index) { return index ? static_cast<int>(index->file.count()) : -1; }

int edgeclip_index_dim(const edgeclip_index* index) { return index ? static_cast<int>(index->file.dim()) : -1; }

int edgeclip_index_tower(const edgeclip_index* index) {
  if (index == nullptr) return -1;
  return index->file.kind() == "image" ? EDGECLIP_IMAGE : EDGECLIP_TEXT;
}

const char* edgeclip_index_item(const edgeclip_index* index, int id) {
  if (index == nullptr || id < 0 || id >= edgeclip_index_count(index)) return nullptr;
  auto& items = const_cast<edgeclip_index*>(index)->items;
  if (items.empty()) {
    items.reserve(index->file.count());
    for (uint32_t i = 0; i < index->file.count(); ++i) items.push_back(index->file.Item(i));
  }
  return items[static_cast<size_t>(id)].c_str();
}

int edgeclip_index_line(const edgeclip_index* index, int id) {
  if (index == nullptr || id < 0 || id >= edgeclip_index_count(index)) return -1;
  return static_cast<int>(index->file.Line(static_cast<uint32_t>(id)));
}

int edgeclip_search_vector(const edgeclip_index* index, const float* query, int k, int rerank, int* ids,
                           float* scores) {
  return Guard(-1, [&] {
    return SearchInto(index, query, k, rerank, ids, scores);
  });
}

int edgeclip_search_text(edgeclip_model* model, const edgeclip_index* index, const char* utf8, int k, int rerank,
                         int* ids, float* scores) {
  return Guard(-1, [&] {
    NeedModel(model, utf8);
    return SearchEmbedded(model, index, k, rerank, ids, scores, [&](float* q) { model->EmbedText(utf8, q); });
  });
}

int edgeclip_search_image(edgeclip_model* model, const edgeclip_index* index, const char* path, int k, int rerank,
                          int* ids, float* scores) {
  return Guard(-1, [&] {
    NeedModel(model, path);
    edgeclip_model::Need(model->image, "image");
    return SearchEmbedded(model, index, k, rerank, ids, scores,
                          [&](float* q) { model->EmbedImage(DecodeImage(path), q); });
  });
}

}  // extern "C"
