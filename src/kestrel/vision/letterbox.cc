// Letterbox on the CPU (see letterbox.h), with OpenCV's uint8 bilinear resize reproduced bit for
// bit.
#include "kestrel/vision/letterbox.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

namespace kestrel::vision {
namespace {

// OpenCV's INTER_RESIZE_COEF_BITS: interpolation weights are fixed point with 11 fractional bits.
constexpr int kCoefScale = 1 << 11;

// saturate_cast<short>(w * INTER_RESIZE_COEF_SCALE): rounded to nearest, ties to even (cvRound).
int32_t fixed_weight(float w) {
  const long r = std::lrintf(w * static_cast<float>(kCoefScale));
  return static_cast<int32_t>(std::clamp<long>(r, INT16_MIN, INT16_MAX));
}

Status check_image(const Tensor& image, const char* what) {
  if (!image.defined() || !image.is_cpu() || image.dtype() != DType::kUInt8 || image.rank() != 3 ||
      image.shape()[0] <= 0 || image.shape()[1] <= 0 || image.shape()[2] <= 0) {
    return invalid_argument("{} needs a non-empty uint8 [H, W, C] host image, got {}", what,
                            image.defined() ? image.debug_string(0) : "an undefined tensor");
  }
  return Status();
}

}  // namespace

ResizeMethod resize_method(int64_t in_width, int64_t in_height, int64_t out_width,
                           int64_t out_height) {
  if (in_width == out_width && in_height == out_height) return ResizeMethod::kCopy;
  // cv::resize turns INTER_LINEAR into INTER_AREA when the image shrinks by exactly 2 both ways.
  const double scale_x = 1.0 / (static_cast<double>(out_width) / static_cast<double>(in_width));
  const double scale_y = 1.0 / (static_cast<double>(out_height) / static_cast<double>(in_height));
  if (std::abs(scale_x - 2.0) < DBL_EPSILON && std::abs(scale_y - 2.0) < DBL_EPSILON) {
    return ResizeMethod::kHalfArea;
  }
  return ResizeMethod::kLinear;
}

std::vector<ResizeTaps> linear_resize_taps(int64_t in, int64_t out, bool horizontal) {
  const double scale = 1.0 / (static_cast<double>(out) / static_cast<double>(in));
  std::vector<ResizeTaps> taps(static_cast<size_t>(out));
  for (int64_t d = 0; d < out; ++d) {
    float f = static_cast<float>((static_cast<double>(d) + 0.5) * scale - 0.5);
    int64_t s = static_cast<int64_t>(std::floor(f));
    f -= static_cast<float>(s);
    if (horizontal) {
      if (s < 0) f = 0, s = 0;
      if (s >= in - 1) f = 0, s = in - 1;
    }
    taps[d] = {std::clamp<int64_t>(s, 0, in - 1), std::clamp<int64_t>(s + 1, 0, in - 1),
               fixed_weight(1.0f - f), fixed_weight(f)};
  }
  return taps;
}

StatusOr<LetterboxParams> compute_letterbox(int64_t width, int64_t height, int64_t target_width,
                                            int64_t target_height) {
  if (width <= 0 || height <= 0 || target_width <= 0 || target_height <= 0) {
    return invalid_argument("letterbox of a {}x{} image into {}x{}: sizes must be positive", width,
                            height, target_width, target_height);
  }
  LetterboxParams p;
  p.source_width = width;
  p.source_height = height;
  p.target_width = target_width;
  p.target_height = target_height;
  p.ratio = std::min(static_cast<double>(target_height) / static_cast<double>(height),
                     static_cast<double>(target_width) / static_cast<double>(width));
  // std::nearbyint rounds half to even, like Python's round().
  p.resized_width = std::clamp<int64_t>(
      static_cast<int64_t>(std::nearbyint(static_cast<double>(width) * p.ratio)), 1, target_width);
  p.resized_height = std::clamp<int64_t>(
      static_cast<int64_t>(std::nearbyint(static_cast<double>(height) * p.ratio)), 1,
      target_height);
  const double dw = static_cast<double>(target_width - p.resized_width) / 2;
  const double dh = static_cast<double>(target_height - p.resized_height) / 2;
  p.pad_left = static_cast<int64_t>(std::nearbyint(dw - 0.1));
  p.pad_top = static_cast<int64_t>(std::nearbyint(dh - 0.1));
  p.pad_right = target_width - p.resized_width - p.pad_left;
  p.pad_bottom = target_height - p.resized_height - p.pad_top;
  return p;
}

StatusOr<Tensor> resize_linear_u8(const Tensor& image, int64_t out_width, int64_t out_height) {
  KS_RETURN_IF_ERROR(check_image(image, "resize_linear_u8"));
  const int64_t in_h = image.shape()[0], in_w = image.shape()[1], cn = image.shape()[2];
  if (out_width <= 0 || out_height <= 0) {
    return invalid_argument("resize to {}x{}: sizes must be positive", out_width, out_height);
  }
  const ResizeMethod method = resize_method(in_w, in_h, out_width, out_height);
  if (method == ResizeMethod::kCopy) return image.clone();
  KS_ASSIGN_OR_RETURN(Tensor out,
                      Tensor::allocate(DType::kUInt8, Shape{out_height, out_width, cn}));
  const uint8_t* src = image.data<uint8_t>();
  uint8_t* dst = out.data<uint8_t>();
  const int64_t in_stride = in_w * cn, out_stride = out_width * cn;

  if (method == ResizeMethod::kHalfArea) {
    for (int64_t y = 0; y < out_height; ++y) {
      const uint8_t* r0 = src + 2 * y * in_stride;
      const uint8_t* r1 = r0 + in_stride;
      for (int64_t x = 0; x < out_width; ++x) {
        for (int64_t c = 0; c < cn; ++c) {
          const int64_t i = 2 * x * cn + c;
          dst[y * out_stride + x * cn + c] =
              static_cast<uint8_t>((r0[i] + r0[i + cn] + r1[i] + r1[i + cn] + 2) >> 2);
        }
      }
    }
    return out;
  }

  const std::vector<ResizeTaps> xt = linear_resize_taps(in_w, out_width, /*horizontal=*/true);
  const std::vector<ResizeTaps> yt = linear_resize_taps(in_h, out_height, /*horizontal=*/false);
  // One horizontally interpolated source row: int sums with 11 fractional bits.
  std::vector<int32_t> h0(static_cast<size_t>(out_stride)), h1(h0.size());
  auto horizontal = [&](int64_t row, std::vector<int32_t>& h) {
    const uint8_t* s = src + row * in_stride;
    for (int64_t x = 0; x < out_width; ++x) {
      const ResizeTaps& t = xt[x];
      for (int64_t c = 0; c < cn; ++c) {
        h[x * cn + c] = s[t.i0 * cn + c] * t.w0 + s[t.i1 * cn + c] * t.w1;
      }
    }
  };
  for (int64_t y = 0; y < out_height; ++y) {
    const ResizeTaps& t = yt[y];
    horizontal(t.i0, h0);
    horizontal(t.i1, h1);
    uint8_t* d = dst + y * out_stride;
    for (int64_t i = 0; i < out_stride; ++i) {
      const int32_t v = (((t.w0 * (h0[i] >> 4)) >> 16) + ((t.w1 * (h1[i] >> 4)) >> 16) + 2) >> 2;
      d[i] = static_cast<uint8_t>(std::clamp<int32_t>(v, 0, 255));
    }
  }
  return out;
}

StatusOr<Tensor> letterbox(const Tensor& image, const LetterboxParams& p, uint8_t pad_value) {
  KS_RETURN_IF_ERROR(check_image(image, "letterbox"));
  const int64_t h = image.shape()[0], w = image.shape()[1], cn = image.shape()[2];
  KS_ASSIGN_OR_RETURN(const LetterboxParams expected,
                      compute_letterbox(w, h, p.target_width, p.target_height));
  if (p.source_width != w || p.source_height != h || p.resized_width != expected.resized_width ||
      p.resized_height != expected.resized_height || p.pad_left != expected.pad_left ||
      p.pad_top != expected.pad_top) {
    return invalid_argument("letterbox parameters for a {}x{} image do not fit a {}x{} image",
                            p.source_width, p.source_height, w, h);
  }
  KS_ASSIGN_OR_RETURN(const Tensor resized,
                      resize_linear_u8(image, p.resized_width, p.resized_height));
  KS_ASSIGN_OR_RETURN(Tensor out,
                      Tensor::allocate(DType::kUInt8, Shape{p.target_height, p.target_width, cn}));
  std::memset(out.raw_data(), pad_value, out.nbytes());
  const size_t row_bytes = static_cast<size_t>(p.resized_width * cn);
  for (int64_t y = 0; y < p.resized_height; ++y) {
    std::memcpy(out.data<uint8_t>() + ((y + p.pad_top) * p.target_width + p.pad_left) * cn,
                resized.data<uint8_t>() + y * p.resized_width * cn, row_bytes);
  }
  return out;
}

StatusOr<Tensor> letterbox(const Tensor& image, int64_t target_width, int64_t target_height,
                           LetterboxParams* params, uint8_t pad_value) {
  KS_RETURN_IF_ERROR(check_image(image, "letterbox"));
  KS_ASSIGN_OR_RETURN(const LetterboxParams p, compute_letterbox(image.shape()[1], image.shape()[0],
                                                                 target_width, target_height));
  if (params) *params = p;
  return letterbox(image, p, pad_value);
}

Status write_model_input(const Tensor& image, int64_t index, Tensor& batch) {
  KS_RETURN_IF_ERROR(check_image(image, "write_model_input"));
  if (!batch.defined() || !batch.is_cpu() || batch.rank() != 4 ||
      (batch.dtype() != DType::kFloat32 && batch.dtype() != DType::kFloat16)) {
    return invalid_argument("model input must be a float32 or float16 [N, C, H, W] host tensor");
  }
  const int64_t h = image.shape()[0], w = image.shape()[1], c = image.shape()[2];
  const Shape& s = batch.shape();
  if (s[1] != c || s[2] != h || s[3] != w) {
    return invalid_argument("image [{}, {}, {}] does not fit model input {}", h, w, c,
                            s.to_string());
  }
  if (index < 0 || index >= s[0]) {
    return invalid_argument("image index {} is outside the batch of {}", index, s[0]);
  }
  // x / 255 in float32 for each of the 256 values.
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f;
  const uint8_t* in = image.data<uint8_t>();
  const int64_t plane = h * w;
  auto fill = [&]<typename T>(T* out) {
    out += index * c * plane;
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t i = 0; i < plane; ++i) out[ch * plane + i] = T(lut[in[i * c + ch]]);
    }
  };
  if (batch.dtype() == DType::kFloat32) {
    fill(batch.data<float>());
  } else {
    fill(batch.data<Half>());
  }
  return Status();
}

StatusOr<Tensor> make_model_input(std::span<const Tensor> images, DType dtype) {
  if (images.empty()) return invalid_argument("make_model_input needs at least one image");
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16) {
    return invalid_argument("model input type must be float32 or float16, not {}",
                            dtype_name(dtype));
  }
  KS_RETURN_IF_ERROR(check_image(images[0], "make_model_input"));
  const Shape& first = images[0].shape();
  KS_ASSIGN_OR_RETURN(Tensor batch,
                      Tensor::allocate(dtype, Shape{static_cast<int64_t>(images.size()), first[2],
                                                    first[0], first[1]}));
  for (size_t i = 0; i < images.size(); ++i) {
    KS_RETURN_IF_ERROR(write_model_input(images[i], static_cast<int64_t>(i), batch));
  }
  return batch;
}

}  // namespace kestrel::vision
