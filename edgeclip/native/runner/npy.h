// Reading and writing NumPy .npy files (version 1/2 headers, C order, little-endian) as host
// arrays that TVM can see as DLTensors. Shared by the bundle's native runner and by the kernel
// cross-run harness in edgeclip/schedules, so both accept exactly the same files.
#ifndef EDGECLIP_NPY_H_
#define EDGECLIP_NPY_H_

#include <dlpack/dlpack.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgeclip {

// One array read from (or written to) a .npy file, owning its bytes.
struct HostArray {
  std::vector<int64_t> shape;
  DLDataType dtype{};
  std::vector<char> bytes;
  DLTensor view{};

  DLTensor* AsDLTensor() {
    view.data = bytes.data();
    view.device = DLDevice{kDLCPU, 0};
    view.ndim = static_cast<int32_t>(shape.size());
    view.dtype = dtype;
    view.shape = shape.data();
    view.strides = nullptr;
    view.byte_offset = 0;
    return &view;
  }
};

struct DtypeName {
  const char* npy;  // numpy descr without the byte-order character
  DLDataType dl;
};

// The dtypes models and kernels exchange; one-byte types carry '|' in numpy, the rest '<'.
inline const DtypeName kDtypes[] = {
    {"f4", {kDLFloat, 32, 1}}, {"f8", {kDLFloat, 64, 1}}, {"f2", {kDLFloat, 16, 1}},
    {"i1", {kDLInt, 8, 1}},    {"i2", {kDLInt, 16, 1}},   {"i4", {kDLInt, 32, 1}},
    {"i8", {kDLInt, 64, 1}},   {"u1", {kDLUInt, 8, 1}},   {"u2", {kDLUInt, 16, 1}},
    {"u4", {kDLUInt, 32, 1}},  {"u8", {kDLUInt, 64, 1}},
};

inline DLDataType ParseDescr(const std::string& descr) {
  if (descr.size() != 3 || (descr[0] != '<' && descr[0] != '|')) {
    throw std::runtime_error("unsupported npy dtype '" + descr + "' (little-endian only)");
  }
  for (const DtypeName& d : kDtypes) {
    if (descr.compare(1, 2, d.npy) == 0) return d.dl;
  }
  throw std::runtime_error("unsupported npy dtype '" + descr + "'");
}

inline std::string DescrOf(DLDataType dtype) {
  for (const DtypeName& d : kDtypes) {
    if (d.dl.code == dtype.code && d.dl.bits == dtype.bits) {
      return std::string(dtype.bits == 8 ? "|" : "<") + d.npy;
    }
  }
  throw std::runtime_error("array dtype has no npy name");
}

// Text between `key':` and the next delimiter in a .npy header dict.
inline std::string HeaderField(const std::string& header, const std::string& key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw std::runtime_error("npy header lacks '" + key + "'");
  at = header.find(':', at) + 1;
  while (header[at] == ' ') ++at;
  size_t end = header[at] == '(' ? header.find(')', at) + 1 : header.find_first_of(",}", at);
  return header.substr(at, end - at);
}

// The array a .npy file's `size` bytes hold: shape and dtype into `arr` (its bytes left empty), and
// where its data starts; throws unless the file holds all of it.
inline size_t ParseNpy(const char* file, size_t size, const std::string& path, HostArray* arr) {
  if (size < 10 || std::string(file + 1, 5) != "NUMPY") throw std::runtime_error(path + " is not a .npy file");
  const int major = file[6];
  const size_t len_bytes = major == 1 ? 2 : 4;
  size_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) {
    header_len |= static_cast<size_t>(static_cast<unsigned char>(file[8 + i])) << (8 * i);
  }
  const size_t data_at = 8 + len_bytes + header_len;
  if (size < data_at) throw std::runtime_error(path + " has a truncated header");
  const std::string header(file + 8 + len_bytes, header_len);
  if (HeaderField(header, "fortran_order") != "False") {
    throw std::runtime_error(path + " is Fortran-ordered; save it C-contiguous");
  }
  std::string descr = HeaderField(header, "descr");
  arr->dtype = ParseDescr(descr.substr(1, descr.size() - 2));
  std::stringstream dims(HeaderField(header, "shape"));
  int64_t count = 1;
  for (char c; dims >> c;) {
    if (c >= '0' && c <= '9') {
      dims.putback(c);
      int64_t extent;
      dims >> extent;
      arr->shape.push_back(extent);
      count *= extent;
    }
  }
  const size_t nbytes = static_cast<size_t>(count) * arr->dtype.bits / 8;
  if (size - data_at < nbytes) throw std::runtime_error(path + " is truncated");
  return data_at;
}

// Byte count of an array of `arr`'s shape and dtype.
inline size_t ByteCount(const HostArray& arr) {
  size_t n = arr.dtype.bits / 8;
  for (int64_t d : arr.shape) n *= static_cast<size_t>(d);
  return n;
}

inline HostArray ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<char> file;
  in.seekg(0, std::ios::end);
  file.resize(static_cast<size_t>(std::max<std::streamoff>(in.tellg(), 0)));
  in.seekg(0);
  if (!in.read(file.data(), static_cast<std::streamsize>(file.size()))) throw std::runtime_error("cannot read " + path);
  HostArray arr;
  const size_t data_at = ParseNpy(file.data(), file.size(), path, &arr);
  arr.bytes.assign(file.begin() + data_at, file.begin() + data_at + ByteCount(arr));
  return arr;
}

// A .npy file mapped read-only: its array's bytes are the page cache's, read on first touch and
// shared with every process mapping the file, never copied. `meta` has the shape and dtype.
struct MappedNpy {
  std::shared_ptr<const char> mapping;  // unmapped when the last holder lets go
  const char* data = nullptr;
  HostArray meta;
};

inline MappedNpy MapNpy(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  struct stat info{};
  void* base = MAP_FAILED;
  if (fstat(fd, &info) == 0 && info.st_size > 0) {
    base = mmap(nullptr, static_cast<size_t>(info.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  }
  close(fd);  // the mapping keeps the file
  if (base == MAP_FAILED) throw std::runtime_error("cannot map " + path + " (is it an empty or special file?)");
  const size_t size = static_cast<size_t>(info.st_size);
  MappedNpy out;
  out.mapping = std::shared_ptr<const char>(static_cast<const char*>(base),
                                            [size](const char* p) { munmap(const_cast<char*>(p), size); });
  out.data = out.mapping.get() + ParseNpy(out.mapping.get(), size, path, &out.meta);
  return out;
}

inline void WriteNpy(const std::string& path, const HostArray& arr) {
  std::string shape = "(";
  for (int64_t extent : arr.shape) shape += std::to_string(extent) + ", ";
  if (arr.shape.size() > 1) shape.resize(shape.size() - 2);
  shape += ")";
  std::string header =
      "{'descr': '" + DescrOf(arr.dtype) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so magic (6) + version (2) + length (2) + header + '\n' is 64-aligned.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  const char preamble[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const uint16_t header_len = static_cast<uint16_t>(header.size());
  out.write(preamble, sizeof(preamble));
  out.put(static_cast<char>(header_len & 0xff));
  out.put(static_cast<char>(header_len >> 8));
  out << header;
  out.write(arr.bytes.data(), static_cast<std::streamsize>(arr.bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace edgeclip

#endif  // EDGECLIP_NPY_H_
