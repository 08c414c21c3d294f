// Drawing detections onto images (box outlines and "<class> 0.87" labels) and encoding images as
// JPEG, for `kestrel detect --draw` and for anyone who wants to look at what a model found.
//
// Images are uint8 [height, width, 3] RGB host tensors, as vision::decode_image returns them.
// Boxes are in the image's pixels (Detection from nms.h); they are untrusted: boxes partly or
// wholly outside the image, swapped corners, infinite or NaN coordinates, and class ids outside the
// names are all drawn as far as they make sense (NaN boxes not at all), and nothing is ever
// written outside the image.
//
// Every line width and glyph size grows with the image, so that a label is as readable on a
// 4000-pixel photo shown scaled down as on a 640-pixel one (see DrawStyle).
//
// Thread safety: all functions are reentrant; distinct images may be drawn on concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/vision/nms.h"

namespace kestrel::vision {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

// The colour of class `class_id`: Ultralytics' 20-colour palette, repeating (any id, negative
// ones included, has a colour).
Rgb class_color(int32_t class_id);

// Sizes used on an image of the given size, in pixels.
struct DrawStyle {
  // Thickness of a box outline (drawn inside the box): 2 on a 640x480 image, ~10 at 4000x3000.
  int line_width = 2;
  // Each pixel of the 8x8 font becomes a font_scale x font_scale square.
  int font_scale = 2;
};
DrawStyle draw_style(int64_t height, int64_t width);

// Draws every detection onto `image`, in place: an outline in class_color(class_id) along the
// inside of the box, then (over all outlines) a label "<name> <score with two decimals>" on a
// filled rectangle of the same colour, sitting on the box's top-left corner from above, or just
// inside the box when there is no room above it; the text is black on light colours, white on dark
// ones. Where labels overlap, the one of the earlier detection is on top. The name is
// class_names[class_id], or the id itself when there is no such name; characters outside printable
// ASCII are drawn as '?'. INVALID_ARGUMENT unless `image` is a uint8 [H, W, 3] host tensor.
Status draw_detections(Tensor& image, std::span<const Detection> detections,
                       std::span<const std::string> class_names);

// `image` (uint8 [H, W, 3] RGB, host) as a baseline JPEG with full-resolution chroma (4:4:4, so
// that thin coloured lines and text stay sharp). INVALID_ARGUMENT for any other tensor, an empty
// image, one over JPEG's 65535-pixel side limit, or a quality outside 1..100.
StatusOr<std::string> encode_jpeg(const Tensor& image, int quality = 90);

// encode_jpeg, written to `path` with kestrel::write_file (replacing the file at once).
Status write_jpeg(const std::string& path, const Tensor& image, int quality = 90);

}  // namespace kestrel::vision
