// Reading and writing NumPy .npy files (version 1/2 headers, C order, little-endian) as host
// arrays that TVM can see as DLTensors. Shared by the bundle's native runner and by the kernel
// cross-run harness in edgeclip/schedules, so both accept exactly the same files.
#ifndef EDGECLIP_NPY_H_
#define EDGECLIP_NPY_H_

#include <dlpack/dlpack.h>

#include <cstdint>
#include <fstream>
#include <iterator>
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

inline HostArray ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() < 10 || std::string(file.data() + 1, 5) != "NUMPY") {
    throw std::runtime_error(path + " is not a .npy file");
  }
  const int major = file[6];
  const size_t len_bytes = major == 1 ? 2 : 4;
  size_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) {
    header_len |= static_cast<size_t>(static_cast<unsigned char>(file[8 + i])) << (8 * i);
  }
  const size_t data_at = 8 + len_bytes + header_len;
  if (file.size() < data_at) throw std::runtime_error(path + " has a truncated header");
  const std::string header(file.data() + 8 + len_bytes, header_len);
  if (HeaderField(header, "fortran_order") != "False") {
    throw std::runtime_error(path + " is Fortran-ordered; save it C-contiguous");
  }
  std::string descr = HeaderField(header, "descr");
  HostArray arr;
  arr.dtype = ParseDescr(descr.substr(1, descr.size() - 2));
  std::stringstream dims(HeaderField(header, "shape"));
  int64_t count = 1;
  for (char c; dims >> c;) {
    if (c >= '0' && c <= '9') {
      dims.putback(c);
      int64_t extent;
      dims >> extent;
      arr.shape.push_back(extent);
      count *= extent;
    }
  }
  const size_t nbytes = static_cast<size_t>(count) * arr.dtype.bits / 8;
  if (file.size() < data_at + nbytes) throw std::runtime_error(path + " is truncated");
  arr.bytes.assign(file.begin() + data_at, file.begin() + data_at + nbytes);
  return arr;
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
