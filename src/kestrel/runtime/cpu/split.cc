// Reference kernel of Split: the shape rule has sized every output; for each index of the
// dimensions before the axis, consecutive blocks of the input go to the outputs in turn.
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

StatusOr<std::unique_ptr<Kernel>> create_split(const KernelDef& def) {
  // Every element type moves as bytes, so the kernel needs no element type up front (it may be
  // unknown when the engine is built, downstream of a data-dependent shape).
  const int64_t axis_attr = def.attrs.get_int("axis", 0);
  return make_kernel([axis_attr](KernelContext& ctx) -> Status {
    const Tensor& in = ctx.input(0);
    const auto rank = static_cast<int64_t>(in.rank());
    const auto axis = static_cast<size_t>(axis_attr < 0 ? axis_attr + rank : axis_attr);
    const size_t element = dtype_size(in.dtype());
    const int64_t outer = in.shape().num_elements(0, axis);
    const auto* src = static_cast<const std::byte*>(in.raw_data());
    for (int64_t o = 0; o < outer; ++o) {
      for (size_t k = 0; k < ctx.num_outputs(); ++k) {
        Tensor& out = ctx.output(k);
        const size_t block =
            static_cast<size_t>(out.shape().num_elements(axis, out.rank())) * element;
        if (block == 0) continue;
        std::memcpy(static_cast<std::byte*>(out.raw_data()) + o * block, src, block);
        src += block;
      }
    }
    return Status();
  });
}

}  // namespace

std::vector<KernelEntry> split_kernels() { return {KernelEntry{"Split", create_split}}; }

}  // namespace kestrel::runtime::cpu
