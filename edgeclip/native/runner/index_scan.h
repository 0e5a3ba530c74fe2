// Exact search over an index file in two passes: a coarse one over every row (int8 dot products
// with the query quantized as the items are, or Hamming distances of sign bits), a bounded heap
// keeping the `rerank` best, then a fine one re-scoring those with the query at 20 bits. The inner loops are
// picked once per process by what the CPU has: AVX2 (+popcnt) on x86-64, NEON with sdot
// (ARMv8.2 dotprod) or without it (Cortex-A72) on aarch64, plain C++ elsewhere. Integer sums are
// exact, so every path gives the same scores and the same order (ties go to the lower id).
#ifndef EDGECLIP_INDEX_SCAN_H_
#define EDGECLIP_INDEX_SCAN_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "index_file.h"

namespace edgeclip {

struct Hit {
  uint32_t id;
  float score;
};

// Better first: higher score, then lower id (so the order never depends on the scan's path).
inline bool Before(const Hit& a, const Hit& b) { return a.score != b.score ? a.score > b.score : a.id < b.id; }

inline int32_t DotPortable(const int8_t* a, const int8_t* b, size_t n) {
  int32_t sum = 0;
  for (size_t j = 0; j < n; ++j) sum += int32_t{a[j]} * b[j];
  return sum;
}

inline uint32_t HammingPortable(const uint64_t* a, const uint64_t* b, size_t words) {
  uint32_t d = 0;
  for (size_t w = 0; w < words; ++w) {
    uint64_t x = a[w] ^ b[w];
    for (; x; x &= x - 1) ++d;
  }
  return d;
}

#if defined(__x86_64__)
// n a multiple of 32 (the index's zero-padded rows). |a| * sign(b, a) keeps the products exact:
// codes lie in [-127, 127], so two products never saturate maddubs' int16.
__attribute__((target("avx2"))) inline int32_t DotAvx2(const int8_t* a, const int8_t* b, size_t n) {
  __m256i acc = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t j = 0; j < n; j += 32) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j));
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
  }
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

__attribute__((target("popcnt"))) inline uint32_t HammingPopcnt(const uint64_t* a, const uint64_t* b, size_t words) {
  uint32_t d = 0;
  for (size_t w = 0; w < words; ++w) d += static_cast<uint32_t>(_mm_popcnt_u64(a[w] ^ b[w]));
  return d;
}
#elif defined(__aarch64__)
inline int32_t DotNeon(const int8_t* a, const int8_t* b, size_t n) {
  int32x4_t acc = vdupq_n_s32(0);
  for (size_t j = 0; j < n; j += 16) {
    const int8x16_t x = vld1q_s8(a + j), y = vld1q_s8(b + j);
    int16x8_t p = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    p = vmlal_s8(p, vget_high_s8(x), vget_high_s8(y));  // |sum| <= 2 * 127 * 127: fits int16
    acc = vpadalq_s16(acc, p);
  }
  return vaddvq_s32(acc);
}

__attribute__((target("arch=armv8.2-a+dotprod"))) inline int32_t DotSdot(const int8_t* a, const int8_t* b, size_t n) {
  int32x4_t acc = vdupq_n_s32(0);
  for (size_t j = 0; j < n; j += 16) acc = vdotq_s32(acc, vld1q_s8(a + j), vld1q_s8(b + j));
  return vaddvq_s32(acc);
}

inline uint32_t HammingNeon(const uint64_t* a, const uint64_t* b, size_t words) {
  uint32_t d = 0;
  for (size_t w = 0; w < words; ++w) d += static_cast<uint32_t>(vaddv_u8(vcnt_u8(vcreate_u8(a[w] ^ b[w]))));
  return d;
}
#endif

// The inner loops this CPU runs, and their name for reports.
struct ScanKernels {
  int32_t (*dot)(const int8_t*, const int8_t*, size_t) = DotPortable;
  uint32_t (*hamming)(const uint64_t*, const uint64_t*, size_t) = HammingPortable;
  const char* name = "portable";
};

inline const ScanKernels& Kernels() {
  static const ScanKernels chosen = [] {
    ScanKernels k;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) k.dot = DotAvx2, k.name = "avx2";
    if (__builtin_cpu_supports("popcnt")) k.hamming = HammingPopcnt;
#elif defined(__aarch64__)
    k.dot = DotNeon, k.hamming = HammingNeon, k.name = "neon";
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) k.dot = DotSdot, k.name = "neon-sdot";
#endif
    return k;
  }();
  return chosen;
}

// Keeps the best `k` hits seen: a heap whose top is the worst kept.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) { heap_.reserve(k + 1); }
  void Offer(uint32_t id, float score) {
    const Hit hit{id, score};
    if (heap_.size() == k_ && !Before(hit, heap_.front())) return;
    heap_.push_back(hit);
    std::push_heap(heap_.begin(), heap_.end(), Before);
    if (heap_.size() > k_) {
      std::pop_heap(heap_.begin(), heap_.end(), Before);
      heap_.pop_back();
    }
  }
  std::vector<Hit> Sorted() {
    std::sort(heap_.begin(), heap_.end(), Before);
    return heap_;
  }

 private:
  size_t k_;
  std::vector<Hit> heap_;
};

