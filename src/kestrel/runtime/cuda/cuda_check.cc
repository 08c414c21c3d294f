#include "kestrel/runtime/cuda/cuda_check.h"

namespace kestrel::runtime::cuda {

Status cuda_status(cudaError_t error, const char* call, const char* file, int line) {
  StatusCode code = StatusCode::kInternal;
  if (error == cudaErrorMemoryAllocation) code = StatusCode::kResourceExhausted;
  if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver ||
      error == cudaErrorInvalidDevice) {
    code = StatusCode::kUnavailable;
  }
  // Clear a sticky-free error so the next call does not report it again.
  (void)cudaGetLastError();
  return Status(code, fmt::format("{} failed: {} ({}) at {}:{}", call, cudaGetErrorString(error),
                                  cudaGetErrorName(error), file, line));
}

}  // namespace kestrel::runtime::cuda
