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
#include "plan.h"
#include "results.h"
#include "variants.h"

namespace edgeclip {

class ModelHandle {
 public:
  // --variant (else the best this CPU runs that holds `towers`: variants.h) and --threads from
  // `args`; only `towers` are loaded. The CPU is checked here first, so a refusal exits 1; when the
  // CPU chose among variants needing different features, the choice is said on stderr (stdout
  // stays the mode's JSON).
  ModelHandle(const std::string& bundle, const Args& args, int towers, const char* mode) {
    std::vector<std::string> names;
    if (towers & EDGECLIP_IMAGE) names.push_back("image");
    if (towers & EDGECLIP_TEXT) names.push_back("text");
    std::string variant = args.One("--variant");
    if (towers != 0) {
      const Plan plan = ReadPlan(bundle);
      const bool decides = variant.empty() && CpuDecides(plan);
      variant = ChooseVariant(plan, variant, names, DetectCpuFeatures());
      if (decides) std::fprintf(stderr, "edgeclip-runner %s: variant %s\n", mode, variant.c_str());
    }
    model_.reset(edgeclip_open(bundle.c_str(), variant.empty() ? nullptr : variant.c_str(), towers,
                               args.Int("--threads", 0)));
    if (!model_) throw std::runtime_error(edgeclip_last_error());
  }

  edgeclip_model* get() const { return model_.get(); }
  int Dim() const { return Checked(edgeclip_embedding_dim(model_.get())); }

 private:
  std::unique_ptr<edgeclip_model, void (*)(edgeclip_model*)> model_{nullptr, edgeclip_close};
};

}  // namespace edgeclip

#endif  // EDGECLIP_MODEL_HANDLE_H_
