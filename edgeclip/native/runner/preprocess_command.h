// `edgeclip-runner preprocess [--bundle DIR] --image FILE --out FILE.npy [--uint8-out FILE.npy]`:
// one JPEG/PNG to the image tower's input exactly as the bundle would feed it (float32 NCHW, the
// manifest's preprocessing), and optionally the uint8 pixels after resize and crop, before
// scaling, for parity checks against the host.
#ifndef EDGECLIP_PREPROCESS_COMMAND_H_
#define EDGECLIP_PREPROCESS_COMMAND_H_

#include <string>

#include "args.h"
#include "image_decode.h"
#include "npy.h"
#include "preprocess.h"

namespace edgeclip {

constexpr const char* kPreprocessUsage =
    "preprocess [--bundle DIR] [--threads N] --image FILE --out FILE.npy [--uint8-out FILE.npy]";

inline void PreprocessMain(const Args& args, const std::string& bundle) {
  const std::string image = args.One("--image"), out = args.One("--out"), uint8_out = args.One("--uint8-out");
  if (image.empty() || out.empty()) throw UsageError("preprocess needs --image FILE and --out FILE.npy");
  const Preprocessing spec = ReadPreprocessing(bundle);
  const Image pixels = ResizeAndCrop(DecodeImage(image), spec);
  if (!uint8_out.empty()) WriteNpy(uint8_out, PixelArray(pixels));
  WriteNpy(out, Normalise(pixels, spec));
}

}  // namespace edgeclip

#endif  // EDGECLIP_PREPROCESS_COMMAND_H_
