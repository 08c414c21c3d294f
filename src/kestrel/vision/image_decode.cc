// JPEG and PNG decoding (see image.h): libturbojpeg's tjDecompress2 API (Debian's 2.1 has no tj3),
// libspng, and a small EXIF reader for the orientation tag.
#include <spng.h>
#include <turbojpeg.h>

#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "kestrel/base/file.h"
#include "kestrel/vision/image.h"

namespace kestrel::vision {
namespace {

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

const uint8_t* bytes_of(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

Status check_size(ImageFormat format, int64_t width, int64_t height, const DecodeOptions& options) {
  if (width <= 0 || height <= 0) {
    return invalid_argument("{} image has no pixels ({}x{})", image_format_name(format), width,
                            height);
  }
  // width and height are below 2^32 here, so the product cannot overflow int64.
  const int64_t pixels = width * height;
  if (pixels > options.max_pixels) {
    return invalid_argument(
        "{} image is {}x{} = {} pixels, over the limit of {} (a decompression bomb?)",
        image_format_name(format), width, height, pixels, options.max_pixels);
  }
  return Status();
}

// ---- EXIF ----

// Reads the orientation from an APP1 segment's payload. nullopt when it is not an Exif block (e.g.
// XMP); 1 when it is one without a valid orientation.
std::optional<int> exif_orientation_from_app1(const uint8_t* p, size_t n) {
  static constexpr uint8_t kExifHeader[6] = {'E', 'x', 'i', 'f', 0, 0};
  if (n < 6 || std::memcmp(p, kExifHeader, 6) != 0) return std::nullopt;
  p += 6;
  n -= 6;
  // TIFF header: byte order, 42, offset of the first IFD (from the TIFF header's start).
  if (n < 8) return 1;
  bool big_endian;
  if (p[0] == 'M' && p[1] == 'M') {
    big_endian = true;
  } else if (p[0] == 'I' && p[1] == 'I') {
    big_endian = false;
  } else {
    return 1;
  }
  auto u16 = [&](size_t at) -> uint32_t {
    return big_endian ? (uint32_t{p[at]} << 8) | p[at + 1] : (uint32_t{p[at + 1]} << 8) | p[at];
  };
  auto u32 = [&](size_t at) -> uint32_t {
    return big_endian ? (u16(at) << 16) | u16(at + 2) : (u16(at + 2) << 16) | u16(at);
  };
  if (u16(2) != 42) return 1;
  const size_t ifd = u32(4);
  if (ifd > n || n - ifd < 2) return 1;
  const size_t count = u16(ifd);
  for (size_t i = 0; i < count; ++i) {
    const size_t entry = ifd + 2 + 12 * i;
    if (entry > n || n - entry < 12) return 1;
    if (u16(entry) != 0x0112) continue;  // Orientation
    // Type SHORT (3), count 1: the value sits in the first two bytes of the value field.
    if (u16(entry + 2) != 3 || u32(entry + 4) != 1) return 1;
    const uint32_t value = u16(entry + 8);
    return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
  }
  return 1;
}

// ---- JPEG ----

struct TjDeleter {
  void operator()(void* h) const { tjDestroy(h); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

struct JpegHeader {
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
};

// libjpeg reports recoverable damage as warnings and fills in grey; turbojpeg keeps the message of
// the first warning only. Every warning is an error here (truncation: "Premature end of JPEG
// file", "premature end of data segment"; bad Huffman codes; ...) except stray bytes between
// segments, which many cameras write and which lose nothing: those before the first scan are
// removed before decoding (strip_stray_header_bytes), and those right before the final EOI marker
// come after all image data.
bool is_stray_bytes_before_eoi(const char* message) {
  return std::strstr(message, "extraneous bytes before marker 0xd9") != nullptr;
}

// A copy of `jpeg` without stray bytes between the marker segments before the first scan; nullopt
// when there are none (the usual case). Broken structure is left for libjpeg to report.
std::optional<std::string> strip_stray_header_bytes(std::string_view jpeg) {
  const uint8_t* p = bytes_of(jpeg);
  const size_t n = jpeg.size();
  std::string out(jpeg.substr(0, 2));  // SOI
  bool stray = false;
  size_t pos = 2;
  while (pos < n) {
    if (p[pos] != 0xFF) {  // a stray byte
      stray = true;
      ++pos;
      continue;
    }
    size_t m = pos;  // the marker byte follows any fill bytes (0xFF)
    while (m + 1 < n && p[m + 1] == 0xFF) ++m;
    const size_t end = m + 1 < n ? m + 2 : n;
    const uint8_t marker = m + 1 < n ? p[m + 1] : 0;
    size_t segment_end = end;  // standalone markers have no length
    if (marker != 0x01 && !(marker >= 0xD0 && marker <= 0xD7) && end + 2 <= n) {
      segment_end = end + ((size_t{p[end]} << 8) | p[end + 1]);
    }
    if (marker == 0xDA || marker == 0xD9 || end + 2 > n || segment_end > n ||
        segment_end < end + 2) {
      out.append(jpeg.substr(pos));  // the scans (or something broken): as they are
      break;
    }
    out.append(jpeg.substr(pos, segment_end - pos));
    pos = segment_end;
  }
  if (!stray) return std::nullopt;
  return out;
}

// Whether the last turbojpeg call on `tj` failed with nothing worse than stray bytes before EOI.
// (tjGetErrorCode says "warning" once any warning happened; a later fatal error replaces the
// message.)
bool only_stray_bytes_before_eoi(tjhandle tj) {
  return tjGetErrorCode(tj) == TJERR_WARNING && is_stray_bytes_before_eoi(tjGetErrorStr2(tj));
}

StatusOr<JpegHeader> read_jpeg_header(tjhandle tj, std::string_view bytes) {
  JpegHeader h;
  // tjDecompressHeader3 returns 0 without touching the outputs for a tables-only stream, which the
  // zero-size check then refuses.
  if (tjDecompressHeader3(tj, bytes_of(bytes), static_cast<unsigned long>(bytes.size()), &h.width,
                          &h.height, &h.subsampling, &h.colorspace) != 0) {
    return invalid_argument("corrupt JPEG header: {}", tjGetErrorStr2(tj));
  }
  // libjpeg reports a stream that ends before its frame header (a truncated file) as a
  // tables-only stream: no error, no size.
  if (h.width == 0 && h.height == 0) {
    return invalid_argument("JPEG data ends before the frame header (truncated or tables only)");
  }
  return h;
}

int jpeg_channels(int colorspace) {
  switch (colorspace) {
    case TJCS_GRAY:
      return 1;
    case TJCS_CMYK:
    case TJCS_YCCK:
      return 4;
    default:
      return 3;
  }
}

StatusOr<Tensor> decode_jpeg(std::string_view original, const DecodeOptions& options) {
  const std::optional<std::string> stripped = strip_stray_header_bytes(original);
  const std::string_view bytes = stripped ? std::string_view(*stripped) : original;
  TjHandle tj(tjInitDecompress());
  if (!tj) return internal_error("tjInitDecompress failed: {}", tjGetErrorStr2(nullptr));
  KS_ASSIGN_OR_RETURN(const JpegHeader h, read_jpeg_header(tj.get(), bytes));
  KS_RETURN_IF_ERROR(check_size(ImageFormat::kJpeg, h.width, h.height, options));

  const bool cmyk = jpeg_channels(h.colorspace) == 4;
  const int64_t channels = cmyk ? 4 : 3;
  KS_ASSIGN_OR_RETURN(Tensor pixels,
                      Tensor::allocate(DType::kUInt8, Shape{h.height, h.width, channels}));
  // TJFLAG_LIMITSCANS refuses progressive files with an absurd number of scans (a CPU bomb).
  auto decompress = [&](int extra_flags) {
    return tjDecompress2(tj.get(), bytes_of(bytes), static_cast<unsigned long>(bytes.size()),
                         pixels.data<uint8_t>(), h.width, /*pitch=*/0, h.height,
                         cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_LIMITSCANS | extra_flags);
  };
  // Stop at the first warning. When it is stray bytes before EOI, nothing else went wrong before
  // (it was the first) and nothing can come after: decode again to the end (a progressive file may
  // have stopped before producing any pixel).
  if (decompress(TJFLAG_STOPONWARNING) != 0 &&
      (!only_stray_bytes_before_eoi(tj.get()) ||
       (decompress(0) != 0 && !only_stray_bytes_before_eoi(tj.get())))) {
    return invalid_argument("corrupt or truncated JPEG: {}", tjGetErrorStr2(tj.get()));
  }

  Tensor rgb = pixels;
  if (cmyk) {
    // libjpeg hands out CMYK as stored, which for Adobe's (all common) CMYK JPEGs is inverted: 255
    // means no ink. Then R = C * K / 255, rounded (libjpeg-turbo's own cmyk_to_rgb).
    KS_ASSIGN_OR_RETURN(rgb, Tensor::allocate(DType::kUInt8, Shape{h.height, h.width, 3}));
    const uint8_t* in = pixels.data<uint8_t>();
    uint8_t* out = rgb.data<uint8_t>();
    const int64_t n = int64_t{h.width} * h.height;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t k = in[4 * i + 3];
      for (int c = 0; c < 3; ++c) {
        out[3 * i + c] = static_cast<uint8_t>((2 * in[4 * i + c] * k + 255) / 510);
      }
    }
  }
  if (options.apply_exif_orientation) {
    const int orientation = jpeg_exif_orientation(bytes);
    if (orientation != 1) return apply_exif_orientation(rgb, orientation);
  }
  return rgb;
}

// ---- PNG ----

struct SpngDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};
using SpngContext = std::unique_ptr<spng_ctx, SpngDeleter>;

// A context reading `bytes`, with its IHDR read (and validated by spng: no zero sizes).
StatusOr<SpngContext> open_png(std::string_view bytes, spng_ihdr* ihdr) {
  SpngContext ctx(spng_ctx_new(0));
  if (!ctx) return internal_error("spng_ctx_new failed");
  // Ancillary chunks (text, ICC profiles, ...) are kept in memory: cap them.
  constexpr size_t kChunkLimit = size_t{64} << 20;
  int rc = spng_set_chunk_limits(ctx.get(), kChunkLimit, kChunkLimit);
  if (rc == 0) rc = spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());
  if (rc == 0) rc = spng_get_ihdr(ctx.get(), ihdr);
  if (rc != 0) return invalid_argument("corrupt PNG header: {}", spng_strerror(rc));
  return ctx;
}

int png_channels(const spng_ihdr& ihdr) {
  switch (ihdr.color_type) {
    case SPNG_COLOR_TYPE_GRAYSCALE:
      return 1;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA:
      return 2;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA:
      return 4;
    default:  // truecolor, indexed
      return 3;
  }
}

StatusOr<Tensor> decode_png(std::string_view bytes, const DecodeOptions& options) {
  spng_ihdr ihdr{};
  KS_ASSIGN_OR_RETURN(SpngContext ctx, open_png(bytes, &ihdr));
  const int64_t width = ihdr.width, height = ihdr.height;
  KS_RETURN_IF_ERROR(check_size(ImageFormat::kPng, width, height, options));
  KS_ASSIGN_OR_RETURN(Tensor rgb, Tensor::allocate(DType::kUInt8, Shape{height, width, 3}));

  if (ihdr.bit_depth != 16) {
    // spng expands palette, grayscale (any bit depth, scaled to 8 bits) and drops alpha.
    size_t size = 0;
    int rc = spng_decoded_image_size(ctx.get(), SPNG_FMT_RGB8, &size);
    if (rc == 0 && size != rgb.nbytes()) rc = SPNG_EINTERNAL;
    if (rc == 0) rc = spng_decode_image(ctx.get(), rgb.raw_data(), size, SPNG_FMT_RGB8, 0);
    // Read on to IEND: a file cut after its pixel data (e.g. in the last CRC) is truncated too.
    if (rc == 0) rc = spng_decode_chunks(ctx.get());
    if (rc != 0) return invalid_argument("corrupt or truncated PNG: {}", spng_strerror(rc));
    return rgb;
  }
  // 16-bit: decode to RGBA16 (spng expands grayscale) and scale each sample with rounding.
  size_t size = 0;
  int rc = spng_decoded_image_size(ctx.get(), SPNG_FMT_RGBA16, &size);
  if (rc == 0 && size != static_cast<size_t>(width * height) * 8) rc = SPNG_EINTERNAL;
  KS_ASSIGN_OR_RETURN(Tensor rgba16, Tensor::allocate(DType::kUInt16, Shape{height, width, 4}));
  if (rc == 0) rc = spng_decode_image(ctx.get(), rgba16.raw_data(), size, SPNG_FMT_RGBA16, 0);
  if (rc == 0) rc = spng_decode_chunks(ctx.get());
  if (rc != 0) return invalid_argument("corrupt or truncated PNG: {}", spng_strerror(rc));
  const uint16_t* in = rgba16.data<uint16_t>();
  uint8_t* out = rgb.data<uint8_t>();
  for (int64_t i = 0; i < width * height; ++i) {
    for (int c = 0; c < 3; ++c) {
      out[3 * i + c] = static_cast<uint8_t>((uint32_t{in[4 * i + c]} * 255 + 32767) / 65535);
    }
  }
  return rgb;
}

// Pixel (x, y) of the output image comes from source pixel (sx, sy), for a source W x H.
struct Orienter {
  int orientation;
  int64_t w, h;
  void source(int64_t x, int64_t y, int64_t* sx, int64_t* sy) const {
    switch (orientation) {
      case 2:
        *sx = w - 1 - x, *sy = y;
        break;
      case 3:
        *sx = w - 1 - x, *sy = h - 1 - y;
        break;
      case 4:
        *sx = x, *sy = h - 1 - y;
        break;
      case 5:
        *sx = y, *sy = x;
        break;
      case 6:
        *sx = y, *sy = h - 1 - x;
        break;
      case 7:
        *sx = w - 1 - y, *sy = h - 1 - x;
        break;
      case 8:
        *sx = w - 1 - y, *sy = x;
        break;
      default:
        *sx = x, *sy = y;
        break;
    }
  }
};

}  // namespace

std::string_view image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    default:
      return "unknown";
  }
}

