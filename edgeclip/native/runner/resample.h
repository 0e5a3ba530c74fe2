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
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

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

inline int32_t RoundingHalf() { return 1 << (kPrecisionBits - 1); }

inline void CombineTail(const uint8_t* src, size_t stride, const int32_t* k, int count, uint8_t* out, size_t i,
                        size_t n) {
  for (; i < n; ++i) {
    int32_t sum = RoundingHalf();
    for (int t = 0; t < count; ++t) sum += src[t * stride + i] * k[t];
    out[i] = Clip8(sum);
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
// out[i] = Clip8(half + sum over t of k[t] * src[t * stride + i]), 32 bytes at a time with AVX2's
// int16 multiply-add, exactly: each k is split into hi * 2^11 + lo (0 <= lo < 2^11), both small
// enough for int16, and the int32 sum is rebuilt as (sum hi * p) * 2^11 + sum lo * p. Taps go in
// pairs (the madd's two products); an odd last tap is paired with a zero row. The unpacks and
// packs work within 128-bit lanes, so bytes come back in order. Compiled for AVX2 alone and
// called only where the CPU has it (every x86 bundle needs it; the runner itself does not).
#pragma GCC push_options
#pragma GCC target("avx2")
inline size_t CombineAvx2(const uint8_t* src, size_t stride, const int32_t* k, int count, uint8_t* out, size_t n) {
  const __m256i zero = _mm256_setzero_si256(), half = _mm256_set1_epi32(RoundingHalf());
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i hi[4] = {zero, zero, zero, zero}, lo[4] = {zero, zero, zero, zero};
    for (int t = 0; t < count; t += 2) {
      const bool pair = t + 1 < count;
      const int32_t k0 = k[t], k1 = pair ? k[t + 1] : 0;
      const __m256i k_hi =
          _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(k1 >> 11) << 16 | static_cast<uint16_t>(k0 >> 11)));
      const __m256i k_lo = _mm256_set1_epi32((k1 & 0x7FF) << 16 | (k0 & 0x7FF));
      const uint8_t* row = src + t * stride + i;
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row));
      const __m256i b = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + stride)) : zero;
      const __m256i ab[2] = {_mm256_unpacklo_epi8(a, b), _mm256_unpackhi_epi8(a, b)};  // a0 b0 a1 b1 ...
      for (int j = 0; j < 4; ++j) {
        const __m256i words = j % 2 ? _mm256_unpackhi_epi8(ab[j / 2], zero) : _mm256_unpacklo_epi8(ab[j / 2], zero);
        hi[j] = _mm256_add_epi32(hi[j], _mm256_madd_epi16(words, k_hi));
        lo[j] = _mm256_add_epi32(lo[j], _mm256_madd_epi16(words, k_lo));
      }
    }
    __m256i v[4];
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi[j], 11), lo[j]), half), kPrecisionBits);
    }
    // Saturating packs clip to 0..255 as Clip8 does.
    const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), bytes);
  }
  return i;
}
#pragma GCC pop_options

inline void CombineRows(const uint8_t* src, size_t stride, const int32_t* k, int count, uint8_t* out, size_t n) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  CombineTail(src, stride, k, count, out, avx2 ? CombineAvx2(src, stride, k, count, out, n) : 0, n);
}
#else
// The same sums in GCC vector types, eight bytes at a time: NEON multiplies int32 lanes natively.
typedef int32_t Int32x8 __attribute__((vector_size(32)));
typedef uint8_t Uint8x8 __attribute__((vector_size(8)));

inline void CombineRows(const uint8_t* src, size_t stride, const int32_t* k, int count, uint8_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Int32x8 sum = Int32x8{} + RoundingHalf();
    for (int t = 0; t < count; ++t) {
      Uint8x8 bytes;
      std::memcpy(&bytes, src + t * stride + i, sizeof bytes);
      sum += __builtin_convertvector(bytes, Int32x8) * k[t];
    }
    Int32x8 v = sum >> kPrecisionBits;
    v = v < 0 ? 0 : v;
    v = v > 255 ? 255 : v;
    const Uint8x8 bytes = __builtin_convertvector(v, Uint8x8);
    std::memcpy(out + i, &bytes, sizeof bytes);
  }
  CombineTail(src, stride, k, count, out, i, n);
}
#endif

