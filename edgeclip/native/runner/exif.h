// The EXIF Orientation of a JPEG (APP1 "Exif") or PNG (eXIf chunk), read from the file's bytes
// with every offset bounds-checked: stb_image decodes pixels only, and phones store photos sideways.
#ifndef EDGECLIP_EXIF_H_
#define EDGECLIP_EXIF_H_

#include <cstdint>
#include <cstring>
#include <string>

namespace edgeclip {

// Orientation (tag 0x0112) in IFD0 of a TIFF structure; 1 (as stored) when absent or malformed.
inline int TiffOrientation(const uint8_t* tiff, size_t size) {
  if (size < 8) return 1;
  const bool little = tiff[0] == 'I' && tiff[1] == 'I';
  if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
  auto u16 = [&](size_t at) -> uint32_t {
    return little ? tiff[at] | tiff[at + 1] << 8 : tiff[at] << 8 | tiff[at + 1];
  };
  auto u32 = [&](size_t at) -> uint32_t { return little ? u16(at) | u16(at + 2) << 16 : u16(at) << 16 | u16(at + 2); };
  if (u16(2) != 42) return 1;
  const size_t ifd = u32(4);
  if (ifd > size - 2) return 1;
  const uint32_t entries = u16(ifd);
  for (uint32_t i = 0; i < entries; ++i) {
    const size_t entry = ifd + 2 + 12 * static_cast<size_t>(i);
    if (entry + 12 > size) return 1;
    if (u16(entry) != 0x0112) continue;
    const uint32_t type = u16(entry + 2);
    if (type == 3) return static_cast<int>(u16(entry + 8));   // SHORT
    if (type == 4) return static_cast<int>(u32(entry + 8));   // LONG
    return 1;
  }
  return 1;
}

// JPEG: the first APP1 segment that starts "Exif\0\0" (as Pillow takes it), before the scan data.
inline int JpegOrientation(const uint8_t* data, size_t size) {
  size_t at = 2;  // after SOI
  while (at + 4 <= size && data[at] == 0xFF) {
    const uint8_t marker = data[at + 1];
    if (marker == 0xDA || marker == 0xD9) break;  // start of scan / end of image
    const size_t length = static_cast<size_t>(data[at + 2]) << 8 | data[at + 3];
    if (length < 2 || at + 2 + length > size) break;
    const uint8_t* body = data + at + 4;
    if (marker == 0xE1 && length >= 8 && std::memcmp(body, "Exif\0\0", 6) == 0) {
      return TiffOrientation(body + 6, length - 8);
    }
    at += 2 + length;
  }
  return 1;
}

// PNG: the eXIf chunk (a bare TIFF structure), wherever it sits among the chunks.
inline int PngOrientation(const uint8_t* data, size_t size) {
  size_t at = 8;  // after the signature
  while (at + 12 <= size) {
    const size_t length = static_cast<size_t>(data[at]) << 24 | data[at + 1] << 16 | data[at + 2] << 8 | data[at + 3];
    if (length > size - at - 12) break;
    if (std::memcmp(data + at + 4, "eXIf", 4) == 0) return TiffOrientation(data + at + 8, length);
    if (std::memcmp(data + at + 4, "IEND", 4) == 0) break;
    at += 12 + length;
  }
  return 1;
}

}  // namespace edgeclip

#endif  // EDGECLIP_EXIF_H_
