// Data-movement kernels. They move bytes, so one instantiation per element size serves every type.
#include "kestrel/runtime/cuda/device_math.cuh"

namespace kestrel::runtime::cuda {
namespace {

template <typename E>
__global__ void gather_strided(const E* __restrict__ in, E* __restrict__ out, int64_t n,
                               StridedShape s) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) out[i] = in[strided_offset(s, 0, i)];
}

template <typename E>
__global__ void copy_blocks(const E* __restrict__ in, E* __restrict__ out, int64_t outer,
                            int64_t block, int64_t in_stride, int64_t out_stride) {
  const int64_t n = outer * block;
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const int64_t o = i / block, j = i % block;
    out[o * out_stride + j] = in[o * in_stride + j];
  }
}

}  // namespace

#define KS_BY_SIZE(size, body)      \
  switch (size) {                   \
    case 1: {                       \
      using E = uint8_t;            \
      body;                         \
      break;                        \
    }                               \
    case 2: {                       \
      using E = uint16_t;           \
      body;                         \
      break;                        \
    }                               \
    case 4: {                       \
      using E = uint32_t;           \
      body;                         \
      break;                        \
    }                               \
    case 8: {                       \
      using E = uint64_t;           \
      body;                         \
      break;                        \
    }                               \
    default:                        \
      return cudaErrorInvalidValue; \
  }

cudaError_t launch_gather_strided(int element_size, const void* in, void* out, int64_t n,
                                  const StridedShape& layout, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  KS_BY_SIZE(element_size, (gather_strided<E><<<blocks_for(n), 256, 0, stream>>>(
                               static_cast<const E*>(in), static_cast<E*>(out), n, layout)));
  return cudaGetLastError();
}

cudaError_t launch_copy_blocks(int element_size, const void* in, void* out, int64_t outer,
                               int64_t block, int64_t in_stride, int64_t out_stride,
                               cudaStream_t stream) {
  if (outer * block == 0) return cudaSuccess;
  KS_BY_SIZE(element_size, (copy_blocks<E><<<blocks_for(outer * block), 256, 0, stream>>>(
                               static_cast<const E*>(in), static_cast<E*>(out), outer, block,
                               in_stride, out_stride)));
  return cudaGetLastError();
}

}  // namespace kestrel::runtime::cuda
