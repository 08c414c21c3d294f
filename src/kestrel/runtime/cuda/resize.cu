// Nearest-neighbour Resize over the two spatial axes of NCHW planes or NHWC images. Coordinates
// are computed in double exactly as ONNX's reference does, so the chosen source pixels match the
// CPU kernel; each block computes them once per output row and column into shared memory, and
// NHWC pixels move in accesses of up to 16 bytes of channels.
#include <algorithm>
#include <cmath>

#include "kestrel/runtime/cuda/device_math.cuh"
#include "kestrel/runtime/cuda/movement_launch.h"

namespace kestrel::runtime::cuda {
namespace {

__device__ __forceinline__ int64_t source_index(int64_t x, ResizeAxis a, ResizeCoordinates c,
                                                NearestRounding r) {
  const double xd = static_cast<double>(x), in = static_cast<double>(a.in);
  // The fractional output width, which ONNX's reference (and the CPU kernel) divides by, rather
  // than the integer output size.
  const double width = a.scale * in;
  double s = 0;
  switch (c) {
    case ResizeCoordinates::kHalfPixel:
      s = (xd + 0.5) / a.scale - 0.5;
      break;
    case ResizeCoordinates::kHalfPixelSymmetric: {
      // __dmul_rn: no fused multiply-add, which the CPU does not do either.
      const double offset = __dmul_rn(in / 2, 1 - static_cast<double>(a.out) / width);
      s = offset + (xd + 0.5) / a.scale - 0.5;
      break;
    }
    case ResizeCoordinates::kPytorchHalfPixel:
      s = width == 1 ? -0.5 : (xd + 0.5) / a.scale - 0.5;
      break;
    case ResizeCoordinates::kAlignCorners:
      s = width == 1 ? 0 : xd * (in - 1) / (width - 1);
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

// Access units each thread loads before it stores any (the loads then overlap).
constexpr int kIlp = 4;

// One output access unit per thread: `units` per output pixel (the pixel's channels, or one NCHW
// element), `kTables`: the source column of every output column, then the source row of every
// output row, in shared memory (else computed per unit, for outputs too wide for the table).
template <typename U, bool kTables>
__global__ void resize_nearest_units(const U* __restrict__ x, U* __restrict__ y, uint32_t n,
                                     FastDivmod units, FastDivmod out_w, FastDivmod out_h,
                                     ResizeAxis h, ResizeAxis w, ResizeCoordinates c,
                                     NearestRounding r) {
  extern __shared__ int sources[];
  if constexpr (kTables) {
    for (uint32_t i = threadIdx.x; i < out_w.divisor; i += blockDim.x) {
      sources[i] = static_cast<int>(source_index(i, w, c, r));
    }
    for (uint32_t i = threadIdx.x; i < out_h.divisor; i += blockDim.x) {
      sources[out_w.divisor + i] = static_cast<int>(source_index(i, h, c, r));
    }
    __syncthreads();
  }
  const auto in_w = static_cast<uint32_t>(w.in), in_h = static_cast<uint32_t>(h.in);
  for (uint32_t base = blockIdx.x * blockDim.x * kIlp + threadIdx.x; base < n;
       base += gridDim.x * blockDim.x * kIlp) {
    U v[kIlp];  // all loads first, then the stores: kIlp loads in flight per thread
#pragma unroll
    for (int k = 0; k < kIlp; ++k) {
      const uint32_t i = base + k * blockDim.x;
      if (i >= n) continue;
      uint32_t pixel, unit, row, ox, plane, oy;
      units.divmod(i, pixel, unit);
      out_w.divmod(pixel, row, ox);
      out_h.divmod(row, plane, oy);
      uint32_t sx, sy;
      if constexpr (kTables) {
        sx = static_cast<uint32_t>(sources[ox]);
        sy = static_cast<uint32_t>(sources[out_w.divisor + oy]);
      } else {
        sx = static_cast<uint32_t>(source_index(ox, w, c, r));
        sy = static_cast<uint32_t>(source_index(oy, h, c, r));
      }
      v[k] = x[((plane * in_h + sy) * in_w + sx) * units.divisor + unit];
    }
#pragma unroll
    for (int k = 0; k < kIlp; ++k) {
      const uint32_t i = base + k * blockDim.x;
      if (i < n) y[i] = v[k];
    }
  }
}

// NCHW rows: L consecutive outputs of a row per thread, gathered through the tables and stored in
// one access (the row's width a multiple of L).
template <typename E, int L>
struct alignas(sizeof(E) * L) Run {
  E v[L];
};
template <typename E, int L>
__global__ void resize_nearest_rows(const E* __restrict__ x, Run<E, L>* __restrict__ y, uint32_t n,
                                    FastDivmod runs, FastDivmod out_h, ResizeAxis h, ResizeAxis w,
                                    ResizeCoordinates c, NearestRounding r) {
  extern __shared__ int sources[];
  const auto out_w = static_cast<uint32_t>(w.out);
  for (uint32_t i = threadIdx.x; i < out_w; i += blockDim.x) {
    sources[i] = static_cast<int>(source_index(i, w, c, r));
  }
  for (uint32_t i = threadIdx.x; i < out_h.divisor; i += blockDim.x) {
    sources[out_w + i] = static_cast<int>(source_index(i, h, c, r));
  }
  __syncthreads();
  const auto in_w = static_cast<uint32_t>(w.in), in_h = static_cast<uint32_t>(h.in);
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    uint32_t row, run, plane, oy;
    runs.divmod(i, row, run);
    out_h.divmod(row, plane, oy);
    const E* src = x + (plane * in_h + static_cast<uint32_t>(sources[out_w + oy])) * in_w;
    const int* columns = sources + run * L;
    Run<E, L> out;
#pragma unroll
    for (int l = 0; l < L; ++l) out.v[l] = src[columns[l]];
    y[i] = out;
  }
}

template <typename E, int L>
void launch_rows(const void* x, void* y, int64_t rows, unsigned blocks, size_t table,
                 const FastDivmod& by_h, ResizeAxis h, ResizeAxis w, ResizeCoordinates c,
                 NearestRounding r, cudaStream_t stream) {
  const auto n = static_cast<uint32_t>(rows * (w.out / L));
  resize_nearest_rows<E, L><<<blocks, 256, table, stream>>>(
      static_cast<const E*>(x), static_cast<Run<E, L>*>(y), n,
      FastDivmod(static_cast<uint32_t>(w.out / L)), by_h, h, w, c, r);
}

// The 64-bit kernel, for tensors of 2^31 elements or more. `channels` == 0: NCHW planes; else
// NHWC images with `channels` innermost.
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
  const int64_t channels = channels_last > 0 ? channels_last : 1;
  const int64_t n = planes * h.out * w.out * channels;
  if (n == 0) return cudaSuccess;
  if (n <= kMaxIndex32 && planes * h.in * w.in * channels <= kMaxIndex32) {
    const FastDivmod by_w(static_cast<uint32_t>(w.out)), by_h(static_cast<uint32_t>(h.out));
    // Tables up to 48 KB of shared memory, the most a block gets without opting in.
    const int64_t table = (w.out + h.out) * static_cast<int64_t>(sizeof(int));
    const bool tables = table <= 48 * 1024;
    // Blocks for `items` outputs, `per_thread` per thread; with tables, which every block fills,
    // at most one block per 4 (w.out + h.out) items, so that filling them stays a small part.
    auto blocks_for_items = [&](int64_t items, int per_thread) {
      int64_t blocks = (items + 256 * per_thread - 1) / (256 * per_thread);
      if (tables) blocks = std::min(blocks, items / (4 * (w.out + h.out)));
      return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 4096));
    };
    // NCHW rows of float32 or float16: stores of up to 16 bytes of consecutive outputs.
    const int run = tables && channels == 1 && (element_size == 2 || element_size == 4)
                        ? widest_unit(element_size, w.out * element_size, y)
                        : element_size;
    if (run > element_size) {
      const int64_t rows = planes * h.out;
      const unsigned blocks = blocks_for_items(n * element_size / run, 1);
      if (element_size == 4 && run == 16) {
        launch_rows<uint32_t, 4>(x, y, rows, blocks, table, by_h, h, w, coordinates, rounding,
                                 stream);
      } else if (element_size == 4) {
        launch_rows<uint32_t, 2>(x, y, rows, blocks, table, by_h, h, w, coordinates, rounding,
                                 stream);
      } else if (run == 16) {
        launch_rows<uint16_t, 8>(x, y, rows, blocks, table, by_h, h, w, coordinates, rounding,
                                 stream);
      } else if (run == 8) {
        launch_rows<uint16_t, 4>(x, y, rows, blocks, table, by_h, h, w, coordinates, rounding,
                                 stream);
      } else {
        launch_rows<uint16_t, 2>(x, y, rows, blocks, table, by_h, h, w, coordinates, rounding,
                                 stream);
      }
      return cudaGetLastError();
    }
    // Otherwise one access unit at a time: up to 16 bytes of an NHWC pixel's channels.
    const uint64_t pixel_bytes = static_cast<uint64_t>(channels) * element_size;
    const int unit = std::min(widest_unit(element_size, pixel_bytes, x),
                              widest_unit(element_size, pixel_bytes, y));
    const FastDivmod by_units(static_cast<uint32_t>(pixel_bytes / unit));
    const auto total = static_cast<uint32_t>(n / (unit / element_size));
    const unsigned blocks = blocks_for_items(total, kIlp);
    if (tables) {
      KS_BY_UNIT(unit, (resize_nearest_units<U, true><<<blocks, 256, table, stream>>>(
                           static_cast<const U*>(x), static_cast<U*>(y), total, by_units, by_w,
                           by_h, h, w, coordinates, rounding)));
    } else {
      KS_BY_UNIT(unit, (resize_nearest_units<U, false><<<blocks, 256, 0, stream>>>(
                           static_cast<const U*>(x), static_cast<U*>(y), total, by_units, by_w,
                           by_h, h, w, coordinates, rounding)));
    }
    return cudaGetLastError();
  }
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
