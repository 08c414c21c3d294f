#include "kestrel/engine/backends.h"

#include "kestrel/runtime/cpu/cpu_backend.h"
#ifdef KESTREL_WITH_CUDA
#include "kestrel/runtime/cuda/cuda_backend.h"
#endif

namespace kestrel::engine {

bool cuda_available() {
#ifdef KESTREL_WITH_CUDA
  return runtime::cuda_device_count() > 0;
#else
  return false;
#endif
}

StatusOr<std::vector<std::unique_ptr<runtime::Backend>>> create_backends(
    const EngineOptions& options) {
  std::vector<std::unique_ptr<runtime::Backend>> backends;
  std::string name = options.backend;
  if (name == "auto") name = cuda_available() ? "cuda" : "cpu";
  if (name == "cuda") {
#ifdef KESTREL_WITH_CUDA
    KS_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Backend> cuda,
                        runtime::create_cuda_backend(options.device_index));
    backends.push_back(std::move(cuda));
#else
    return unavailable("this build of Kestrel has no CUDA support");
#endif
  } else if (name != "cpu") {
    return invalid_argument("unknown backend '{}' (expected cpu, cuda or auto)", options.backend);
  }
  backends.push_back(runtime::create_cpu_backend({.reference_only = options.cpu_reference_only}));
  return backends;
}

}  // namespace kestrel::engine
