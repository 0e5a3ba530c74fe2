// An 8-bit image in memory (rows of interleaved channels) and the eight EXIF orientations, applied
// exactly as Pillow's ImageOps.exif_transpose does, so the device sees photos upright like the host.
#ifndef EDGECLIP_IMAGE_H_
#define EDGECLIP_IMAGE_H_

#include <cstdint>
#include <vector>

namespace edgeclip {

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;  // height rows of width * channels bytes

  Image() = default;
  Image(int w, int h, int c) : width(w), height(h), channels(c), pixels(static_cast<size_t>(w) * h * c) {}
  uint8_t* at(int x, int y) { return &pixels[(static_cast<size_t>(y) * width + x) * channels]; }
  const uint8_t* at(int x, int y) const { return &pixels[(static_cast<size_t>(y) * width + x) * channels]; }
};

// The image turned upright for EXIF Orientation 2..8 (Pillow: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180,
// 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90); other values leave it be.
inline Image Upright(const Image& in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const bool swap = orientation >= 5;
  const int w = in.width, h = in.height;
  Image out(swap ? h : w, swap ? w : h, in.channels);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;  // the source pixel of output (x, y)
      switch (orientation) {
        case 2: sx = w - 1 - x; break;
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;
        case 4: sy = h - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = h - 1 - x; break;
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;
        case 8: sx = w - 1 - y; sy = x; break;
      }
      const uint8_t* from = in.at(sx, sy);
      uint8_t* to = out.at(x, y);
      for (int c = 0; c < in.channels; ++c) to[c] = from[c];
    }
  }
  return out;
}

}  // namespace edgeclip

#endif  // EDGECLIP_IMAGE_H_
