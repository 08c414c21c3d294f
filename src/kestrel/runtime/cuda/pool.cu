// Pooling kernels over NCHW planes or NHWC images with two spatial dimensions. In NHWC each thread
// computes up to 16 bytes of one pixel's channels (one vector load per window tap); NCHW planes
// are the case of one channel. Indices are 32-bit with divisions by multiplication (FastDivmod);
// tensors of 2^31 elements or more take the 64-bit kernel.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kestrel/runtime/cuda/device_math.cuh"
#include "kestrel/runtime/cuda/movement_launch.h"

namespace kestrel::runtime::cuda {
namespace {

// `L` consecutive channels, loaded and stored in one access.
template <typename T, int L>
struct alignas(sizeof(T) * L) Lanes {
  T v[L];
};

// float16 maxima two channels at a time: the winning half2 lanes' bits are selected with masks
// from the same tests as the float path (v > best, or v is NaN), so the result is the same.
__device__ __forceinline__ uint32_t max_pair(uint32_t best, uint32_t v) {
  __half2 b, x;
  memcpy(&b, &best, sizeof(b));
  memcpy(&x, &v, sizeof(x));
  const uint32_t take = __hgt2_mask(x, b) | __hneu2_mask(x, x);
  return (v & take) | (best & ~take);
}

// One unit of L channels of one output pixel per thread: `units` per pixel, `images` of h x w.
template <typename T, int L, bool kAverage>
__global__ void pool2d_units(const Lanes<T, L>* __restrict__ x, Lanes<T, L>* __restrict__ y,
                             uint32_t n, FastDivmod units, FastDivmod out_w, FastDivmod out_h,
                             int h, int w, PoolWindow win) {
  constexpr bool kPairs = !kAverage && std::is_same_v<T, __half> && L % 2 == 0;
  constexpr int kWords = kPairs ? L / 2 : 1;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    uint32_t pixel, unit, row, ox, image, oy;
    units.divmod(i, pixel, unit);
    out_w.divmod(pixel, row, ox);
    out_h.divmod(row, image, oy);
    // src[(yy * w + xx) * units] is the window tap of this thread's channels.
    const Lanes<T, L>* src = x + image * static_cast<uint32_t>(h * w) * units.divisor + unit;
    const int y0 = static_cast<int>(oy) * win.sh - win.ph;
    const int x0 = static_cast<int>(ox) * win.sw - win.pw;
    float acc[L];            // maxima, or sums
    uint32_t pairs[kWords];  // kPairs: maxima as half2 bits
#pragma unroll
    for (int l = 0; l < L; ++l) acc[l] = kAverage ? 0.f : -INFINITY;
#pragma unroll
    for (int k = 0; k < kWords; ++k) pairs[k] = 0xfc00fc00u;  // -inf, -inf
    int count = 0, padded = 0;
    for (int ky = 0; ky < win.kh; ++ky) {
      const int yy = y0 + ky * win.dh;
#pragma unroll 4
      for (int kx = 0; kx < win.kw; ++kx) {
        const int xx = x0 + kx * win.dw;
        if constexpr (kAverage) {
          // Window positions inside the padded input are what count_include_pad counts.
          if (yy < h + win.pad_bottom && xx < w + win.pad_right) ++padded;
        }
        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
        const Lanes<T, L> v = src[static_cast<uint32_t>(yy * w + xx) * units.divisor];
        if constexpr (kPairs) {
          uint32_t words[kWords];
          memcpy(words, &v, sizeof(words));
#pragma unroll
          for (int k = 0; k < kWords; ++k) pairs[k] = max_pair(pairs[k], words[k]);
        } else {
#pragma unroll
          for (int l = 0; l < L; ++l) {
            const float f = to_float(v.v[l]);
            if constexpr (kAverage) {
              acc[l] += f;
            } else {
              acc[l] = (f > acc[l] || isnan(f)) ? f : acc[l];
            }
          }
        }
        ++count;
      }
    }
    Lanes<T, L> out;
    if constexpr (kPairs) {
      memcpy(&out, pairs, sizeof(out));
    } else {
#pragma unroll
      for (int l = 0; l < L; ++l) {
        float r = acc[l];
        if constexpr (kAverage) {
          const int divisor = win.count_include_pad ? padded : count;
          r = divisor > 0 ? acc[l] / static_cast<float>(divisor) : 0.f;
        }
        out.v[l] = from_float<T>(r);
      }
    }
    y[i] = out;
  }
}

template <typename T, int L>
cudaError_t pool2d_lanes(const void* x, void* y, int64_t units, int64_t total, int h, int w, int oh,
                         int ow, const PoolWindow& win, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(std::clamp<int64_t>((total + 255) / 256, 1, 8192));
  const FastDivmod by_units(static_cast<uint32_t>(units));
  const FastDivmod by_w(static_cast<uint32_t>(ow)), by_h(static_cast<uint32_t>(oh));
  const auto* in = static_cast<const Lanes<T, L>*>(x);
  auto* out = static_cast<Lanes<T, L>*>(y);
  if (win.average) {
    pool2d_units<T, L, true><<<blocks, 256, 0, stream>>>(in, out, static_cast<uint32_t>(total),
                                                         by_units, by_w, by_h, h, w, win);
  } else {
    pool2d_units<T, L, false><<<blocks, 256, 0, stream>>>(in, out, static_cast<uint32_t>(total),
                                                          by_units, by_w, by_h, h, w, win);
  }
  return cudaGetLastError();
}

// The 64-bit kernel. `channels` == 0: NCHW planes; else NHWC images with `channels` innermost
// (stride between pixels).
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
  const int64_t channels = channels_last > 0 ? channels_last : 1;
  const int64_t n = planes * oh * ow * channels;
  if (n == 0) return cudaSuccess;
  if (n <= kMaxIndex32 && planes * h * w * channels <= kMaxIndex32) {
    const int element_size = t == FloatType::kFloat32 ? 4 : 2;
    const uint64_t pixel_bytes = static_cast<uint64_t>(channels) * element_size;
    const int unit = std::min(widest_unit(element_size, pixel_bytes, x),
                              widest_unit(element_size, pixel_bytes, y));
    const int lanes = unit / element_size;
    const int64_t units = channels / lanes, total = n / lanes;
    if (t == FloatType::kFloat32) {
      switch (lanes) {
        case 1:
          return pool2d_lanes<float, 1>(x, y, units, total, h, w, oh, ow, window, stream);
        case 2:
          return pool2d_lanes<float, 2>(x, y, units, total, h, w, oh, ow, window, stream);
        default:
          return pool2d_lanes<float, 4>(x, y, units, total, h, w, oh, ow, window, stream);
      }
    }
    switch (lanes) {
      case 1:
        return pool2d_lanes<__half, 1>(x, y, units, total, h, w, oh, ow, window, stream);
      case 2:
        return pool2d_lanes<__half, 2>(x, y, units, total, h, w, oh, ow, window, stream);
      case 4:
        return pool2d_lanes<__half, 4>(x, y, units, total, h, w, oh, ow, window, stream);
      default:
        return pool2d_lanes<__half, 8>(x, y, units, total, h, w, oh, ow, window, stream);
    }
  }
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
