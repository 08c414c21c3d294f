// Turning CUDA runtime errors into Status values that name the call, file and line.
//
//   KS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream));
//   KS_CUDA_ALLOC_RETURN_IF_ERROR(cudaMallocAsync(&p, bytes, stream), bytes);
//   KS_CUDA_HOST_ALLOC_RETURN_IF_ERROR(cudaMallocHost(&p, bytes), bytes);
//
// Out-of-memory (cudaErrorMemoryAllocation) becomes RESOURCE_EXHAUSTED: it is not a sticky error,
// so the caller can survive it (a smaller batch, fewer contexts). The allocation macros add the
// bytes asked for, and for device memory what the device has free. Every other failure is
// INTERNAL, except a missing driver or device, which is UNAVAILABLE.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kestrel/base/status.h"

namespace kestrel::runtime::cuda {

Status cuda_status(cudaError_t error, const char* call, const char* file, int line);

// cuda_status for an allocation of `bytes` of device memory (`device_memory`) or pinned host
// memory.
Status cuda_alloc_status(cudaError_t error, const char* call, size_t bytes, bool device_memory,
                         const char* file, int line);

}  // namespace kestrel::runtime::cuda

#define KS_CUDA_RETURN_IF_ERROR(call)                                                          \
  do {                                                                                         \
    const cudaError_t ks_cuda_error_ = (call);                                                 \
    if (ks_cuda_error_ != cudaSuccess) {                                                       \
      return ::kestrel::runtime::cuda::cuda_status(ks_cuda_error_, #call, __FILE__, __LINE__); \
    }                                                                                          \
  } while (0)

#define KS_CUDA_ALLOC_RETURN_IF_ERROR_IMPL(call, bytes, device_memory)                         \
  do {                                                                                         \
    const cudaError_t ks_cuda_error_ = (call);                                                 \
    if (ks_cuda_error_ != cudaSuccess) {                                                       \
      return ::kestrel::runtime::cuda::cuda_alloc_status(ks_cuda_error_, #call, (bytes),       \
                                                         (device_memory), __FILE__, __LINE__); \
    }                                                                                          \
  } while (0)

// cudaMalloc, cudaMallocAsync: device memory.
#define KS_CUDA_ALLOC_RETURN_IF_ERROR(call, bytes) \
  KS_CUDA_ALLOC_RETURN_IF_ERROR_IMPL(call, bytes, true)
// cudaMallocHost, cudaHostAlloc: pinned host memory.
#define KS_CUDA_HOST_ALLOC_RETURN_IF_ERROR(call, bytes) \
  KS_CUDA_ALLOC_RETURN_IF_ERROR_IMPL(call, bytes, false)
