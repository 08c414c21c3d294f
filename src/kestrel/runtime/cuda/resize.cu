// Nearest-neighbour Resize over the two spatial axes of NCHW planes. Coordinates are computed in
// double exactly as ONNX's reference does, so the chosen source pixels match the CPU kernel.
#include <cmath>

#include "kestrel/runtime/cuda/device_math.cuh"

namespace kestrel::runtime::cuda {
namespace {

__device__ __forceinline__ int64_t source_index(int64_t x, ResizeAxis a, ResizeCoordinates c,
                                                NearestRounding r) {
  const double xd = static_cast<double>(x), in = static_cast<double>(a.in);
  double s = 0;
  switch (c) {
    case ResizeCoordinates::kHalfPixel:
      s = (xd + 0.5) / a.scale - 0.5;
      break;
    case ResizeCoordinates::kHalfPixelSymmetric: {
      const double adjustment = static_cast<double>(a.out) / (a.scale * in);
      s = in / 2 * (1 - adjustment) + (xd + 0.5) / a.scale - 0.5;
      break;
    }
    case ResizeCoordinates::kPytorchHalfPixel:
      s = a.out > 1 ? (xd + 0.5) / a.scale - 0.5 : 0;
      break;
    case ResizeCoordinates::kAlignCorners:
      s = a.out == 1 ? 0 : xd * (in - 1) / static_cast<double>(a.out - 1);
      break;
    case ResizeCoordinates::kAsymmetric:
      s = xd / a.scale;
      break;
  }
  double i = 0;
  const bool half = s - floor(s) == 0.5;
  switch (r) {
    case NearestRounding::kRoundPreferFloor:
      i = half ? floor(s) : round(s);
      break;
    case NearestRounding::kRoundPreferCeil:
      i = half ? ceil(s) : round(s);
      break;
    case NearestRounding::kFloor:
      i = floor(s);
      break;
    case NearestRounding::kCeil:
      i = ceil(s);
      break;
  }
  const double last = static_cast<double>(a.in - 1);
  return static_cast<int64_t>(i < 0 ? 0 : (i > last ? last : i));
}

// `channels` == 0: NCHW planes; else NHWC images with `channels` innermost.
template <typename E>
__global__ void resize_nearest(const E* __restrict__ x, E* __restrict__ y, int64_t planes,
                               int64_t channels, ResizeAxis h, ResizeAxis w, ResizeCoordinates c,
                               NearestRounding r) {
  const int64_t c_count = channels > 0 ? channels : 1;
  const int64_t n = planes * h.out * w.out * c_count;
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const int64_t ch = i % c_count;
    const int64_t pixel = i / c_count;
    const int64_t ox = pixel % w.out;
    const int64_t oy = (pixel / w.out) % h.out;
    const int64_t image = pixel / (w.out * h.out);
    const int64_t src = (source_index(oy, h, c, r) * w.in + source_index(ox, w, c, r)) * c_count;
    y[i] = x[image * h.in * w.in * c_count + src + ch];
  }
}

}  // namespace

cudaError_t launch_resize_nearest(int element_size, const void* x, void* y, int64_t planes,
                                  int64_t channels_last, ResizeAxis h, ResizeAxis w,
                                  ResizeCoordinates coordinates, NearestRounding rounding,
                                  cudaStream_t stream) {
  const int64_t n = planes * h.out * w.out * (channels_last > 0 ? channels_last : 1);
  if (n == 0) return cudaSuccess;
  if (element_size == 4) {
    resize_nearest<<<blocks_for(n), 256, 0, stream>>>(static_cast<const uint32_t*>(x),
                                                      static_cast<uint32_t*>(y), planes,
                                                      channels_last, h, w, coordinates, rounding);
  } else if (element_size == 2) {
    resize_nearest<<<blocks_for(n), 256, 0, stream>>>(static_cast<const uint16_t*>(x),
                                                      static_cast<uint16_t*>(y), planes,
                                                      channels_last, h, w, coordinates, rounding);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace kestrel::runtime::cuda
