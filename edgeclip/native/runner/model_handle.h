// The runner's modes use the bundle through libedgeclip's C API, as any application would: an
// owned edgeclip_model whose failures become exceptions carrying edgeclip_last_error().
#ifndef EDGECLIP_MODEL_HANDLE_H_
#define EDGECLIP_MODEL_HANDLE_H_

#include <memory>
#include <stdexcept>
#include <string>

#include "args.h"
#include "edgeclip.h"
#include "results.h"

namespace edgeclip {

class ModelHandle {
 public:
  // --variant (ternary|fp32) and --threads from `args`; only `towers` are loaded.
  ModelHandle(const std::string& bundle, const Args& args, int towers) {
    const std::string variant = args.One("--variant", "ternary");
    if (variant != "ternary" && variant != "fp32") throw UsageError("--variant must be ternary or fp32, not '" + variant + "'");
    model_.reset(edgeclip_open(bundle.c_str(), variant.c_str(), towers, args.Int("--threads", 0)));
    if (!model_) throw std::runtime_error(edgeclip_last_error());
  }

  edgeclip_model* get() const { return model_.get(); }
  int Dim() const { return Checked(edgeclip_embedding_dim(model_.get())); }

 private:
  std::unique_ptr<edgeclip_model, void (*)(edgeclip_model*)> model_{nullptr, edgeclip_close};
};

}  // namespace edgeclip

#endif  // EDGECLIP_MODEL_HANDLE_H_
