// Reference kernels of Expand (broadcast to a shape) and Tile (repeat along every axis).
//
// Both read each output element from one input element through broadcast strides (0 along
// expanded dimensions); Tile is a broadcast of the input to [r0, d0, r1, d1, ...]. The shape rule
// has sized (and bounded) the output. Elements are moved as bytes.
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

template <size_t N>
void expand(const Tensor& in, Tensor& out) {
  const auto* src = static_cast<const std::byte*>(in.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  for_each_broadcast<1>(out.shape(), {broadcast_strides(in.shape(), out.shape())},
                        [&](int64_t i, const std::array<int64_t, 1>& o) {
                          std::memcpy(dst + i * N, src + o[0] * N, N);
                        });
}

// The output seen as [r0, d0, r1, d1, ...] (repeats, input dims) is a broadcast of the input.
template <size_t N>
void tile(const Tensor& in, Tensor& out) {
  if (out.num_elements() == 0) return;  // also when an input dimension is 0
  const std::vector<int64_t> in_strides = contiguous_strides(in.shape());
  std::vector<int64_t> view, strides;
  for (size_t d = 0; d < in.rank(); ++d) {
    view.push_back(out.shape()[d] / in.shape()[d]);
    view.push_back(in.shape()[d]);
    strides.push_back(0);
    strides.push_back(in_strides[d]);
  }
  const auto* src = static_cast<const std::byte*>(in.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  for_each_broadcast<1>(Shape(std::move(view)), {std::move(strides)},
                        [&](int64_t i, const std::array<int64_t, 1>& o) {
                          std::memcpy(dst + i * N, src + o[0] * N, N);
                        });
}

template <template <size_t> typename F>
StatusOr<std::unique_ptr<Kernel>> create(const KernelDef&) {
  // Every element type moves as bytes, so the kernel needs no element type up front (it may be
  // unknown when the engine is built, downstream of a data-dependent shape).
  return make_kernel([](KernelContext& ctx) -> Status {
    const Tensor& in = ctx.input(0);
    Tensor& out = ctx.output(0);
    switch (dtype_size(in.dtype())) {
      case 1:
        F<1>::run(in, out);
        break;
      case 2:
        F<2>::run(in, out);
        break;
      case 4:
        F<4>::run(in, out);
        break;
      case 8:
        F<8>::run(in, out);
        break;
      default:
        return unimplemented("element type {} is not supported here", in.dtype());
    }
    return Status();
  });
}

template <size_t N>
struct Expand {
  static void run(const Tensor& in, Tensor& out) { expand<N>(in, out); }
};
template <size_t N>
struct Tile {
  static void run(const Tensor& in, Tensor& out) { tile<N>(in, out); }
};

}  // namespace

std::vector<KernelEntry> expand_kernels() {
  return {
      KernelEntry{"Expand", create<Expand>},
      KernelEntry{"Tile", create<Tile>},
  };
}

}  // namespace kestrel::runtime::cpu
