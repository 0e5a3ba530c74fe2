// Pillow's 8-bit resampling (libImaging ImagingResample) re-done so the device resizes exactly as the
// host: two separable passes (horizontal then vertical, unless Pillow 13 would run the vertical one
// first, see ResizeWindow), each output pixel a normalised filter
// window whose support grows with the downscale factor (antialiasing), coefficients in fixed point
// with 22 fractional bits, and the result clipped to uint8 after each pass. A pass is skipped where
// that side keeps its size. Only a window of the resized image is computed (the centre crop), so a
// 1 x 10000 strip resized to a 224 short side costs the crop, not the whole 224 x 2240000 image.
#ifndef EDGECLIP_RESAMPLE_H_
#define EDGECLIP_RESAMPLE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "image.h"

namespace edgeclip {

struct Filter {
  double (*weight)(double x);
  double support;
};

inline double BilinearWeight(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

inline double BicubicWeight(double x) {  // Keys' cubic convolution, a = -0.5
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

constexpr Filter kBilinear{BilinearWeight, 1.0};
constexpr Filter kBicubic{BicubicWeight, 2.0};
constexpr int kPrecisionBits = 32 - 8 - 2;  // room for 8-bit values and coefficients summing past 1

// For each output position along one side: the first input index, the count, and fixed-point weights.
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // ksize per output position
};

inline Taps ComputeTaps(int in_size, int out_size, const Filter& filter) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filter.support * filterscale;
  const double step = 1.0 / filterscale;  // multiplied, not divided, as Pillow does: the same last bits
  Taps taps;
  taps.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<size_t>(out_size) * taps.ksize, 0);
  std::vector<double> w(taps.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) total += w[x] = filter.weight((x + xmin - center + 0.5) * step);
    for (int x = 0; x < xmax; ++x) {
      const double k = total != 0.0 ? w[x] / total : w[x];
      taps.weights[static_cast<size_t>(xx) * taps.ksize + x] =
          static_cast<int32_t>(k < 0 ? -0.5 + k * (1 << kPrecisionBits) : 0.5 + k * (1 << kPrecisionBits));
    }
    taps.first[xx] = xmin;
    taps.count[xx] = xmax;
  }
  return taps;
}

inline uint8_t Clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;  // arithmetic shift: floor, as Pillow's lookup table
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Columns [x0, x0 + w) of the horizontal resize of `in`, whose column 0 is source column `in_first`.
inline Image ResampleColumns(const Image& in, const Taps& taps, int in_first, int x0, int w) {
  Image out(w, in.height, in.channels);
  for (int y = 0; y < in.height; ++y) {
    for (int xx = 0; xx < w; ++xx) {
      const int32_t* k = &taps.weights[static_cast<size_t>(x0 + xx) * taps.ksize];
      const uint8_t* src = in.at(taps.first[x0 + xx] - in_first, y);
      uint8_t* dst = out.at(xx, y);
      for (int c = 0; c < in.channels; ++c) {
        int32_t sum = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < taps.count[x0 + xx]; ++x) sum += src[x * in.channels + c] * k[x];
        dst[c] = Clip8(sum);
      }
    }
  }
  return out;
}

// Rows [y0, y0 + h) of the vertical resize of `in`, whose row 0 is source row `in_first`.
inline Image ResampleRows(const Image& in, const Taps& taps, int in_first, int y0, int h) {
  Image out(in.width, h, in.channels);
  const size_t row = static_cast<size_t>(in.width) * in.channels;
  for (int yy = 0; yy < h; ++yy) {
    const int32_t* k = &taps.weights[static_cast<size_t>(y0 + yy) * taps.ksize];
    const uint8_t* src = in.at(0, taps.first[y0 + yy] - in_first);
    uint8_t* dst = out.at(0, yy);
    for (size_t i = 0; i < row; ++i) {
      int32_t sum = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < taps.count[y0 + yy]; ++y) sum += src[y * row + i] * k[y];
      dst[i] = Clip8(sum);
    }
  }
  return out;
}

inline Image Crop(const Image& in, int x0, int y0, int w, int h) {
  Image out(w, h, in.channels);
  for (int y = 0; y < h; ++y) std::copy_n(in.at(x0, y0 + y), static_cast<size_t>(w) * in.channels, out.at(0, y));
  return out;
}

// The w x h window at (x0, y0) of `in` resized to out_w x out_h with `filter`, as Pillow's resize.
// Pass order as Pillow 13: vertical first when the height shrinks by more than twice what the
// width does (the two orders round differently, so this decides exact agreement).
inline Image ResizeWindow(const Image& in, int out_w, int out_h, const Filter& filter, int x0, int y0, int w, int h) {
  const bool horizontal = out_w != in.width, vertical = out_h != in.height;
  const int shrink_h = in.height - out_h, shrink_w = in.width - out_w;
  const bool vertical_first = shrink_h > 0 && shrink_h > shrink_w * 2;
  Taps cols, rows;
  int x_first = x0, x_last = x0 + w, y_first = y0, y_last = y0 + h;  // the source span the window needs
  if (horizontal) {
    cols = ComputeTaps(in.width, out_w, filter);
    x_first = cols.first[x0];
    x_last = cols.first[x0 + w - 1] + cols.count[x0 + w - 1];
  }
  if (vertical) {
    rows = ComputeTaps(in.height, out_h, filter);
    y_first = rows.first[y0];
    y_last = rows.first[y0 + h - 1] + rows.count[y0 + h - 1];
  }
  Image out = Crop(in, x_first, y_first, x_last - x_first, y_last - y_first);
  if (vertical && vertical_first) out = ResampleRows(out, rows, y_first, y0, h);
  if (horizontal) out = ResampleColumns(out, cols, x_first, x0, w);
  if (vertical && !vertical_first) out = ResampleRows(out, rows, y_first, y0, h);
  return out;
}

}  // namespace edgeclip

#endif  // EDGECLIP_RESAMPLE_H_
