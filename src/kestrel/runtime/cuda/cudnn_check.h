// cuDNN errors as Status values naming the call, file and line; and one cuDNN handle per thread.
// cuDNN's allocation failures (host or device) are RESOURCE_EXHAUSTED, like CUDA's out-of-memory
// (cuda_check.h); NOT_SUPPORTED is UNIMPLEMENTED; the rest INTERNAL.
#pragma once

#include <cudnn.h>

#include "kestrel/base/status.h"

namespace kestrel::runtime::cuda {

Status cudnn_status(cudnnStatus_t status, const char* call, const char* file, int line);

// The calling thread's cuDNN handle for the current device, created on first use.
StatusOr<cudnnHandle_t> thread_cudnn_handle();

}  // namespace kestrel::runtime::cuda

#define KS_CUDNN_RETURN_IF_ERROR(call)                                                            \
  do {                                                                                            \
    const cudnnStatus_t ks_cudnn_status_ = (call);                                                \
    if (ks_cudnn_status_ != CUDNN_STATUS_SUCCESS) {                                               \
      return ::kestrel::runtime::cuda::cudnn_status(ks_cudnn_status_, #call, __FILE__, __LINE__); \
    }                                                                                             \
  } while (0)
