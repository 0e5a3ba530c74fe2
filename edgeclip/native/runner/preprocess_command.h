// `edgeclip-runner preprocess [--bundle DIR] --image FILE --out FILE.npy [--uint8-out FILE.npy]`:
// one JPEG/PNG to the image tower's input exactly as the bundle would feed it (float32 NCHW, the
// manifest's preprocessing), and optionally the uint8 pixels after resize and crop, before
// scaling, for parity checks against the host. Errors: one line on stderr, exit status 2 (usage)
// or 3 (the image or the bundle could not be used).
#ifndef EDGECLIP_PREPROCESS_COMMAND_H_
#define EDGECLIP_PREPROCESS_COMMAND_H_

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "image_decode.h"
#include "npy.h"
#include "preprocess.h"

namespace edgeclip {

// argv[1] is "preprocess"; `default_bundle(argv[0])` finds the bundle when --bundle is not given.
inline int PreprocessCommand(int argc, char** argv, std::string (*default_bundle)(const char*)) {
  std::string bundle, image, out, uint8_out;
  try {
    for (int i = 2; i < argc; i += 2) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
      const char* value = argv[i + 1];
      if (flag == "--bundle") bundle = value;
      else if (flag == "--image") image = value;
      else if (flag == "--out") out = value;
      else if (flag == "--uint8-out") uint8_out = value;
      else throw std::invalid_argument("unknown option " + flag);
    }
    if (image.empty() || out.empty()) throw std::invalid_argument("preprocess needs --image FILE and --out FILE.npy");
    if (bundle.empty()) bundle = default_bundle(argv[0]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeclip-runner preprocess: %s\nusage: %s preprocess [--bundle DIR] --image FILE "
                 "--out FILE.npy [--uint8-out FILE.npy]\n", e.what(), argv[0]);
    return 2;
  }
  try {
    const Preprocessing spec = ReadPreprocessing(bundle);
    const Image pixels = ResizeAndCrop(DecodeImage(image), spec);
    if (!uint8_out.empty()) WriteNpy(uint8_out, PixelArray(pixels));
    WriteNpy(out, Normalise(pixels, spec));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeclip-runner preprocess: %s\n", e.what());
    return 3;
  }
  return 0;
}

}  // namespace edgeclip

#endif  // EDGECLIP_PREPROCESS_COMMAND_H_
