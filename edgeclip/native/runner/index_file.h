// The search index file (docs/bundle-format.md#search-index; the same schema as
// edgeclip/formats/index.py): embeddings stored int8 per vector with a float32 scale, optionally
// with their sign bits for a binary first pass, plus each item's text or path, stamped with the
// model that embedded them. Every size is bounded and the whole file checked (exact length,
// CRC-32 of everything after the 64-byte prefix) before anything is trusted; the file is mapped,
// never copied, so a 100,000-item index costs its page cache only.
#ifndef EDGECLIP_INDEX_FILE_H_
#define EDGECLIP_INDEX_FILE_H_

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "inflate.h"
#include "json.h"
#include "report.h"

namespace edgeclip {

constexpr char kIndexMagic[8] = {'E', 'C', 'I', 'N', 'D', 'E', 'X', '\0'};
constexpr uint32_t kIndexVersion = 1;  // as edgeclip.formats.index.VERSION
constexpr uint32_t kEncodingInt8 = 1, kEncodingBinary = 2;
constexpr uint32_t kMaxIndexCount = 10000000, kMaxIndexDim = 4096, kMaxIndexHeader = 65536;
constexpr uint64_t kMaxIndexStrings = uint64_t{1} << 30;
constexpr size_t kIndexPrefix = 64, kIndexAlign = 64;

// Who embedded the items: the bundle (its manifest name), the tower and variant, and the sha256 of
// that tower's module as the manifest lists it. A query must come from the same model.
struct ModelIdentity {
  std::string bundle, tower, variant, module_sha256;
  bool operator==(const ModelIdentity& o) const {
    return bundle == o.bundle && tower == o.tower && variant == o.variant && module_sha256 == o.module_sha256;
  }
  std::string Describe() const {
    return "bundle " + bundle + " (" + variant + " " + tower + " tower, module sha256 " + module_sha256.substr(0, 12) + ")";
  }
};

inline size_t AlignUp(size_t n, size_t a) { return (n + a - 1) / a * a; }
inline size_t CodeStride(uint32_t dim) { return AlignUp(dim, 32); }          // int8 row, zero padded
inline size_t BitStride(uint32_t dim) { return AlignUp((dim + 7) / 8, 8); }  // sign bits, whole u64s

// Where each section lies, from the prefix's counts alone (so the length check comes first).
struct IndexLayout {
  size_t header = kIndexPrefix, mean = 0, scales = 0, codes = 0, bits = 0, lines = 0, offsets = 0, strings = 0,
         total = 0;
  IndexLayout(uint32_t encoding, uint32_t count, uint32_t dim, uint32_t header_bytes, uint64_t strings_bytes) {
    mean = AlignUp(header + header_bytes, kIndexAlign);
    scales = AlignUp(mean + size_t{4} * dim, kIndexAlign);
    codes = AlignUp(scales + size_t{4} * count, kIndexAlign);
    bits = AlignUp(codes + CodeStride(dim) * count, kIndexAlign);
    lines = AlignUp(bits + (encoding == kEncodingBinary ? BitStride(dim) * count : 0), kIndexAlign);
    offsets = AlignUp(lines + size_t{4} * count, kIndexAlign);
    strings = offsets + size_t{8} * (count + size_t{1});
    total = strings + strings_bytes;
  }
};

inline uint32_t U32At(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t U64At(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// One index file, mapped read-only and validated.
class IndexFile {
 public:
  explicit IndexFile(const std::string& path) : path_(path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open the index " + path + "; check the path");
    struct stat info{};
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      close(fd);
      throw std::runtime_error("the index " + path + " is not a regular file");
    }
    size_ = static_cast<size_t>(info.st_size);
    if (size_ < kIndexPrefix) {
      close(fd);
      Fail("is " + std::to_string(size_) + " bytes, shorter than the 64-byte prefix (truncated?)");
    }
    void* base = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) throw std::runtime_error("cannot map the index " + path);
    map_ = std::shared_ptr<const char>(static_cast<const char*>(base),
                                       [n = size_](const char* p) { munmap(const_cast<char*>(p), n); });
    Validate();
  }

  uint32_t count() const { return count_; }
  uint32_t dim() const { return dim_; }
  uint32_t encoding() const { return encoding_; }
  const std::string& kind() const { return kind_; }  // "text" or "image"
  const ModelIdentity& model() const { return model_; }
  const std::string& path() const { return path_; }
  const float* Mean() const { return reinterpret_cast<const float*>(base() + layout().mean); }
  const float* Scales() const { return reinterpret_cast<const float*>(base() + layout().scales); }
  const int8_t* Codes() const { return reinterpret_cast<const int8_t*>(base() + layout().codes); }
  const uint64_t* Bits() const { return reinterpret_cast<const uint64_t*>(base() + layout().bits); }
  uint32_t Line(uint32_t id) const { return U32At(base() + layout().lines + 4 * size_t{id}); }
  std::string Item(uint32_t id) const {
    size_t length = 0;
    const char* data = ItemData(id, &length);
    return std::string(data, length);
  }
  const char* ItemData(uint32_t id, size_t* length) const {
    const char* offsets = base() + layout().offsets;
    const uint64_t from = U64At(offsets + 8 * size_t{id}), to = U64At(offsets + 8 * (size_t{id} + 1));
    *length = static_cast<size_t>(to - from);
    return base() + layout().strings + from;
  }

 private:
  const char* base() const { return map_.get(); }
  IndexLayout layout() const { return IndexLayout(encoding_, count_, dim_, header_bytes_, strings_bytes_); }

  [[noreturn]] void Fail(const std::string& problem) const {
    throw std::runtime_error("the index " + path_ + " " + problem + "; rebuild it with edgeclip-runner index");
  }

  void Validate() {
    const char* p = base();
    if (std::memcmp(p, kIndexMagic, 8) != 0) Fail("is not an edgeclip index (bad magic)");
    const uint32_t version = U32At(p + 8);
    if (version != kIndexVersion) {
      Fail("has format version " + std::to_string(version) + "; this runner reads version " + std::to_string(kIndexVersion));
    }
    encoding_ = U32At(p + 12);
    count_ = U32At(p + 16);
    dim_ = U32At(p + 20);
    header_bytes_ = U32At(p + 24);
    const uint32_t crc = U32At(p + 28);
    strings_bytes_ = U64At(p + 32);
    const uint64_t total = U64At(p + 40);
    if (encoding_ != kEncodingInt8 && encoding_ != kEncodingBinary) Fail("has an unknown encoding " + std::to_string(encoding_));
    if (count_ < 1 || count_ > kMaxIndexCount) Fail("claims " + std::to_string(count_) + " items, not 1 to " + std::to_string(kMaxIndexCount));
    if (dim_ < 1 || dim_ > kMaxIndexDim) Fail("claims dimension " + std::to_string(dim_) + ", not 1 to " + std::to_string(kMaxIndexDim));
    if (header_bytes_ < 2 || header_bytes_ > kMaxIndexHeader) Fail("has a header of " + std::to_string(header_bytes_) + " bytes");
    if (strings_bytes_ > kMaxIndexStrings) Fail("claims " + std::to_string(strings_bytes_) + " bytes of item text, over 1 GiB");
    for (size_t i = 48; i < kIndexPrefix; ++i) {
      if (p[i] != 0) Fail("has non-zero reserved bytes");
    }
    const IndexLayout at = layout();
    if (total != at.total || size_ != at.total) {
      Fail("is " + std::to_string(size_) + " bytes, not the " + std::to_string(at.total) + " its counts give (truncated?)");
    }
    if (inflate::Crc32(p + kIndexPrefix, size_ - kIndexPrefix) != crc) Fail("is damaged (its CRC-32 does not match)");
    Json header = JsonReader::Parse(std::string(p + at.header, header_bytes_));
    kind_ = Field(header, "kind");
    if (kind_ != "text" && kind_ != "image") Fail("has kind '" + kind_ + "', not text or image");
    const Json* model = header.Find("model");
    if (model == nullptr || model->kind != Json::kObject) Fail("header has no model object");
    model_ = {Field(*model, "bundle"), Field(*model, "tower"), Field(*model, "variant"), Field(*model, "module_sha256")};
    const char* offsets = p + at.offsets;
    if (U64At(offsets) != 0 || U64At(offsets + 8 * size_t{count_}) != strings_bytes_) Fail("has bad item offsets");
    for (uint32_t i = 0; i < count_; ++i) {
      if (U64At(offsets + 8 * size_t{i}) > U64At(offsets + 8 * (size_t{i} + 1))) Fail("has item offsets out of order");
    }
  }

  std::string Field(const Json& object, const std::string& key) const {
    const Json* value = object.Find(key);
    if (value == nullptr || value->kind != Json::kString) Fail("header lacks the string '" + key + "'");
    return value->text;
  }

  std::string path_;
  std::shared_ptr<const char> map_;
  size_t size_ = 0;
  uint32_t encoding_ = 0, count_ = 0, dim_ = 0, header_bytes_ = 0;
  uint64_t strings_bytes_ = 0;
  std::string kind_;
  ModelIdentity model_;
};

// A vector as int8 codes with one scale: scale = max|x| / 127, q = round(x / scale) (ties to
// even), in float32, exactly as edgeclip.bundle.index_host (numpy) does. Items are stored as their
// residual from the corpus mean: embeddings crowd around it, and the residuals' smaller range
// makes the codes' steps finer (recall on a tightly clustered 32-dimension model: 0.963 -> 0.98+).
inline float QuantizeRow(const float* x, uint32_t dim, int8_t* codes) {
  float peak = 0;
  for (uint32_t j = 0; j < dim; ++j) peak = std::max(peak, std::fabs(x[j]));
  const float scale = peak / 127.0f;
  for (uint32_t j = 0; j < dim; ++j) {
    const float q = scale > 0 ? std::nearbyint(x[j] / scale) : 0.0f;
    codes[j] = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, q)));
  }
  return scale;
}

