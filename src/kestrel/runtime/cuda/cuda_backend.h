// The CUDA backend: device memory, host<->device copies and the CUDA kernels.
//
// This header is plain C++ (no CUDA types), so the engine can create the backend without seeing
// CUDA headers; everything CUDA lives in this folder.
#pragma once

#include <memory>

#include "kestrel/runtime/kernel.h"

namespace kestrel::runtime {

// Number of usable CUDA devices; 0 when there is no driver or no GPU.
int cuda_device_count();

// UNAVAILABLE when the device cannot be used (no GPU, no driver, bad index).
StatusOr<std::unique_ptr<Backend>> create_cuda_backend(int device_index);

}  // namespace kestrel::runtime
