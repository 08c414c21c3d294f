// Choosing the backends an engine runs on.
#pragma once

#include <memory>
#include <vector>

#include "kestrel/engine/engine.h"
#include "kestrel/runtime/kernel.h"

namespace kestrel::engine {

// True when a CUDA device can be used (the build has CUDA and a GPU is visible).
bool cuda_available();

// The backends for `options.backend`, in the order nodes are offered to them: the requested one
// first, the CPU last (as the fallback for operators the device lacks). UNAVAILABLE when "cuda" is
// requested and no GPU can be used; INVALID_ARGUMENT for an unknown name.
StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> create_backends(
    const EngineOptions& options);

}  // namespace kestrel::engine
