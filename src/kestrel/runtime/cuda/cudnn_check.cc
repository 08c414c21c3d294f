// cuDNN errors as Status values (cudnn_check.h), and the per-thread cuDNN handle.
#include "kestrel/runtime/cuda/cudnn_check.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

namespace kestrel::runtime::cuda {

namespace {

// cuDNN could not allocate memory. cuDNN 9 splits CUDNN_STATUS_ALLOC_FAILED (now a deprecated
// name of the host case) into host and device allocation failures; a CUDA runtime failure inside
// cuDNN is out-of-memory too when the runtime's last error says so.
bool is_allocation_failure(cudnnStatus_t status) {
#if CUDNN_MAJOR >= 9
  if (status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
      status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED) {
    return true;
  }
  if (status == CUDNN_STATUS_EXECUTION_FAILED_CUDART) {
    return cudaPeekAtLastError() == cudaErrorMemoryAllocation;
  }
  return false;
#else
  return status == CUDNN_STATUS_ALLOC_FAILED;
#endif
}

}  // namespace

Status cudnn_status(cudnnStatus_t status, const char* call, const char* file, int line) {
  const StatusCode code = is_allocation_failure(status)          ? StatusCode::kResourceExhausted
                          : status == CUDNN_STATUS_NOT_SUPPORTED ? StatusCode::kUnimplemented
                                                                 : StatusCode::kInternal;
  // A runtime error cuDNN ran into is not sticky unless the context is lost: clear it, so that
  // the next CUDA call does not report it again.
  if (code == StatusCode::kResourceExhausted) (void)cudaGetLastError();
  return Status(code, fmt::format("{} failed: {}{} at {}:{}", call, cudnnGetErrorString(status),
                                  code == StatusCode::kResourceExhausted ? " (out of memory)" : "",
                                  file, line));
}

StatusOr<cudnnHandle_t> thread_cudnn_handle() {
  struct Holder {
    cudnnHandle_t handle = nullptr;
    ~Holder() {
      if (handle) cudnnDestroy(handle);
    }
  };
  thread_local Holder holder;
  if (holder.handle == nullptr) KS_CUDNN_RETURN_IF_ERROR(cudnnCreate(&holder.handle));
  return holder.handle;
}

}  // namespace kestrel::runtime::cuda
