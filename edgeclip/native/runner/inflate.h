// gunzip (RFC 1952 around RFC 1951 deflate), so the runner reads the gzipped CLIP vocabulary
// with no zlib on the board. Checks each member's CRC-32 and length, as Python's gzip does.
#ifndef EDGECLIP_INFLATE_H_
#define EDGECLIP_INFLATE_H_

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgeclip::inflate {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class BitReader {
 public:
  explicit BitReader(const std::string& data, size_t pos) : data_(data), pos_(pos) {}
  uint32_t Bits(int count) {
    while (have_ < count) {
      if (pos_ >= data_.size()) throw Error("the deflate stream ends early");
      buffer_ |= static_cast<uint32_t>(static_cast<unsigned char>(data_[pos_++])) << have_;
      have_ += 8;
    }
    uint32_t value = buffer_ & ((1u << count) - 1);
    buffer_ >>= count;
    have_ -= count;
    return value;
  }
  void AlignToByte() { buffer_ = 0, have_ = 0; }
  size_t Pos() const { return pos_; }
  void Skip(size_t n) { pos_ += n; }

 private:
  const std::string& data_;
  size_t pos_;
  uint32_t buffer_ = 0;
  int have_ = 0;
};

// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
  std::array<uint16_t, 16> count{};
  std::vector<uint16_t> symbols;

  explicit Huffman(const std::vector<uint8_t>& lengths) {
    for (uint8_t len : lengths) ++count[len];
    count[0] = 0;
    std::array<uint16_t, 16> offset{};
    for (int len = 1; len < 16; ++len) offset[len] = offset[len - 1] + count[len - 1];
    symbols.resize(lengths.size());
    for (size_t s = 0; s < lengths.size(); ++s) {
      if (lengths[s]) symbols[offset[lengths[s]]++] = static_cast<uint16_t>(s);
    }
  }

  int Decode(BitReader& in) const {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; ++len) {
      code |= static_cast<int>(in.Bits(1));
      if (code - first < count[len]) return symbols[index + code - first];
      index += count[len];
      first = (first + count[len]) << 1;
      code <<= 1;
    }
    throw Error("the deflate stream has an invalid Huffman code");
  }
};

