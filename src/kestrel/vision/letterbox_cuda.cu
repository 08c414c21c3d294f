// The CUDA letterbox kernel: OpenCV's uint8 bilinear resize, padding, HWC -> CHW and value / 255 in
// float32 or float16, for a whole batch in one launch (contract: letterbox_cuda.h; arithmetic:
// letterbox.h, reproduced operation for operation).
//
// Layout: blocks of 64 x 4 threads over 64 columns x 32 rows of the output, blockIdx.z the image.
// Each thread computes one output pixel's 3 channels at a time and writes them to the 3 planes, so
// a warp writes 32 consecutive elements of each plane (coalesced) and reads a ~300-byte stretch of
// 2 source rows. The column and row tables are precomputed on the host (linear_resize_taps()).
//
// Roofline for the target case (32 x 1920x1080 -> 32 x 3 x 640x640 float16, resized 640x360): the
// bilinear taps touch 2 of every 3 source rows, 32 x 720 x 1920 x 3 B = 133 MB read (199 MB if
// every row were read), plus 32 x 3 x 640 x 640 x 2 B = 79 MB written: 212-278 MB at the H100's
// 3.35 TB/s is 63-83 us, well inside the 0.5 ms budget. Measured there (ncu, base clocks): 90 us,
// DRAM at 67% of peak; the one-byte source loads keep L1 ~75% busy. Threads that computed a single
// pixel each spent more on set-up (the value table, the job) than on the pixel: 128 us.
#include <cuda_fp16.h>

#include "kestrel/vision/letterbox_launch.h"

