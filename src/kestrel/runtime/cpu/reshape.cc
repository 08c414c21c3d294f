// Reference kernels of the operators that only change a tensor's shape: Reshape, Flatten, Squeeze
// and Unsqueeze. The element order does not change, so the output shares the input's storage; the
// shape rule has already computed (and checked) the output shape.
#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

// Any element type, known or not when the engine is built.
StatusOr<std::unique_ptr<Kernel>> create_reshape(const KernelDef&) {
  return make_kernel([](KernelContext& ctx) -> Status {
    // No copy: the output is a view of the input with the shape the engine allocated.
    ctx.output(0) = ctx.input(0).reshaped(ctx.output(0).shape());
    return Status();
  });
}

}  // namespace

std::vector<KernelEntry> reshape_kernels() {
  return {
      KernelEntry{"Reshape", create_reshape},
      KernelEntry{"Flatten", create_reshape},
      KernelEntry{"Squeeze", create_reshape},
      KernelEntry{"Unsqueeze", create_reshape},
  };
}

}  // namespace kestrel::runtime::cpu
