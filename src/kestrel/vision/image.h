// Image decoding: JPEG (libturbojpeg) and PNG (libspng) bytes to 8-bit RGB pixels.
//
// Every decoder output is a uint8 tensor [height, width, 3]: rows top to bottom, RGB interleaved
// (HWC), whatever the file held: grayscale is replicated to three channels, alpha is dropped (not
// composited), palette images are expanded, 16-bit PNG samples are scaled to 8 bits with rounding
// (round(v * 255 / 65535)), CMYK JPEGs are converted to RGB, and a JPEG's EXIF orientation is
// applied so that the pixels come out the way a viewer shows them.
//
// The bytes are untrusted (they come from clients of the server). Anything that is not a complete,
// valid image is INVALID_ARGUMENT with a message saying what is wrong: unknown magic bytes,
// truncated or corrupt data (including libjpeg's "premature end" warnings), zero-sized images, and
// images whose declared size exceeds DecodeOptions::max_pixels. That limit is checked from the
// header, before any pixel memory is allocated, so a 100-byte file declaring 65535x65535 pixels
// costs nothing.
//
// Thread safety: all functions are reentrant; each call uses its own decoder state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"

namespace kestrel::vision {

enum class ImageFormat { kUnknown, kJpeg, kPng };

// "JPEG", "PNG", "unknown".
std::string_view image_format_name(ImageFormat format);

// The format given by the first bytes (JPEG: FF D8 FF; PNG: the 8-byte PNG signature).
ImageFormat sniff_image_format(std::string_view bytes);

struct DecodeOptions {
  // Largest width * height accepted, as declared by the header (after EXIF rotation the product is
  // the same). 64 Mi pixels by default: an 8000x8000 photo passes, a decompression bomb does not.
  int64_t max_pixels = int64_t{64} << 20;
  // Apply a JPEG's EXIF orientation tag (1..8).
  bool apply_exif_orientation = true;
};

// What the header says, without decoding the pixels.
struct ImageInfo {
  ImageFormat format = ImageFormat::kUnknown;
  // As stored in the file, before the EXIF orientation is applied.
  int64_t width = 0;
  int64_t height = 0;
  // Channels in the file: 1 (gray), 2 (gray+alpha), 3 (RGB/YCbCr), 4 (RGBA or CMYK).
  int channels = 0;
  // EXIF orientation (1..8); 1 when absent, invalid, or not a JPEG.
  int orientation = 1;
};

// Reads the header only: format, stored size, channels, orientation. Checks max_pixels too, so a
// caller may use it to refuse an image before queueing it.
StatusOr<ImageInfo> read_image_info(std::string_view bytes, const DecodeOptions& options = {});

// Decodes a JPEG or PNG to uint8 [height, width, 3] RGB.
StatusOr<Tensor> decode_image(std::string_view bytes, const DecodeOptions& options = {});

// Reads and decodes an image file (errors carry the path).
StatusOr<Tensor> read_image(const std::string& path, const DecodeOptions& options = {});

// The orientation tag (1..8) of a JPEG's APP1 Exif block; 1 when there is none or it is malformed.
// Never reads outside `jpeg`.
int jpeg_exif_orientation(std::string_view jpeg);

// Returns `image` (uint8 [H, W, C]) transformed as EXIF orientation `orientation` prescribes:
//   1 as is; 2 mirrored left-right; 3 rotated 180; 4 mirrored top-bottom; 5 transposed;
//   6 rotated 90 degrees clockwise; 7 transversed; 8 rotated 90 degrees counter-clockwise.
// Orientations 5..8 swap width and height. Values outside 1..8 are treated as 1.
StatusOr<Tensor> apply_exif_orientation(const Tensor& image, int orientation);

}  // namespace kestrel::vision