namespace kestrel::vision {
namespace {

constexpr int kBlockX = 64;
constexpr int kBlockY = 4;  // 64 x 4 = 256 threads: one per entry of the value table
// 8 output pixels per thread: the table and the column's taps are set up once for all of them.
constexpr int kRowsPerBlock = kLetterboxRowsPerBlock;
static_assert(kRowsPerBlock % kBlockY == 0);

// The stored value of the model input for v / 255: float32, or float16 bits rounded to nearest even
// (what Half(float) does on the host).
template <typename T>
__device__ __forceinline__ T to_input(float v);
template <>
__device__ __forceinline__ float to_input<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ uint16_t to_input<uint16_t>(float v) {
  return __half_as_ushort(__float2half_rn(v));
}

// One thread's share of a block: column x - pad_left of the resized image (rx) in rows y,
// y + kBlockY, ... below y_end, specialized for the image's resize method so that the loop carries
// no switch.
template <LetterboxResize kMethod, typename T>
__device__ __forceinline__ void letterbox_rows(const LetterboxJob& job, const T* table, T* out,
                                               int64_t plane, int32_t target_width, int32_t rx,
                                               int32_t y, int32_t y_end, int pad) {
  const bool inside_x = rx >= 0 && rx < job.resized_width;
  const int64_t stride = static_cast<int64_t>(job.source_width) * 3;
  // Where this column reads a source row: the byte offsets of its two taps and their weights.
  int64_t a = 0, b = 0;
  int32_t xw0 = 0, xw1 = 0;
  if (inside_x) {
    if constexpr (kMethod == LetterboxResize::kCopy) {
      a = static_cast<int64_t>(rx) * 3;
    } else if constexpr (kMethod == LetterboxResize::kHalfArea) {
      a = static_cast<int64_t>(rx) * 6;  // the source is exactly twice the resized size
      b = a + 3;
    } else {
      const LetterboxTap t = job.x_taps[rx];
      a = static_cast<int64_t>(t.i0) * 3;
      b = static_cast<int64_t>(t.i1) * 3;
      xw0 = t.w0;
      xw1 = t.w1;
    }
  }
  for (; y < y_end; y += kBlockY) {
    const int32_t ry = y - job.pad_top;
    int v[3] = {pad, pad, pad};
    if (inside_x && ry >= 0 && ry < job.resized_height) {
      if constexpr (kMethod == LetterboxResize::kCopy) {
        const uint8_t* p = job.pixels + ry * stride + a;
        for (int c = 0; c < 3; ++c) v[c] = __ldg(p + c);
      } else if constexpr (kMethod == LetterboxResize::kHalfArea) {
        // The rounded mean of a 2x2 block.
        const uint8_t* r0 = job.pixels + 2 * ry * stride;
        const uint8_t* r1 = r0 + stride;
        for (int c = 0; c < 3; ++c) {
          v[c] =
              (__ldg(r0 + a + c) + __ldg(r0 + b + c) + __ldg(r1 + a + c) + __ldg(r1 + b + c) + 2) >>
              2;
        }
      } else {
        const LetterboxTap ty = job.y_taps[ry];
        const uint8_t* r0 = job.pixels + ty.i0 * stride;
        const uint8_t* r1 = job.pixels + ty.i1 * stride;
        const int32_t yw0 = ty.w0, yw1 = ty.w1;
        for (int c = 0; c < 3; ++c) {
          // 11 fractional bits horizontally, then OpenCV's vertical pass (see letterbox.h).
          const int32_t h0 = __ldg(r0 + a + c) * xw0 + __ldg(r0 + b + c) * xw1;
          const int32_t h1 = __ldg(r1 + a + c) * xw0 + __ldg(r1 + b + c) * xw1;
          const int32_t s = (((yw0 * (h0 >> 4)) >> 16) + ((yw1 * (h1 >> 4)) >> 16) + 2) >> 2;
          v[c] = s < 0 ? 0 : (s > 255 ? 255 : s);
        }
      }
    }
    T* o = out + static_cast<int64_t>(y) * target_width;
    o[0] = table[v[0]];
    o[plane] = table[v[1]];
    o[2 * plane] = table[v[2]];
  }
}

// Blocks of 64 x 4 threads cover 64 columns x kRowsPerBlock rows of image blockIdx.z.
template <typename T>
__global__ void __launch_bounds__(kBlockX* kBlockY)
    letterbox_kernel(const LetterboxJob* __restrict__ jobs, T* __restrict__ output,
                     int32_t target_width, int32_t target_height, uint8_t pad) {
  // v / 255 for every uint8 v, as the host computes it (an IEEE division, whatever nvcc's flags).
  __shared__ T table[256];
  const int t = threadIdx.y * kBlockX + threadIdx.x;
  table[t] = to_input<T>(__fdiv_rn(static_cast<float>(t), 255.0f));
  __syncthreads();

  const int32_t x = static_cast<int32_t>(blockIdx.x * kBlockX + threadIdx.x);
  if (x >= target_width) return;
  const LetterboxJob& job = jobs[blockIdx.z];
  const int64_t plane = static_cast<int64_t>(target_width) * target_height;
  T* out = output + static_cast<int64_t>(blockIdx.z) * 3 * plane + x;
  const int32_t rx = x - job.pad_left;
  const int32_t y0 = static_cast<int32_t>(blockIdx.y * kRowsPerBlock);
  const int32_t y = y0 + static_cast<int32_t>(threadIdx.y);
  const int32_t y_end = target_height - y0 < kRowsPerBlock ? target_height : y0 + kRowsPerBlock;
  switch (job.resize) {
    case LetterboxResize::kCopy:
      letterbox_rows<LetterboxResize::kCopy>(job, table, out, plane, target_width, rx, y, y_end,
                                             pad);
      break;
    case LetterboxResize::kHalfArea:
      letterbox_rows<LetterboxResize::kHalfArea>(job, table, out, plane, target_width, rx, y, y_end,
                                                 pad);
      break;
    case LetterboxResize::kLinear:
      letterbox_rows<LetterboxResize::kLinear>(job, table, out, plane, target_width, rx, y, y_end,
                                               pad);
      break;
  }
}

}  // namespace

cudaError_t launch_letterbox(const LetterboxJob* jobs, int32_t count, void* output, bool half,
                             int32_t target_width, int32_t target_height, uint8_t pad,
                             cudaStream_t stream) {
  if (count <= 0 || count > kMaxLetterboxImages || target_width <= 0 ||
      target_width > kMaxLetterboxWidth || target_height <= 0 ||
      target_height > kMaxLetterboxHeight) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>((target_width + kBlockX - 1) / kBlockX),
                  static_cast<unsigned>((target_height + kRowsPerBlock - 1) / kRowsPerBlock),
                  static_cast<unsigned>(count));
  const dim3 block(kBlockX, kBlockY);
  if (half) {
    letterbox_kernel<<<grid, block, 0, stream>>>(jobs, static_cast<uint16_t*>(output), target_width,
                                                 target_height, pad);
  } else {
    letterbox_kernel<<<grid, block, 0, stream>>>(jobs, static_cast<float*>(output), target_width,
                                                 target_height, pad);
  }
  return cudaGetLastError();
}

}  // namespace kestrel::vision
