// Turning CUDA runtime errors into Status values that name the call, file and line.
//
//   KS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream));
//
// Out-of-memory becomes RESOURCE_EXHAUSTED (the caller can survive it); every other failure is
// INTERNAL, except a missing driver or device, which is UNAVAILABLE.
#pragma once

#include <cuda_runtime.h>

#include "kestrel/base/status.h"

namespace kestrel::runtime::cuda {

Status cuda_status(cudaError_t error, const char* call, const char* file, int line);

}  // namespace kestrel::runtime::cuda

#define KS_CUDA_RETURN_IF_ERROR(call)                                                          \
  do {                                                                                         \
    const cudaError_t ks_cuda_error_ = (call);                                                 \
    if (ks_cuda_error_ != cudaSuccess) {                                                       \
      return ::kestrel::runtime::cuda::cuda_status(ks_cuda_error_, #call, __FILE__, __LINE__); \
    }                                                                                          \
  } while (0)
