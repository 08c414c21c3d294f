// The CPU backend: Kestrel's reference implementation of every operator, and the default backend
// on machines without a GPU.
//
// Every operator has a plain, obviously correct reference kernel (the oracle that every other
// backend is tested against). Where a faster implementation exists (oneDNN convolutions), it is
// used unless `reference_only` is set; it must agree with the reference within rounding.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "kestrel/runtime/kernel.h"

namespace kestrel::runtime {

struct CpuBackendOptions {
  // Only the reference kernels: slow, simple, the oracle.
  bool reference_only = false;
};

std::unique_ptr<Backend> create_cpu_backend(const CpuBackendOptions& options = {});

// Operators with a CPU kernel, sorted.
std::vector<std::string_view> cpu_supported_ops();

}  // namespace kestrel::runtime
