// Host arrays as TVM tensors and back: aligned copies, 2-bit weights rebuilt from their base-3
// storage, a VM result flattened to tensors, and the cosine the output check uses.
#ifndef EDGECLIP_TENSORS_H_
#define EDGECLIP_TENSORS_H_

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "npy.h"

namespace edgeclip {

// A TVM tensor that owns a 64-byte aligned copy of a host array (kernels assume aligned data).
struct AlignedAlloc {
  void AllocData(DLTensor* t) {
    size_t bytes = static_cast<size_t>(tvm::ffi::GetDataSize(*t));
    t->data = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (t->data == nullptr) throw std::bad_alloc();
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

inline tvm::ffi::Tensor ToTensor(HostArray& arr) {
  tvm::ffi::Tensor t = tvm::ffi::Tensor::FromNDAlloc(
      AlignedAlloc(), tvm::ffi::ShapeView(arr.shape.data(), arr.shape.size()), arr.dtype,
      DLDevice{kDLCPU, 0});
  std::memcpy(t.data_ptr(), arr.bytes.data(), arr.bytes.size());
  return t;
}

// A read-only view of a mapped .npy array as a TVM tensor, holding the mapping alive.
struct MappedView {
  std::shared_ptr<const char> mapping;
  const char* data;
  void AllocData(DLTensor* t) { t->data = const_cast<char*>(data); }
  void FreeData(DLTensor*) {}
};

// A fixed argument (a param) straight from its mapped file when its data is 64-byte aligned, as
// the kernels assume and np.save's 64-byte header padding gives; an aligned copy otherwise.
inline tvm::ffi::Tensor ParamTensor(const std::string& path) {
  MappedNpy file = MapNpy(path);
  const tvm::ffi::ShapeView shape(file.meta.shape.data(), file.meta.shape.size());
  if (reinterpret_cast<uintptr_t>(file.data) % 64 == 0) {
    return tvm::ffi::Tensor::FromNDAlloc(MappedView{file.mapping, file.data}, shape, file.meta.dtype,
                                         DLDevice{kDLCPU, 0});
  }
  file.meta.bytes.assign(file.data, file.data + ByteCount(file.meta));
  return ToTensor(file.meta);
}

// Bundles store the kernels' 2-bit weights as a trit stream, 5 trits a byte (byte = sum of
// (t+1) * 3^i), to ship 1.6 instead of 2 bits a weight; this rebuilds the kernel bytes, four
// 2-bit codes t+1 a byte, lowest bits first, in the same stream order. The stored bytes are read
// from the mapped file; each becomes its 5 codes (10 bits) from a table, shifted into place.
inline tvm::ffi::Tensor TwoBitFromBase3(const std::string& path, const std::vector<int64_t>& shape) {
  const MappedNpy stored = MapNpy(path);
  size_t out_bytes = 1;
  for (int64_t d : shape) out_bytes *= static_cast<size_t>(d);
  const size_t trits = 4 * out_bytes, in_bytes = (trits + 4) / 5;
  if (stored.meta.dtype.code != kDLUInt || stored.meta.dtype.bits != 8 || ByteCount(stored.meta) != in_bytes) {
    throw std::runtime_error(path + " does not hold the base-3 bytes of a " + std::to_string(out_bytes) +
                             "-byte packed weight; rebuild the bundle");
  }
  tvm::ffi::Tensor t = tvm::ffi::Tensor::FromNDAlloc(AlignedAlloc(), tvm::ffi::ShapeView(shape.data(), shape.size()),
                                                     DLDataType{kDLUInt, 8, 1}, DLDevice{kDLCPU, 0});
  static const auto codes = [] {  // byte value -> its 5 base-3 digits as 2-bit codes, lowest first
    std::array<uint16_t, 243> table{};
    for (unsigned v = 0; v < 243; ++v) {
      for (unsigned i = 0, rest = v; i < 5; ++i, rest /= 3) table[v] |= static_cast<uint16_t>((rest % 3) << (2 * i));
    }
    return table;
  }();
  auto* out = static_cast<uint8_t*>(t.data_ptr());
  const auto* in = reinterpret_cast<const unsigned char*>(stored.data);
  // 10 code bits come in per stored byte, 8 go out per kernel byte; 10 * in_bytes >= 8 * out_bytes.
  uint32_t bits = 0;  // code bits not yet written, lowest first; `held` of them valid
  unsigned held = 0;
  size_t written = 0;
  for (size_t i = 0; i < in_bytes; ++i) {
    if (in[i] > 242) throw std::runtime_error(path + " holds a byte no 5 trits encode; the bundle is damaged");
    bits |= static_cast<uint32_t>(codes[in[i]]) << held;
    for (held += 10; held >= 8 && written < out_bytes; held -= 8, bits >>= 8) out[written++] = static_cast<uint8_t>(bits);
  }
  return t;
}

// Another kernel family's tiling of the same 2-bit weights: `stored` [T, KQ, W] holds tiles of
// W/KG-lane rows; the kernel wants [T', KQ, W'] with W' dividing W, i.e. each stored tile split
// into W/W' narrower tiles, kept in order (tile t' = s*t + i holds part i of stored tile t).
// T' may fall short of s*T by the padding tiles of the wider layout (edgeclip.quant.packing.retiled).
inline tvm::ffi::Tensor Retiled(const tvm::ffi::Tensor& stored, const std::vector<int64_t>& shape,
                                const std::string& path) {
  const tvm::ffi::ShapeView in = stored.shape();
  if (in.size() != 3 || shape.size() != 3 || shape[1] != in[1] || shape[2] <= 0 || in[2] % shape[2] != 0 ||
      shape[0] > in[0] * (in[2] / shape[2]) || shape[0] <= (in[0] - 1) * (in[2] / shape[2])) {
    throw std::runtime_error(path + ": its packed shape cannot be re-tiled to the kernel's; rebuild the bundle");
  }
  const size_t split = static_cast<size_t>(in[2] / shape[2]), row = static_cast<size_t>(shape[2]);
  const size_t groups = static_cast<size_t>(in[1]), tiles = static_cast<size_t>(shape[0]);
  tvm::ffi::Tensor t = tvm::ffi::Tensor::FromNDAlloc(AlignedAlloc(), tvm::ffi::ShapeView(shape.data(), shape.size()),
                                                     DLDataType{kDLUInt, 8, 1}, DLDevice{kDLCPU, 0});
  const auto* from = static_cast<const uint8_t*>(stored.data_ptr());
  auto* to = static_cast<uint8_t*>(t.data_ptr());
  for (size_t tile = 0; tile < tiles; ++tile) {
    for (size_t g = 0; g < groups; ++g) {
      std::memcpy(to + (tile * groups + g) * row, from + ((tile / split) * groups + g) * row * split + (tile % split) * row, row);
    }
  }
  return t;
}

// One preprocessed image (float32 [1, C, H, W]) into row `row` of the image tower's input `input`:
// what embedding and bench --image feed the tower; a size that is not one row is refused.
inline void WriteImageRow(const HostArray& pixels, const tvm::ffi::Tensor& input, size_t row) {
  const DLTensor& t = *input.GetDLTensorPtr();
  const size_t bytes = pixels.bytes.size(), total = static_cast<size_t>(tvm::ffi::GetDataSize(t));
  if (bytes == 0 || total % bytes != 0 || (row + 1) * bytes > total) {
    throw std::runtime_error("the manifest's preprocessing does not give the image tower's input size; "
                             "rebuild the bundle");
  }
  std::memcpy(static_cast<char*>(t.data) + row * bytes, pixels.bytes.data(), bytes);
}

inline std::vector<tvm::ffi::Tensor> Flatten(const tvm::ffi::Any& result) {
  if (auto t = result.try_cast<tvm::ffi::Tensor>()) return {*t};
  if (auto items = result.try_cast<tvm::ffi::Array<tvm::ffi::Any>>()) {
    std::vector<tvm::ffi::Tensor> out;
    for (const tvm::ffi::Any& item : *items) {
      for (tvm::ffi::Tensor& t : Flatten(item)) out.push_back(t);
    }
    return out;
  }
  throw std::runtime_error("the model returned something other than tensors");
}

inline std::vector<double> AsDoubles(const DLTensor& t) {
  size_t n = 1;
  for (int i = 0; i < t.ndim; ++i) n *= static_cast<size_t>(t.shape[i]);
  std::vector<double> out(n);
  const char* base = static_cast<const char*>(t.data) + t.byte_offset;
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32) {
    for (size_t i = 0; i < n; ++i) out[i] = reinterpret_cast<const float*>(base)[i];
  } else if (t.dtype.code == kDLFloat && t.dtype.bits == 64) {
    for (size_t i = 0; i < n; ++i) out[i] = reinterpret_cast<const double*>(base)[i];
  } else {
    throw std::runtime_error("cosine needs float32/float64 outputs");
  }
  return out;
}

inline double Cosine(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) throw std::runtime_error("output and reference differ in size");
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  // A NaN or infinite value agrees with nothing: -1, the lowest cosine there is, so the output
  // check fails however the minimum over towers is taken.
  if (!std::isfinite(dot) || !std::isfinite(na) || !std::isfinite(nb)) return -1.0;
  if (na == 0 || nb == 0) return na == nb ? 1.0 : 0.0;
  return dot / std::sqrt(na * nb);
}

}  // namespace edgeclip

#endif  // EDGECLIP_TENSORS_H_
