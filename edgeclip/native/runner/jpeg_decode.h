// JPEG to 8-bit RGB with libjpeg-turbo (its SIMD IDCT and colour conversion; linked statically
// into libedgeclip.so, so a board needs nothing new). It is the decoder Pillow uses, with the same
// defaults (islow IDCT, fancy upsampling), so the device sees the host's pixels. libjpeg reports a
// fatal error by calling error_exit, which must not return: ours longjmps back to the one stage
// function that called into libjpeg. Those stage functions hold only plain C data, and nothing
// but libjpeg's own C frames lies between them and the longjmp, so no C++ destructor is skipped.
// The error manager is ours, not jpeg_std_error: libjpeg's (jerror.c) refers to stderr in a way
// (PIE, not PIC) that cannot link into a shared library, and a library must not print anyway.
#ifndef EDGECLIP_JPEG_DECODE_H_
#define EDGECLIP_JPEG_DECODE_H_

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include <jpeglib.h>  // Debian libjpeg62-turbo-dev (libjpeg.a of the target's architecture)

#include "image.h"

namespace edgeclip {

struct JpegError {
  jpeg_error_mgr manager;  // first, so libjpeg's pointer to it is a pointer to this
  std::jmp_buf back;
  char message[JMSG_LENGTH_MAX];
};

// libjpeg's message texts, built from its jerror.h as its jerror.c does.
// Two texts name macros of libjpeg's private jversion.h: stand-ins for those.
#define JVERSION "libjpeg-turbo"
#define JCOPYRIGHT_SHORT "libjpeg-turbo copyright notice"
#define JMESSAGE(code, string) string,
inline const char* const kJpegMessages[] = {
#include <jerror.h>
    nullptr};

extern "C" inline void JpegFormatMessage(j_common_ptr cinfo, char* buffer) {
  const jpeg_error_mgr* err = cinfo->err;
  const int code = err->msg_code, known = static_cast<int>(sizeof kJpegMessages / sizeof kJpegMessages[0]) - 1;
  const char* text = code >= 0 && code < known ? kJpegMessages[code] : nullptr;
  if (text == nullptr) {
    std::snprintf(buffer, JMSG_LENGTH_MAX, "libjpeg error %d", code);
  } else if (std::strstr(text, "%s") != nullptr) {
    char word[JMSG_STR_PARM_MAX + 1] = {};
    std::memcpy(word, err->msg_parm.s, JMSG_STR_PARM_MAX);  // libjpeg may leave it unterminated
    std::snprintf(buffer, JMSG_LENGTH_MAX, text, word);
  } else {
    const int* i = err->msg_parm.i;
    std::snprintf(buffer, JMSG_LENGTH_MAX, text, i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7]);
  }
}

extern "C" inline void JpegErrorExit(j_common_ptr cinfo) {
  JpegError* error = reinterpret_cast<JpegError*>(cinfo->err);
  JpegFormatMessage(cinfo, error->message);
  std::longjmp(error->back, 1);
}

// Warnings and traces (corrupt data libjpeg recovers from) are dropped: a library must not print.
extern "C" inline void JpegEmitMessage(j_common_ptr, int) {}
extern "C" inline void JpegOutputMessage(j_common_ptr) {}
extern "C" inline void JpegResetErrors(j_common_ptr cinfo) {
  cinfo->err->num_warnings = 0;
  cinfo->err->msg_code = 0;
}

inline void InstallJpegErrors(jpeg_decompress_struct* cinfo, JpegError* error) {
  jpeg_error_mgr& m = error->manager;
  m.error_exit = JpegErrorExit;
  m.emit_message = JpegEmitMessage;
  m.output_message = JpegOutputMessage;
  m.format_message = JpegFormatMessage;
  m.reset_error_mgr = JpegResetErrors;
  m.jpeg_message_table = kJpegMessages;
  m.last_jpeg_message = static_cast<int>(sizeof kJpegMessages / sizeof kJpegMessages[0]) - 2;
  cinfo->err = &m;
}

// The stages run under setjmp; each returns false after a libjpeg error, its text in error.message.
inline bool JpegReadHeader(jpeg_decompress_struct* cinfo, JpegError* error, const uint8_t* data, size_t size) {
  if (setjmp(error->back)) return false;
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(cinfo, TRUE);
  return true;
}

inline bool JpegReadPixels(jpeg_decompress_struct* cinfo, JpegError* error, uint8_t* rgb, size_t row_bytes) {
  if (setjmp(error->back)) return false;
  cinfo->out_color_space = JCS_RGB;
  jpeg_start_decompress(cinfo);
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = rgb + cinfo->output_scanline * row_bytes;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  return true;
}

// libjpeg's state, destroyed however decoding ends (also when a constructor throws). Destroying
// a never-created (zeroed) decompressor is a no-op in libjpeg.
struct JpegState {
  jpeg_decompress_struct cinfo{};
  JpegError error{};
  JpegState() = default;
  JpegState(const JpegState&) = delete;
  JpegState& operator=(const JpegState&) = delete;
  ~JpegState() { jpeg_destroy_decompress(&cinfo); }
};

// One JPEG: its header read on construction, its pixels on Decode().
class JpegDecoder {
 public:
  JpegDecoder(const std::string& path, const uint8_t* data, size_t size) : path_(path) {
    InstallJpegErrors(&state_.cinfo, &state_.error);
    if (!JpegReadHeader(&state_.cinfo, &state_.error, data, size)) Fail("header");
  }

  int width() const { return static_cast<int>(state_.cinfo.image_width); }
  int height() const { return static_cast<int>(state_.cinfo.image_height); }
  // CMYK and YCCK, which libjpeg cannot turn into RGB.
  bool four_channels() const { return state_.cinfo.num_components == 4; }

  // The pixels: call only after checking width() x height() against the caller's bounds.
  Image Decode() {
    Image image(width(), height(), 3);
    if (!JpegReadPixels(&state_.cinfo, &state_.error, image.pixels.data(), static_cast<size_t>(image.width) * 3)) {
      Fail("pixels");
    }
    if (static_cast<int>(state_.cinfo.output_width) != image.width ||
        static_cast<int>(state_.cinfo.output_height) != image.height) {
      throw std::runtime_error("cannot decode " + path_ + " (libjpeg changed its size while decoding)");
    }
    return image;
  }

 private:
  [[noreturn]] void Fail(const char* stage) {
    throw std::runtime_error("cannot decode the JPEG " + std::string(stage) + " of " + path_ + " (" +
                             state_.error.message + ")");
  }

  std::string path_;
  JpegState state_;
};

}  // namespace edgeclip

#endif  // EDGECLIP_JPEG_DECODE_H_