ImageFormat sniff_image_format(std::string_view bytes) {
  const uint8_t* p = bytes_of(bytes);
  if (bytes.size() >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return ImageFormat::kJpeg;
  if (bytes.size() >= 8 && std::memcmp(p, kPngSignature, 8) == 0) return ImageFormat::kPng;
  return ImageFormat::kUnknown;
}

namespace {

Status unknown_format_error(std::string_view bytes) {
  std::string head;
  for (size_t i = 0; i < bytes.size() && i < 8; ++i) {
    head += fmt::format("{}{:02x}", i ? " " : "", static_cast<uint8_t>(bytes[i]));
  }
  if (bytes.empty()) return invalid_argument("not an image: no bytes");
  return invalid_argument(
      "not a JPEG or PNG image: it starts with bytes [{}] (JPEG starts with ff d8 ff, PNG with "
      "89 50 4e 47 0d 0a 1a 0a)",
      head);
}

}  // namespace

int jpeg_exif_orientation(std::string_view jpeg) {
  const uint8_t* p = bytes_of(jpeg);
  const size_t n = jpeg.size();
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return 1;
  size_t pos = 2;
  // Walk the marker segments up to the first scan; metadata comes before it.
  while (pos + 2 <= n) {
    if (p[pos] != 0xFF) return 1;
    const uint8_t marker = p[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    pos += 2;
    if (marker == 0xDA || marker == 0xD9) return 1;                      // SOS, EOI
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length field
    if (pos + 2 > n) return 1;
    const size_t length = (size_t{p[pos]} << 8) | p[pos + 1];
    if (length < 2 || length > n - pos) return 1;
    if (marker == 0xE1) {
      if (std::optional<int> o = exif_orientation_from_app1(p + pos + 2, length - 2)) return *o;
    }
    pos += length;
  }
  return 1;
}

StatusOr<Tensor> apply_exif_orientation(const Tensor& image, int orientation) {
  if (image.dtype() != DType::kUInt8 || image.rank() != 3) {
    return invalid_argument("apply_exif_orientation needs uint8 [H, W, C], got {}",
                            image.debug_string(0));
  }
  if (orientation < 2 || orientation > 8) return image;
  const int64_t h = image.shape()[0], w = image.shape()[1], c = image.shape()[2];
  const bool swap = orientation >= 5;
  const int64_t out_h = swap ? w : h, out_w = swap ? h : w;
  KS_ASSIGN_OR_RETURN(Tensor out, Tensor::allocate(DType::kUInt8, Shape{out_h, out_w, c}));
  const Orienter o{orientation, w, h};
  const uint8_t* in = image.data<uint8_t>();
  uint8_t* dst = out.data<uint8_t>();
  for (int64_t y = 0; y < out_h; ++y) {
    for (int64_t x = 0; x < out_w; ++x) {
      int64_t sx, sy;
      o.source(x, y, &sx, &sy);
      std::memcpy(dst + (y * out_w + x) * c, in + (sy * w + sx) * c, static_cast<size_t>(c));
    }
  }
  return out;
}

StatusOr<ImageInfo> read_image_info(std::string_view bytes, const DecodeOptions& options) {
  ImageInfo info;
  info.format = sniff_image_format(bytes);
  switch (info.format) {
    case ImageFormat::kJpeg: {
      TjHandle tj(tjInitDecompress());
      if (!tj) return internal_error("tjInitDecompress failed: {}", tjGetErrorStr2(nullptr));
      const std::optional<std::string> stripped = strip_stray_header_bytes(bytes);
      KS_ASSIGN_OR_RETURN(const JpegHeader h,
                          read_jpeg_header(tj.get(), stripped ? *stripped : bytes));
      info.width = h.width;
      info.height = h.height;
      info.channels = jpeg_channels(h.colorspace);
      info.orientation = jpeg_exif_orientation(bytes);
      break;
    }
    case ImageFormat::kPng: {
      spng_ihdr ihdr{};
      KS_ASSIGN_OR_RETURN(SpngContext ctx, open_png(bytes, &ihdr));
      info.width = ihdr.width;
      info.height = ihdr.height;
      info.channels = png_channels(ihdr);
      break;
    }
    default:
      return unknown_format_error(bytes);
  }
  KS_RETURN_IF_ERROR(check_size(info.format, info.width, info.height, options));
  return info;
}

StatusOr<Tensor> decode_image(std::string_view bytes, const DecodeOptions& options) {
  switch (sniff_image_format(bytes)) {
    case ImageFormat::kJpeg:
      return decode_jpeg(bytes, options);
    case ImageFormat::kPng:
      return decode_png(bytes, options);
    default:
      return unknown_format_error(bytes);
  }
}

StatusOr<Tensor> read_image(const std::string& path, const DecodeOptions& options) {
  KS_ASSIGN_OR_RETURN(const std::string bytes, read_file(path));
  StatusOr<Tensor> image = decode_image(bytes, options);
  if (!image.ok()) return image.status().with_context(path);
  return image;
}

}  // namespace kestrel::vision
