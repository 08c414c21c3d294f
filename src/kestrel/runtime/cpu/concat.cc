// Reference kernel of Concat: for each index of the dimensions before the axis, the inputs' blocks
// (their axis size times the inner dimensions) are copied one after another.
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

StatusOr<std::unique_ptr<Kernel>> create_concat(const KernelDef& def) {
  // Every element type moves as bytes, so the kernel needs no element type up front (it may be
  // unknown when the engine is built, downstream of a data-dependent shape).
  const int64_t axis_attr = def.attrs.get_int("axis", 0);
  return make_kernel([axis_attr](KernelContext& ctx) -> Status {
    Tensor& out = ctx.output(0);
    const auto rank = static_cast<int64_t>(out.rank());
    const auto axis = static_cast<size_t>(axis_attr < 0 ? axis_attr + rank : axis_attr);
    const size_t element = dtype_size(out.dtype());
    const int64_t outer = out.shape().num_elements(0, axis);
    auto* dst = static_cast<std::byte*>(out.raw_data());
    for (int64_t o = 0; o < outer; ++o) {
      for (size_t k = 0; k < ctx.num_inputs(); ++k) {
        const Tensor& in = ctx.input(k);
        const size_t block =
            static_cast<size_t>(in.shape().num_elements(axis, in.rank())) * element;
        if (block == 0) continue;
        std::memcpy(dst, static_cast<const std::byte*>(in.raw_data()) + o * block, block);
        dst += block;
      }
    }
    return Status();
  });
}

}  // namespace

std::vector<KernelEntry> concat_kernels() { return {KernelEntry{"Concat", create_concat}}; }

}  // namespace kestrel::runtime::cpu