inline void SignBits(const int8_t* codes, uint32_t dim, uint8_t* bits) {
  for (uint32_t j = 0; j < dim; ++j) {
    if (codes[j] > 0) bits[j / 8] |= static_cast<uint8_t>(1u << (j % 8));
  }
}

// The items' embeddings (`count` x `dim` floats) with their texts or paths and line numbers,
// encoded as an index file's bytes.
inline std::string EncodeIndex(uint32_t encoding, const std::string& kind, const ModelIdentity& model,
                               const float* rows, const std::vector<std::string>& items,
                               const std::vector<uint32_t>& lines, uint32_t dim) {
  const uint32_t count = static_cast<uint32_t>(items.size());
  if (count < 1 || count > kMaxIndexCount) throw std::runtime_error("an index holds 1 to " + std::to_string(kMaxIndexCount) + " items");
  const std::string header = "{\"kind\": " + Quoted(kind) + ", \"model\": {\"bundle\": " + Quoted(model.bundle) +
                             ", \"tower\": " + Quoted(model.tower) + ", \"variant\": " + Quoted(model.variant) +
                             ", \"module_sha256\": " + Quoted(model.module_sha256) + "}}";
  uint64_t strings_bytes = 0;
  for (const std::string& item : items) strings_bytes += item.size();
  if (strings_bytes > kMaxIndexStrings) throw std::runtime_error("the items' texts exceed the index's 1 GiB limit");
  const IndexLayout at(encoding, count, dim, static_cast<uint32_t>(header.size()), strings_bytes);
  std::string file(at.total, '\0');
  char* p = &file[0];
  std::memcpy(p, kIndexMagic, 8);
  const uint32_t fixed[] = {kIndexVersion, encoding, count, dim, static_cast<uint32_t>(header.size()), 0};
  std::memcpy(p + 8, fixed, sizeof(fixed));
  std::memcpy(p + 32, &strings_bytes, 8);
  const uint64_t total = at.total;
  std::memcpy(p + 40, &total, 8);
  std::memcpy(p + at.header, header.data(), header.size());
  // The mean summed in double row by row, in order (numpy's cumsum: the host writer gets the same float).
  std::vector<double> sum(dim, 0.0);
  for (uint32_t i = 0; i < count; ++i) {
    for (uint32_t j = 0; j < dim; ++j) sum[j] += rows[size_t{dim} * i + j];
  }
  std::vector<float> mean(dim), residual(dim);
  for (uint32_t j = 0; j < dim; ++j) mean[j] = static_cast<float>(sum[j] / count);
  std::memcpy(p + at.mean, mean.data(), size_t{4} * dim);
  for (uint32_t i = 0; i < count; ++i) {
    int8_t* codes = reinterpret_cast<int8_t*>(p + at.codes + CodeStride(dim) * i);
    for (uint32_t j = 0; j < dim; ++j) residual[j] = rows[size_t{dim} * i + j] - mean[j];
    const float scale = QuantizeRow(residual.data(), dim, codes);
    std::memcpy(p + at.scales + 4 * size_t{i}, &scale, 4);
    if (encoding == kEncodingBinary) SignBits(codes, dim, reinterpret_cast<uint8_t*>(p + at.bits + BitStride(dim) * i));
    std::memcpy(p + at.lines + 4 * size_t{i}, &lines[i], 4);
  }
  uint64_t offset = 0;
  for (uint32_t i = 0; i <= count; ++i) {
    std::memcpy(p + at.offsets + 8 * size_t{i}, &offset, 8);
    if (i < count) {
      std::memcpy(p + at.strings + offset, items[i].data(), items[i].size());
      offset += items[i].size();
    }
  }
  const uint32_t crc = inflate::Crc32(p + kIndexPrefix, at.total - kIndexPrefix);
  std::memcpy(p + 28, &crc, 4);
  return file;
}

// `bytes` as `path`: written beside it, flushed to disk, then renamed over it.
inline void WriteFileAtomic(const std::string& path, const std::string& bytes) {
  const std::string partial = path + "." + std::to_string(getpid()) + ".part";
  const int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + partial + "; check that its folder exists and is writable");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == bytes.size() && fsync(fd) == 0;
  close(fd);
  if (!ok || std::rename(partial.c_str(), path.c_str()) != 0) {
    std::remove(partial.c_str());
    throw std::runtime_error("cannot write " + path + " (disk full?)");
  }
}

}  // namespace edgeclip

#endif  // EDGECLIP_INDEX_FILE_H_
