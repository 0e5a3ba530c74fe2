// JPEG and PNG files to upright 8-bit RGB: JPEGs by libjpeg-turbo (jpeg_decode.h, as Pillow), PNGs
// and the rare four-channel (CMYK) JPEG by stb_image, compiled in here, so a board needs nothing
// beyond libc/libstdc++. Refused with one clear error:
// a missing or unreadable file, anything that is not a JPEG or PNG, a JPEG cut short (no
// end-of-image marker after its scan data), and an image over kMaxImagePixels, which is read from
// the header before any pixel memory is allocated.
#ifndef EDGECLIP_IMAGE_DECODE_H_
#define EDGECLIP_IMAGE_DECODE_H_

#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STB_IMAGE_IMPLEMENTATION
#include "stb_image.h"  // Debian libstb-dev, /usr/include/stb

#include "exif.h"
#include "image.h"
#include "jpeg_decode.h"

namespace edgeclip {

// Pillow's MAX_IMAGE_PIXELS, past which it warns of a decompression bomb: about 268 MB as RGB.
constexpr int64_t kMaxImagePixels = 89478485;
constexpr int64_t kMaxImageFileBytes = int64_t{256} << 20;

inline std::vector<uint8_t> ReadImageFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open the image " + path + "; pass an existing JPEG or PNG file");
  const std::streamoff size = in.tellg();
  if (size < 0) throw std::runtime_error("cannot read the image " + path);
  if (size > kMaxImageFileBytes) {
    throw std::runtime_error("the image " + path + " is " + std::to_string(size) + " bytes, over the limit of " +
                             std::to_string(kMaxImageFileBytes));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) throw std::runtime_error("cannot read the image " + path);
  return bytes;
}

// Whether a JPEG's scan data is followed by its end-of-image marker. Inside entropy-coded data a
// 0xFF byte is always followed by 0x00 or a restart marker, so FF D9 after the first scan is EOI.
inline bool JpegHasEnd(const std::vector<uint8_t>& data) {
  size_t at = 2;
  while (at + 4 <= data.size() && data[at] == 0xFF) {
    const uint8_t marker = data[at + 1];
    if (marker == 0xFF) { ++at; continue; }  // fill byte
    if (marker == 0xDA) break;
    at += 2 + (static_cast<size_t>(data[at + 2]) << 8 | data[at + 3]);
  }
  for (size_t i = at; i + 1 < data.size(); ++i) {
    if (data[i] == 0xFF && data[i + 1] == 0xD9) return true;
  }
  return false;
}

inline void CheckPixels(const std::string& path, int64_t width, int64_t height) {
  if (width * height > kMaxImagePixels) {
    throw std::runtime_error(path + " is " + std::to_string(width) + "x" + std::to_string(height) + " = " +
                             std::to_string(width * height) + " pixels, over the limit of " +
                             std::to_string(kMaxImagePixels) + "; shrink it first");
  }
}

// stb_image's RGB pixels of a PNG (or CMYK JPEG), its size bounded from the header first.
inline Image DecodeWithStb(const std::string& path, const std::vector<uint8_t>& data, bool jpeg) {
  const int size = static_cast<int>(data.size());
  int width = 0, height = 0, stored_channels = 0;
  if (!stbi_info_from_memory(data.data(), size, &width, &height, &stored_channels)) {
    throw std::runtime_error("cannot read the " + std::string(jpeg ? "JPEG" : "PNG") + " header of " + path + " (" +
                             stbi_failure_reason() + ")");
  }
  CheckPixels(path, width, height);
  std::unique_ptr<stbi_uc, void (*)(void*)> rgb(
      stbi_load_from_memory(data.data(), size, &width, &height, &stored_channels, 3), stbi_image_free);
  if (!rgb) throw std::runtime_error("cannot decode " + path + " (" + stbi_failure_reason() + ")");
  Image image(width, height, 3);
  std::memcpy(image.pixels.data(), rgb.get(), image.pixels.size());
  return image;
}

inline Image DecodeJpeg(const std::string& path, const std::vector<uint8_t>& data) {
  JpegDecoder decoder(path, data.data(), data.size());
  CheckPixels(path, decoder.width(), decoder.height());
  if (!JpegHasEnd(data)) throw std::runtime_error(path + " is a truncated JPEG (it has no end-of-image marker)");
  return decoder.four_channels() ? DecodeWithStb(path, data, true) : decoder.Decode();
}

inline Image DecodeImage(const std::string& path) {
  const std::vector<uint8_t> data = ReadImageFile(path);
  const bool jpeg = data.size() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
  const bool png = data.size() >= 8 && std::memcmp(data.data(), "\x89PNG\r\n\x1a\n", 8) == 0;
  if (!jpeg && !png) throw std::runtime_error(path + " is not a JPEG or PNG image");
  if (jpeg) return Upright(DecodeJpeg(path, data), JpegOrientation(data.data(), data.size()));
  // A PNG's size is read from IHDR here: stb refuses a huge one with a vague "unknown image type".
  auto be32 = [&](size_t at) { return int64_t{data[at]} << 24 | data[at + 1] << 16 | data[at + 2] << 8 | data[at + 3]; };
  if (data.size() >= 24) CheckPixels(path, be32(16), be32(20));
  return Upright(DecodeWithStb(path, data, false), PngOrientation(data.data(), data.size()));
}

}  // namespace edgeclip

#endif  // EDGECLIP_IMAGE_DECODE_H_
