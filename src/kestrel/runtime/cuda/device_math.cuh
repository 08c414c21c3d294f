// Device-side helpers shared by the .cu files: conversions between storage types and the float they
// compute in, grid-stride loops and strided index arithmetic.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kestrel/runtime/cuda/launch.h"

namespace kestrel::runtime::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

// Offset of output element `index` in operand k of `s` (row-major decomposition).
__device__ __forceinline__ int64_t strided_offset(const StridedShape& s, int k, int64_t index) {
  int64_t offset = 0;
  for (int d = s.rank - 1; d >= 0; --d) {
    const int64_t i = index % s.dims[d];
    index /= s.dims[d];
    offset += i * s.strides[k][d];
  }
  return offset;
}

// A convolution's fused activation, in float.
__device__ __forceinline__ float activate(Activation a, float x, float alpha, float beta) {
  switch (a) {
    case Activation::kNone:
      return x;
    case Activation::kRelu:
      return x < 0.f ? 0.f : x;
    case Activation::kLeakyRelu:
      return x < 0.f ? alpha * x : x;
    case Activation::kSigmoid:
      return 1.f / (1.f + expf(-x));
    case Activation::kHardSigmoid:
      return fmaxf(0.f, fminf(1.f, alpha * x + beta));
    case Activation::kHardSwish:
      return x * fmaxf(0.f, fminf(1.f, x / 6.f + 0.5f));
    case Activation::kClip:
      return alpha > beta ? beta : (x < alpha ? alpha : (x > beta ? beta : x));
    case Activation::kSilu:
      return x / (1.f + expf(-x));
  }
  return x;
}

// The first index and stride of a grid-stride loop.
__device__ __forceinline__ int64_t grid_start() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Blocks of 256 threads covering n elements, capped (grid-stride loops cover the rest).
inline unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 32 ? 65535 * 32 : blocks));
}

// Launches kernel<float> or kernel<__half> for `t`: dispatch for the floating kernels.
#define KS_FLOAT_DISPATCH(t, body)    \
  do {                                \
    if ((t) == FloatType::kFloat32) { \
      using T = float;                \
      body;                           \
    } else {                          \
      using T = __half;               \
      body;                           \
    }                                 \
  } while (0)

}  // namespace kestrel::runtime::cuda