struct SearchStats {
  uint64_t bytes_scanned = 0;  // index bytes the query read: codes and scales, or bits, plus the re-scored rows
  uint32_t candidates = 0;     // rows the fine pass scored
};

// The fine score of item i: q . mean + scale_i * (q . codes_i), the dot taken with the query at
// 20 bits in int64 (exact, so x86 and ARM agree to the bit) and the sum by explicit fma.
class FineScorer {
 public:
  FineScorer(const IndexFile& index, const float* query) : index_(index), q_(CodeStride(index.dim()), 0) {
    const uint32_t dim = index.dim();
    float peak = 0;
    for (uint32_t j = 0; j < dim; ++j) peak = std::max(peak, std::fabs(query[j]));
    step_ = peak > 0 ? static_cast<double>(peak) / kFine : 0.0;
    const float* mean = index.Mean();
    for (uint32_t j = 0; j < dim; ++j) {
      q_[j] = peak > 0 ? static_cast<int32_t>(std::nearbyint(static_cast<double>(query[j]) / step_)) : 0;
      q_mean_ = std::fma(static_cast<double>(query[j]), static_cast<double>(mean[j]), q_mean_);
    }
  }
  float operator()(uint32_t i) const {
    const int8_t* codes = index_.Codes() + CodeStride(index_.dim()) * i;
    int64_t dot = 0;
    for (uint32_t j = 0; j < index_.dim(); ++j) dot += int64_t{q_[j]} * codes[j];
    const double scale = static_cast<double>(index_.Scales()[i]) * step_;
    return static_cast<float>(std::fma(scale, static_cast<double>(dot), q_mean_));
  }

 private:
  static constexpr double kFine = 1 << 20;
  const IndexFile& index_;
  std::vector<int32_t> q_;
  double step_ = 0, q_mean_ = 0;
};

// The `k` items nearest `query` (dim floats, unit length), best first, scored by the fine pass
// (the cosine within the codes' rounding). A coarse pass picks the `rerank` rows (at least k) it
// re-scores: int8 dot products with the query at 8 bits (int8 index), or Hamming distances of
// sign bits (binary index; rows at the cut distance taken in id order).
inline std::vector<Hit> Search(const IndexFile& index, const float* query, size_t k, size_t rerank,
                               SearchStats* stats = nullptr) {
  const uint32_t dim = index.dim(), count = index.count();
  const size_t stride = CodeStride(dim);
  std::vector<int8_t> q(stride, 0);
  const float q_scale = QuantizeRow(query, dim, q.data());
  const ScanKernels& kern = Kernels();
  const float* scales = index.Scales();
  const int8_t* codes = index.Codes();
  k = std::min<size_t>(std::max<size_t>(k, 1), count);
  const size_t want = std::min<size_t>(std::max(rerank, k), count);
  std::vector<uint32_t> candidates;
  SearchStats local;
  if (index.encoding() == kEncodingInt8) {
    TopK coarse(want);
    for (uint32_t i = 0; i < count; ++i) coarse.Offer(i, scales[i] * q_scale * kern.dot(q.data(), codes + stride * i, stride));
    for (const Hit& hit : coarse.Sorted()) candidates.push_back(hit.id);
    local.bytes_scanned = uint64_t{count} * (stride + 4);
  } else {
    const size_t words = BitStride(dim) / 8;
    std::vector<uint64_t> qbits(words, 0);
    SignBits(q.data(), dim, reinterpret_cast<uint8_t*>(qbits.data()));
    std::vector<uint16_t> distance(count);
    std::vector<uint32_t> histogram(dim + 2, 0);
    const uint64_t* bits = index.Bits();
    for (uint32_t i = 0; i < count; ++i) {
      distance[i] = static_cast<uint16_t>(kern.hamming(qbits.data(), bits + words * i, words));
      ++histogram[distance[i]];
    }
    size_t below = 0;
    uint32_t cut = 0;
    while (below + histogram[cut] < want) below += histogram[cut++];
    size_t at_cut = want - below;
    for (uint32_t i = 0; i < count; ++i) {
      if (distance[i] > cut || (distance[i] == cut && at_cut == 0)) continue;
      if (distance[i] == cut) --at_cut;
      candidates.push_back(i);
    }
    local.bytes_scanned = uint64_t{count} * words * 8 + want * (stride + 4);
  }
  const FineScorer fine(index, query);
  TopK top(k);
  for (uint32_t i : candidates) top.Offer(i, fine(i));
  local.candidates = static_cast<uint32_t>(candidates.size());
  if (stats != nullptr) *stats = local;
  return top.Sorted();
}

}  // namespace edgeclip

#endif  // EDGECLIP_INDEX_SCAN_H_
