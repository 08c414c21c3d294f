#include "kestrel/runtime/cuda/cudnn_check.h"

#include <fmt/format.h>

namespace kestrel::runtime::cuda {

Status cudnn_status(cudnnStatus_t status, const char* call, const char* file, int line) {
  const StatusCode code = status == CUDNN_STATUS_ALLOC_FAILED    ? StatusCode::kResourceExhausted
                          : status == CUDNN_STATUS_NOT_SUPPORTED ? StatusCode::kUnimplemented
                                                                 : StatusCode::kInternal;
  return Status(
      code, fmt::format("{} failed: {} at {}:{}", call, cudnnGetErrorString(status), file, line));
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
