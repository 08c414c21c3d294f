// Pooling kernels over NCHW planes with two spatial dimensions.
#include <cmath>

#include "kestrel/runtime/cuda/device_math.cuh"

namespace kestrel::runtime::cuda {
namespace {

// `channels` == 0: NCHW planes; else NHWC images with `channels` innermost (stride between pixels).
template <typename T>
__global__ void pool2d(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int h, int w,
                       int oh, int ow, int channels, PoolWindow win) {
  const int64_t c_count = channels > 0 ? channels : 1;
  const int64_t n = planes * oh * ow * c_count;
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const int64_t c = i % c_count;
    const int64_t pixel = i / c_count;
    const int ox = static_cast<int>(pixel % ow);
    const int oy = static_cast<int>((pixel / ow) % oh);
    const int64_t image = pixel / (static_cast<int64_t>(ow) * oh);
    // src[(yy * w + xx) * c_count] is the window element for this output's channel.
    const T* src = x + image * h * w * c_count + c;
    const int y0 = oy * win.sh - win.ph, x0 = ox * win.sw - win.pw;
    float best = -INFINITY, sum = 0.f;
    int count = 0, padded = 0;
    for (int ky = 0; ky < win.kh; ++ky) {
      const int yy = y0 + ky * win.dh;
      for (int kx = 0; kx < win.kw; ++kx) {
        const int xx = x0 + kx * win.dw;
        // Window positions inside the padded input are what count_include_pad counts.
        if (yy < h + win.pad_bottom && xx < w + win.pad_right) ++padded;
        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
        const float v = to_float(src[(static_cast<int64_t>(yy) * w + xx) * c_count]);
        best = (v > best || isnan(v)) ? v : best;
        sum += v;
        ++count;
      }
    }
    float r = best;
    if (win.average) {
      const int divisor = win.count_include_pad ? padded : count;
      r = divisor > 0 ? sum / static_cast<float>(divisor) : 0.f;
    }
    y[i] = from_float<T>(r);
  }
}

// One warp per plane (grid-stride over planes); all lanes of a warp share a plane, so the shuffles
// always see the whole warp.
template <typename T>
__global__ void global_average(const T* __restrict__ x, T* __restrict__ y, int64_t planes,
                               int64_t size) {
  const int64_t warps = grid_stride() / 32;
  const int lane = threadIdx.x % 32;
  for (int64_t plane = grid_start() / 32; plane < planes; plane += warps) {
    float sum = 0.f;
    for (int64_t j = lane; j < size; j += 32) sum += to_float(x[plane * size + j]);
    for (int offset = 16; offset > 0; offset /= 2) {
      sum += __shfl_down_sync(0xffffffffu, sum, offset);
    }
    if (lane == 0) y[plane] = from_float<T>(sum / static_cast<float>(size));
  }
}

}  // namespace

cudaError_t launch_pool2d(FloatType t, const void* x, void* y, int64_t planes, int h, int w, int oh,
                          int ow, int channels_last, const PoolWindow& window,
                          cudaStream_t stream) {
  const int64_t n = planes * oh * ow * (channels_last > 0 ? channels_last : 1);
  if (n == 0) return cudaSuccess;
  KS_FLOAT_DISPATCH(t, (pool2d<T><<<blocks_for(n), 256, 0, stream>>>(
                           static_cast<const T*>(x), static_cast<T*>(y), planes, h, w, oh, ow,
                           channels_last, window)));
  return cudaGetLastError();
}

cudaError_t launch_global_average(FloatType t, const void* x, void* y, int64_t planes, int64_t size,
                                  cudaStream_t stream) {
  if (planes == 0) return cudaSuccess;
  KS_FLOAT_DISPATCH(t, (global_average<T><<<blocks_for(planes * 32), 256, 0, stream>>>(
                           static_cast<const T*>(x), static_cast<T*>(y), planes, size)));
  return cudaGetLastError();
}

}  // namespace kestrel::runtime::cuda
