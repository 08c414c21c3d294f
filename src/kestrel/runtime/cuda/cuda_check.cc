// CUDA runtime errors as Status values (cuda_check.h).
#include "kestrel/runtime/cuda/cuda_check.h"

#include <fmt/format.h>

namespace kestrel::runtime::cuda {
namespace {

std::string mebibytes(size_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

}  // namespace

Status cuda_status(cudaError_t error, const char* call, const char* file, int line) {
  StatusCode code = StatusCode::kInternal;
  if (error == cudaErrorMemoryAllocation) code = StatusCode::kResourceExhausted;
  if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver ||
      error == cudaErrorInvalidDevice) {
    code = StatusCode::kUnavailable;
  }
  // Clear a non-sticky error so that the next call does not report it again.
  (void)cudaGetLastError();
  return Status(code, fmt::format("{} failed: {} ({}) at {}:{}", call, cudaGetErrorString(error),
                                  cudaGetErrorName(error), file, line));
}

Status cuda_alloc_status(cudaError_t error, const char* call, size_t bytes, bool device_memory,
                         const char* file, int line) {
  if (error != cudaErrorMemoryAllocation) return cuda_status(error, call, file, line);
  (void)cudaGetLastError();
  std::string available;
  size_t free = 0, total = 0;
  if (device_memory && cudaMemGetInfo(&free, &total) == cudaSuccess) {
    available = fmt::format("; the GPU has {} free of {}", mebibytes(free), mebibytes(total));
  }
  (void)cudaGetLastError();
  return resource_exhausted("{} failed: out of {} memory for {} bytes ({}){} at {}:{}", call,
                            device_memory ? "GPU" : "pinned host", bytes, mebibytes(bytes),
                            available, file, line);
}

}  // namespace kestrel::runtime::cuda
