// The runner's modes use the bundle through libedgeclip's C API, as any application would: an
// owned edgeclip_model whose failures become exceptions carrying edgeclip_last_error().
#ifndef EDGECLIP_MODEL_HANDLE_H_
#define EDGECLIP_MODEL_HANDLE_H_

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.h"
#include "edgeclip.h"

namespace edgeclip {

class ModelHandle {
 public:
  // --variant (ternary|fp32) and --threads from `args`; only `towers` are loaded.
  ModelHandle(const std::string& bundle, const Args& args, int towers) {
    const std::string variant = args.One("--variant", "ternary");
    if (variant != "ternary" && variant != "fp32") throw UsageError("--variant must be ternary or fp32, not '" + variant + "'");
    model_.reset(edgeclip_open(bundle.c_str(), variant.c_str(), towers, args.Int("--threads", 0)));
    if (!model_) Fail();
  }

  edgeclip_model* get() const { return model_.get(); }
  int Dim() const { return Check(edgeclip_embedding_dim(model_.get())); }

  // `status` when it is not -1, else the library's error as an exception.
  static int Check(int status) {
    if (status == -1) Fail();
    return status;
  }

 private:
  [[noreturn]] static void Fail() { throw std::runtime_error(edgeclip_last_error()); }

  std::unique_ptr<edgeclip_model, void (*)(edgeclip_model*)> model_{nullptr, edgeclip_close};
};

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

}  // namespace edgeclip

#endif  // EDGECLIP_MODEL_HANDLE_H_
