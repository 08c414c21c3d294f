// Letterbox pre-processing on the CPU: the reference that the CUDA letterbox is tested against.
//
// YOLO models take a fixed-size square (usually 640x640) input. An image is scaled to fit, keeping
// its aspect ratio, and the rest is padded with grey (114), exactly as YOLOv5's letterbox() does it
// (../shared/README.md):
//
//   r = min(target_h / h, target_w / w)                  (double)
//   resized = round(w * r) x round(h * r)                (round half to even, as Python's round())
//   pad_left = round((target_w - resized_w) / 2 - 0.1)   (the odd pixel goes right / bottom)
//   resize with bilinear interpolation exactly as OpenCV's cv::resize(INTER_LINEAR) computes it for
//   uint8 images (fixed point, see resize_linear_u8()), then pad.
//
// A degenerate image (e.g. 20000x1) would get a 0-pixel side; it gets 1 pixel instead.
//
// The model input is then [N, 3, H, W] (NCHW), value / 255, in float32 or float16.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kestrel/base/dtype.h"
#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"

namespace kestrel::vision {

// Where an image went inside the model input, so that boxes can be mapped back.
struct LetterboxParams {
  int64_t source_width = 0;
  int64_t source_height = 0;
  int64_t target_width = 640;
  int64_t target_height = 640;
  double ratio = 1.0;
  int64_t resized_width = 0;
  int64_t resized_height = 0;
  int64_t pad_left = 0;
  int64_t pad_top = 0;
  int64_t pad_right = 0;
  int64_t pad_bottom = 0;
};

// The placement of a width x height image in a target_width x target_height input. INVALID_ARGUMENT
// for non-positive sizes.
StatusOr<LetterboxParams> compute_letterbox(int64_t width, int64_t height,
                                            int64_t target_width = 640,
                                            int64_t target_height = 640);

// Resizes uint8 [H, W, C] to [out_height, out_width, C] bit-exactly as OpenCV 4's
// cv::resize(src, dst, Size(out_width, out_height), 0, 0, INTER_LINEAR) does for 8-bit images:
//   - same size: a copy;
//   - exactly half the size in both directions: OpenCV switches to INTER_AREA, i.e. the
//     rounded mean of each 2x2 block, (a + b + c + d + 2) >> 2;
//   - otherwise: source coordinate fx = float((dx + 0.5) * (1 / (out_w / in_w)) - 0.5), split into
//     sx = floor(fx) and the fraction; horizontally the weights are round((1 - frac) * 2048) and
//     round(frac * 2048) (11 fractional bits; at the left/right borders the edge pixel with weight
//     2048), giving an int sum per pixel; vertically the same weights b0, b1 (the rows are clamped
//     to the image, the fraction is not), and the result is
//     ((b0 * (h0 >> 4)) >> 16) + ((b1 * (h1 >> 4)) >> 16) + 2) >> 2, saturated to 0..255.
StatusOr<Tensor> resize_linear_u8(const Tensor& image, int64_t out_width, int64_t out_height);

// How resize_linear_u8() computes an in_width x in_height -> out_width x out_height resize, in the
// order it checks: a copy when the sizes are equal, the 2x2 mean when OpenCV would switch to
// INTER_AREA (exactly half both ways), else bilinear with linear_resize_taps(). The CUDA letterbox
// (letterbox_cuda.h) follows the same plan, so it shares these two functions.
enum class ResizeMethod { kCopy, kHalfArea, kLinear };
ResizeMethod resize_method(int64_t in_width, int64_t in_height, int64_t out_width,
                           int64_t out_height);

// One output coordinate of a bilinear resize: source indices i0, i1 (clamped to the image) and
// their fixed-point weights w0, w1 (11 fractional bits, each in [0, 2048]).
struct ResizeTaps {
  int64_t i0, i1;
  int32_t w0, w1;
};

// OpenCV's coefficient table for one axis of a kLinear resize from `in` to `out` pixels, one entry
// per output coordinate. Columns (horizontal) that fall outside the image take the edge pixel with
// full weight; rows keep their computed weights and only their indices are clamped.
std::vector<ResizeTaps> linear_resize_taps(int64_t in, int64_t out, bool horizontal);

// Letterboxes uint8 [H, W, 3] (any channel count works) into uint8 [target_h, target_w, C].
// REQUIRES: params == compute_letterbox(W, H, ...) for this image's size, else INVALID_ARGUMENT.
StatusOr<Tensor> letterbox(const Tensor& image, const LetterboxParams& params,
                           uint8_t pad_value = 114);

// Both in one: computes the placement and letterboxes.
StatusOr<Tensor> letterbox(const Tensor& image, int64_t target_width, int64_t target_height,
                           LetterboxParams* params, uint8_t pad_value = 114);

// Writes one letterboxed uint8 [H, W, 3] image into slot `index` of a model input `batch`
// [N, 3, H, W] of float32 or float16: batch[index, c, y, x] = image[y, x, c] / 255 (computed in
// float32; float16 is that value rounded to nearest even).
Status write_model_input(const Tensor& image, int64_t index, Tensor& batch);

// Stacks letterboxed uint8 [H, W, 3] images into a new [N, 3, H, W] model input of `dtype`
// (kFloat32 or kFloat16). All images must have the same size.
StatusOr<Tensor> make_model_input(std::span<const Tensor> images, DType dtype = DType::kFloat32);

}  // namespace kestrel::vision