inline void InflateCodes(BitReader& in, std::string& out, const Huffman& lit, const Huffman& dist) {
  static constexpr uint16_t kLenBase[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                          35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static constexpr uint8_t kLenExtra[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                          3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static constexpr uint16_t kDistBase[] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                           193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
                                           6145, 8193, 12289, 16385, 24577};
  static constexpr uint8_t kDistExtra[] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6,
                                           6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  for (;;) {
    int symbol = lit.Decode(in);
    if (symbol < 256) {
      out += static_cast<char>(symbol);
      continue;
    }
    if (symbol == 256) return;
    symbol -= 257;
    if (symbol >= 29) throw Error("the deflate stream has an invalid length code");
    size_t length = kLenBase[symbol] + in.Bits(kLenExtra[symbol]);
    int d = dist.Decode(in);
    if (d >= 30) throw Error("the deflate stream has an invalid distance code");
    size_t distance = kDistBase[d] + in.Bits(kDistExtra[d]);
    if (distance > out.size()) throw Error("the deflate stream refers back before its start");
    for (size_t i = 0, from = out.size() - distance; i < length; ++i) out += out[from + i];
  }
}

inline void DynamicBlock(BitReader& in, std::string& out) {
  size_t nlit = in.Bits(5) + 257, ndist = in.Bits(5) + 1, ncode = in.Bits(4) + 4;
  static constexpr uint8_t kOrder[] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
  std::vector<uint8_t> code_lengths(19, 0);
  for (size_t i = 0; i < ncode; ++i) code_lengths[kOrder[i]] = static_cast<uint8_t>(in.Bits(3));
  Huffman lengths_code(code_lengths);
  std::vector<uint8_t> lengths;
  while (lengths.size() < nlit + ndist) {
    int symbol = lengths_code.Decode(in);
    if (symbol < 16) {
      lengths.push_back(static_cast<uint8_t>(symbol));
      continue;
    }
    if (symbol == 16 && lengths.empty()) throw Error("the deflate stream repeats a length before the first");
    uint8_t value = symbol == 16 ? lengths.back() : 0;
    size_t repeat = symbol == 16 ? 3 + in.Bits(2) : symbol == 17 ? 3 + in.Bits(3) : 11 + in.Bits(7);
    lengths.insert(lengths.end(), repeat, value);
  }
  if (lengths.size() != nlit + ndist) throw Error("the deflate stream's code lengths overrun");
  InflateCodes(in, out, Huffman({lengths.begin(), lengths.begin() + nlit}),
               Huffman({lengths.begin() + nlit, lengths.end()}));
}

// One raw deflate stream starting at `pos`; returns the position after its last byte.
inline size_t Inflate(const std::string& data, size_t pos, std::string& out) {
  BitReader in(data, pos);
  for (bool last = false; !last;) {
    last = in.Bits(1);
    uint32_t type = in.Bits(2);
    if (type == 0) {
      in.AlignToByte();
      size_t at = in.Pos();
      if (at + 4 > data.size()) throw Error("the deflate stream ends early");
      auto byte = [&](size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(data[at + k])); };
      unsigned len = byte(0) | byte(1) << 8, nlen = byte(2) | byte(3) << 8;
      if ((len ^ 0xFFFF) != nlen || at + 4 + len > data.size()) throw Error("the deflate stream has a bad stored block");
      out.append(data, at + 4, len);
      in.Skip(4 + len);
    } else if (type == 1) {
      std::vector<uint8_t> lit(288, 8), dist(30, 5);
      for (int i = 144; i < 256; ++i) lit[i] = 9;
      for (int i = 256; i < 280; ++i) lit[i] = 7;
      InflateCodes(in, out, Huffman(lit), Huffman(dist));
    } else if (type == 2) {
      DynamicBlock(in, out);
    } else {
      throw Error("the deflate stream has an invalid block type");
    }
  }
  return in.Pos();
}

inline uint32_t Crc32(const char* data, size_t size) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ static_cast<unsigned char>(data[i])) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

// Every gzip member of `data`, decompressed and concatenated.
inline std::string Gunzip(const std::string& data) {
  std::string out;
  size_t pos = 0;
  auto byte = [&](size_t k) -> uint32_t {
    if (k >= data.size()) throw Error("the gzip file ends early");
    return static_cast<unsigned char>(data[k]);
  };
  auto le32 = [&](size_t k) { return byte(k) | byte(k + 1) << 8 | byte(k + 2) << 16 | byte(k + 3) << 24; };
  do {
    if (byte(pos) != 0x1F || byte(pos + 1) != 0x8B || byte(pos + 2) != 8) throw Error("not a gzip (deflate) file");
    uint32_t flags = byte(pos + 3);
    pos += 10;
    if (flags & 4) pos += 2 + (byte(pos) | byte(pos + 1) << 8);  // FEXTRA
    for (uint32_t field : {8u, 16u}) {                            // FNAME, FCOMMENT: zero-terminated
      if (flags & field) {
        while (byte(pos) != 0) ++pos;
        ++pos;
      }
    }
    if (flags & 2) pos += 2;  // FHCRC
    size_t start = out.size();
    pos = Inflate(data, pos, out);
    if (le32(pos) != Crc32(out.data() + start, out.size() - start) || le32(pos + 4) != ((out.size() - start) & 0xFFFFFFFFu)) {
      throw Error("the gzip file is corrupt (CRC-32 or length differs)");
    }
    pos += 8;
  } while (pos < data.size());
  return out;
}

}  // namespace edgeclip::inflate

#endif  // EDGECLIP_INFLATE_H_
