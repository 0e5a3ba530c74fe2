// The image tower's input, prepared as the bundle's manifest says (its `preprocessing` object,
// written from the model family's descriptor): colour (RGB, or Pillow's "L" luminance), resize
// (short side with bicubic, or the whole image squashed to a square with bilinear, both as
// Pillow), centre crop (floor offsets) or none, then x * scale, (x - mean) / std per channel,
// NCHW float32. Nothing here knows a model family: a new family needs only a manifest.
#ifndef EDGECLIP_PREPROCESS_H_
#define EDGECLIP_PREPROCESS_H_

#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "image.h"
#include "json.h"
#include "npy.h"
#include "resample.h"

namespace edgeclip {

struct Preprocessing {
  int image_size = 0, channels = 0;
  bool short_side = true;  // else the whole image to a square
  bool center_crop = true;
  double scale = 1.0;
  std::vector<float> mean, std;
};

inline const Json& Field(const Json& object, const std::string& key) {
  const Json* value = object.Find(key);
  if (value == nullptr) throw std::runtime_error("the manifest's preprocessing has no '" + key + "'");
  return *value;
}

inline std::string TextField(const Json& object, const std::string& key, const std::vector<std::string>& allowed) {
  const Json& value = Field(object, key);
  for (const std::string& a : allowed) {
    if (value.kind == Json::kString && value.text == a) return a;
  }
  std::string names;
  for (const std::string& a : allowed) names += (names.empty() ? "'" : ", '") + a + "'";
  throw std::runtime_error("the manifest's preprocessing." + key + " must be one of " + names +
                           "; this runner cannot prepare images for this bundle");
}

inline double NumberField(const Json& object, const std::string& key) {
  const Json& value = Field(object, key);
  if (value.kind != Json::kNumber) throw std::runtime_error("the manifest's preprocessing." + key + " is not a number");
  return value.number;
}

inline std::vector<float> ChannelField(const Json& object, const std::string& key, int channels) {
  const Json& value = Field(object, key);
  std::vector<float> out;
  for (const Json& item : value.items) {
    if (item.kind != Json::kNumber) break;
    out.push_back(static_cast<float>(item.number));
  }
  if (value.kind != Json::kArray || out.size() != value.items.size() || static_cast<int>(out.size()) != channels) {
    throw std::runtime_error("the manifest's preprocessing." + key + " must be " + std::to_string(channels) + " numbers");
  }
  return out;
}

// The `preprocessing` object of a manifest, checked strictly: an unknown value is an error, never a guess.
inline Preprocessing ParsePreprocessing(const Json& manifest) {
  const Json* found = manifest.Find("preprocessing");
  if (found == nullptr || found->kind != Json::kObject) {
    throw std::runtime_error("the bundle's manifest has no preprocessing; rebuild it with `edgeclip build`");
  }
  const Json& pre = *found;
  Preprocessing p;
  const double size = NumberField(pre, "image_size");
  if (size != static_cast<int>(size) || size < 1 || size > 4096) {
    throw std::runtime_error("the manifest's preprocessing.image_size must be a whole number from 1 to 4096");
  }
  p.image_size = static_cast<int>(size);
  const std::string color = TextField(pre, "color", {"RGB", "L (grayscale)"});
  p.channels = color == "RGB" ? 3 : 1;
  if (NumberField(pre, "channels") != p.channels) {
    throw std::runtime_error("the manifest's preprocessing.channels does not match its color " + color);
  }
  p.short_side = TextField(pre, "resize", {"short side, bicubic", "whole image to a square, bilinear"})[0] == 's';
  p.center_crop = TextField(pre, "crop", {"center", "none"}) == "center";
  TextField(pre, "layout", {"NCHW float32"});
  p.scale = NumberField(pre, "scale");
  p.mean = ChannelField(pre, "mean", p.channels);
  p.std = ChannelField(pre, "std", p.channels);
  for (float s : p.std) {
    if (s == 0.0f) throw std::runtime_error("the manifest's preprocessing.std has a zero");
  }
  return p;
}

inline Preprocessing ReadPreprocessing(const std::string& bundle) {
  std::ifstream in(bundle + "/manifest.json", std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + bundle + "/manifest.json; is this an extracted bundle?");
  std::stringstream text;
  text << in.rdbuf();
  return ParsePreprocessing(JsonReader::Parse(text.str()));
}

// Pillow's "L": (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16.
inline Image Luminance(const Image& rgb) {
  Image gray(rgb.width, rgb.height, 1);
  for (size_t i = 0; i < gray.pixels.size(); ++i) {
    const uint8_t* p = &rgb.pixels[3 * i];
    gray.pixels[i] = static_cast<uint8_t>((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
  }
  return gray;
}

// Resized and cropped to image_size x image_size, still uint8 (what parity checks compare).
inline Image ResizeAndCrop(const Image& rgb, const Preprocessing& p) {
  const Image gray = p.channels == 1 ? Luminance(rgb) : Image();
  const Image& colored = p.channels == 1 ? gray : rgb;  // RGB: read in place, never copied
  const int size = p.image_size;
  int out_w = size, out_h = size;
  if (p.short_side) {  // the long side truncated, as preprocess.resize_short_side
    const int shorter = std::min(colored.width, colored.height), longer = std::max(colored.width, colored.height);
    const int long_out = static_cast<int>(static_cast<double>(size) * longer / shorter);
    (colored.width <= colored.height ? out_h : out_w) = long_out;
  }
  if (!p.center_crop && (out_w != size || out_h != size)) {
    throw std::runtime_error("the manifest asks for no crop, but the image resizes to " + std::to_string(out_w) + "x" +
                             std::to_string(out_h) + ", not a " + std::to_string(size) + " square");
  }
  const Filter& filter = p.short_side ? kBicubic : kBilinear;
  return ResizeWindow(colored, out_w, out_h, filter, (out_w - size) / 2, (out_h - size) / 2, size, size);
}

// uint8 HWC pixels -> float32 [1, C, H, W]: float(x * scale), then (x - mean) / std in float.
inline HostArray Normalise(const Image& pixels, const Preprocessing& p) {
  HostArray out;
  out.shape = {1, pixels.channels, pixels.height, pixels.width};
  out.dtype = DLDataType{kDLFloat, 32, 1};
  out.bytes.resize(pixels.pixels.size() * sizeof(float));
  float* dst = reinterpret_cast<float*>(out.bytes.data());
  const size_t plane = static_cast<size_t>(pixels.width) * pixels.height;
  for (int c = 0; c < pixels.channels; ++c) {
    for (size_t i = 0; i < plane; ++i) {
      const float scaled = static_cast<float>(pixels.pixels[i * pixels.channels + c] * p.scale);
      dst[c * plane + i] = (scaled - p.mean[c]) / p.std[c];
    }
  }
  return out;
}

// The uint8 pixels as an .npy array: [H, W, 3] for RGB, [H, W] for one channel (numpy's view of a PIL image).
inline HostArray PixelArray(const Image& pixels) {
  HostArray out;
  out.shape = {pixels.height, pixels.width};
  if (pixels.channels > 1) out.shape.push_back(pixels.channels);
  out.dtype = DLDataType{kDLUInt, 8, 1};
  out.bytes.assign(pixels.pixels.begin(), pixels.pixels.end());
  return out;
}

}  // namespace edgeclip

#endif  // EDGECLIP_PREPROCESS_H_