// Rows [y0, y0 + h) of the vertical resize of `in`, whose row 0 is source row `in_first`.
inline Image ResampleRows(const Image& in, const Taps& taps, int in_first, int y0, int h) {
  Image out(in.width, h, in.channels);
  const size_t row = static_cast<size_t>(in.width) * in.channels;
  for (int yy = 0; yy < h; ++yy) {
    CombineRows(in.at(0, taps.first[y0 + yy] - in_first), row, &taps.weights[static_cast<size_t>(y0 + yy) * taps.ksize],
                taps.count[y0 + yy], out.at(0, yy), row);
  }
  return out;
}

// The window [x_first, x_last) x [y_first, y_last) of `in` mirrored about its diagonal (pixel (x, y)
// to (y - y_first, x - x_first)), in tiles that stay in cache. Three-channel pixels move as four
// bytes: the extra byte lands on the next pixel of the output row, written later, so only the
// window's last source row (whose spill would wrap onto a finished row) copies byte by byte.
template <int kChannels>
inline Image TransposeWindow(const Image& in, int x_first, int x_last, int y_first, int y_last) {
  Image out(y_last - y_first, x_last - x_first, kChannels);
  constexpr int kTile = 16;
  for (int y0 = y_first; y0 < y_last; y0 += kTile) {
    for (int x0 = x_first; x0 < x_last; x0 += kTile) {
      const int y1 = std::min(y0 + kTile, y_last), x1 = std::min(x0 + kTile, x_last);
      for (int y = y0; y < y1; ++y) {
        const uint8_t* from = in.at(x0, y);
        const bool wide = kChannels == 3 && y + 1 < y_last;
        for (int x = x0; x < x1; ++x, from += kChannels) {
          uint8_t* to = out.at(y - y_first, x - x_first);
          if (wide) {
            std::memcpy(to, from, 4);
          } else {
            for (int c = 0; c < kChannels; ++c) to[c] = from[c];
          }
        }
      }
    }
  }
  return out;
}

inline Image Transpose(const Image& in, int x_first, int x_last, int y_first, int y_last) {
  if (in.channels == 3) return TransposeWindow<3>(in, x_first, x_last, y_first, y_last);
  if (in.channels == 1) return TransposeWindow<1>(in, x_first, x_last, y_first, y_last);
  throw std::runtime_error("cannot resize an image of " + std::to_string(in.channels) + " channels");
}

// Columns [x0, x0 + w) of the horizontal resize of rows [y_first, y_last) of `in`, whose column 0
// is source column `in_first`: the vertical pass on the transposed window, whose rows are
// contiguous and so vectorise.
inline Image ResampleColumns(const Image& in, const Taps& taps, int in_first, int x0, int w, int y_first, int y_last) {
  const int first = taps.first[x0], last = taps.first[x0 + w - 1] + taps.count[x0 + w - 1];
  const Image columns = Transpose(in, first - in_first, last - in_first, y_first, y_last);
  const Image resized = ResampleRows(columns, taps, first, x0, w);
  return Transpose(resized, 0, resized.width, 0, resized.height);
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
  if (vertical && vertical_first) {
    const Image shorter = ResampleRows(Crop(in, x_first, y_first, x_last - x_first, y_last - y_first), rows, y_first, y0, h);
    return horizontal ? ResampleColumns(shorter, cols, x_first, x0, w, 0, shorter.height) : shorter;
  }
  // Horizontal first reads the window's source straight from `in`: no copy before the pass.
  Image out = horizontal ? ResampleColumns(in, cols, 0, x0, w, y_first, y_last)
                         : Crop(in, x_first, y_first, x_last - x_first, y_last - y_first);
  if (vertical) out = ResampleRows(out, rows, y_first, y0, h);
  return out;
}

}  // namespace edgeclip

#endif  // EDGECLIP_RESAMPLE_H_
