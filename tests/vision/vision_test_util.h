// Helpers shared by the vision tests: where ../shared is, and small JPEG/PNG encoders for building
// test images (valid ones, and hostile ones by editing their bytes).
#pragma once

#include <gtest/gtest.h>
#include <spng.h>
#include <turbojpeg.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kestrel/base/tensor.h"

namespace kestrel::vision::testing {

namespace fs = std::filesystem;

inline fs::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? fs::path(dir) : fs::path("../shared");
}

#define REQUIRE_SHARED()                                                                       \
  if (!std::filesystem::exists(::kestrel::vision::testing::shared_dir() / "reference" /        \
                               "yolov5n_reference.json")) {                                    \
    GTEST_SKIP() << "needs ../shared (images, models, reference outputs); set KESTREL_SHARED"; \
  }

// A uint8 [h, w, c] tensor with a smooth pattern plus noise (compresses like a photo).
inline Tensor pattern_image(int64_t h, int64_t w, int64_t c, uint32_t seed = 1) {
  Tensor t = Tensor::allocate(DType::kUInt8, Shape{h, w, c}).value();
  std::mt19937 rng(seed);
  uint8_t* p = t.data<uint8_t>();
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t k = 0; k < c; ++k) {
        const int v =
            static_cast<int>((x * 7 + y * 3 + k * 60) % 200) + static_cast<int>(rng() % 16);
        p[(y * w + x) * c + k] = static_cast<uint8_t>(v);
      }
    }
  }
  return t;
}

// Encodes pixels with turbojpeg. pixel_format: TJPF_RGB, TJPF_GRAY or TJPF_CMYK.
inline std::string encode_jpeg(const uint8_t* pixels, int width, int height, int pixel_format,
                               int subsampling, int quality = 95, int flags = 0) {
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(tj, pixels, width, 0, height, pixel_format, &buf, &size, subsampling,
                             quality, flags);
  EXPECT_EQ(rc, 0) << tjGetErrorStr2(tj);
  std::string out(reinterpret_cast<const char*>(buf), size);
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

inline std::string encode_jpeg(const Tensor& rgb, int subsampling = TJSAMP_444, int quality = 95,
                               int flags = 0) {
  return encode_jpeg(rgb.data<uint8_t>(), static_cast<int>(rgb.shape()[1]),
                     static_cast<int>(rgb.shape()[0]), TJPF_RGB, subsampling, quality, flags);
}

// Encodes raw PNG samples (`data` as spng's SPNG_FMT_PNG expects: 16-bit samples host-endian).
inline std::string encode_png(const std::vector<uint8_t>& data, uint32_t width, uint32_t height,
                              uint8_t color_type, uint8_t bit_depth,
                              const std::vector<spng_plte_entry>& palette = {}) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = width;
  ihdr.height = height;
  ihdr.color_type = color_type;
  ihdr.bit_depth = bit_depth;
  spng_set_ihdr(ctx, &ihdr);
  if (!palette.empty()) {
    spng_plte plte{};
    plte.n_entries = static_cast<uint32_t>(palette.size());
    for (size_t i = 0; i < palette.size(); ++i) plte.entries[i] = palette[i];
    spng_set_plte(ctx, &plte);
  }
  int rc = spng_encode_image(ctx, data.data(), data.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  EXPECT_EQ(rc, 0) << spng_strerror(rc);
  size_t size = 0;
  int error = 0;
  void* buf = spng_get_png_buffer(ctx, &size, &error);
  EXPECT_EQ(error, 0) << spng_strerror(error);
  std::string out(static_cast<const char*>(buf), size);
  std::free(buf);
  spng_ctx_free(ctx);
  return out;
}

// CRC-32 as PNG chunks use it, for forging headers.
inline uint32_t png_crc(const uint8_t* p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

inline void put_be32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (24 - 8 * i)) & 0xFF);
}

// A copy of a PNG whose IHDR declares width x height (CRC fixed up).
inline std::string forge_png_size(std::string png, uint32_t width, uint32_t height) {
  // Signature (8), IHDR length (4), "IHDR" (4), width at 16, height at 20, CRC at 29 over 12..28.
  put_be32(png, 16, width);
  put_be32(png, 20, height);
  put_be32(png, 29, png_crc(reinterpret_cast<const uint8_t*>(png.data()) + 12, 17));
  return png;
}

// Offset of the SOF0/1/2 marker in a JPEG (height at +5, width at +7), or npos.
inline size_t jpeg_sof_offset(const std::string& jpeg) {
  size_t pos = 2;
  while (pos + 4 <= jpeg.size() && static_cast<uint8_t>(jpeg[pos]) == 0xFF) {
    const auto marker = static_cast<uint8_t>(jpeg[pos + 1]);
    if (marker >= 0xC0 && marker <= 0xC2) return pos;
    pos += 2 + ((static_cast<size_t>(static_cast<uint8_t>(jpeg[pos + 2])) << 8) |
                static_cast<uint8_t>(jpeg[pos + 3]));
  }
  return std::string::npos;
}

// A copy of a JPEG whose frame header declares width x height.
inline std::string forge_jpeg_size(std::string jpeg, uint16_t width, uint16_t height) {
  const size_t sof = jpeg_sof_offset(jpeg);
  EXPECT_NE(sof, std::string::npos);
  jpeg[sof + 5] = static_cast<char>(height >> 8);
  jpeg[sof + 6] = static_cast<char>(height & 0xFF);
  jpeg[sof + 7] = static_cast<char>(width >> 8);
  jpeg[sof + 8] = static_cast<char>(width & 0xFF);
  return jpeg;
}

}  // namespace kestrel::vision::testing
