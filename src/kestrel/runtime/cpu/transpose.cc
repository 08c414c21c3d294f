// Reference kernels of Transpose, SpaceToDepth and DepthToSpace.
//
// All three are permutations of dimensions: the output is walked in row-major order and each
// element read through the input's strides, reordered. SpaceToDepth and DepthToSpace are 6-D
// transposes of a view of the 4-D input. Elements are moved as bytes (memcpy of the element size),
// so one instantiation per size serves every element type, and the kernels need no element type up
// front (it may be unknown when the engine is built, downstream of a data-dependent shape).
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

// out[i] = in[offset(i)], where offset walks `out_shape` with `strides` (in elements of `in`).
template <size_t N>
void strided_copy(const Tensor& in, Tensor& out, const Shape& out_shape,
                  std::vector<int64_t> strides) {
  const auto* src = static_cast<const std::byte*>(in.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  for_each_broadcast<1>(out_shape, {std::move(strides)},
                        [&](int64_t i, const std::array<int64_t, 1>& o) {
                          std::memcpy(dst + i * N, src + o[0] * N, N);
                        });
}

Status permute(const Tensor& in, Tensor& out, const Shape& out_shape,
               std::vector<int64_t> strides) {
  switch (dtype_size(in.dtype())) {
    case 1:
      strided_copy<1>(in, out, out_shape, std::move(strides));
      break;
    case 2:
      strided_copy<2>(in, out, out_shape, std::move(strides));
      break;
    case 4:
      strided_copy<4>(in, out, out_shape, std::move(strides));
      break;
    case 8:
      strided_copy<8>(in, out, out_shape, std::move(strides));
      break;
    default:
      return unimplemented("element type {} is not supported here", in.dtype());
  }
  return Status();
}

StatusOr<std::unique_ptr<Kernel>> create_transpose(const KernelDef& def) {
  const bool has_perm = def.attrs.has("perm");
  const std::vector<int64_t> perm = def.attrs.get_ints("perm");
  return make_kernel([has_perm, perm](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
    const size_t rank = x.rank();
    // Output dimension d is input dimension perm[d] (reversed without perm).
    std::vector<int64_t> strides(rank);
    for (size_t d = 0; d < rank; ++d) {
      strides[d] = in_strides[has_perm ? static_cast<size_t>(perm[d]) : rank - 1 - d];
    }
    return permute(x, ctx.output(0), ctx.output(0).shape(), std::move(strides));
  });
}

// out[n, (bh*b + bw)*C + c, h, w] = in[n, c, h*b + bh, w*b + bw].
StatusOr<std::unique_ptr<Kernel>> create_space_to_depth(const KernelDef& def) {
  const int64_t b = def.attrs.get_int("blocksize", 1);
  return make_kernel([b](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
    // The input seen as [N, C, H/b, b, W/b, b], read in the order [N, b, b, C,
    // H/b, W/b].
    const Shape view{n, b, b, c, h / b, w / b};
    return permute(x, ctx.output(0), view, {c * h * w, w, 1, h * w, b * w, b});
  });
}

// DCR: out[n, c, h*b + bh, w*b + bw] = in[n, (bh*b + bw)*C' + c, h, w];
// CRD: out[n, c, h*b + bh, w*b + bw] = in[n, c*b*b + bh*b + bw, h, w], with C' = C / b².
StatusOr<std::unique_ptr<Kernel>> create_depth_to_space(const KernelDef& def) {
  const int64_t b = def.attrs.get_int("blocksize", 1);
  const bool crd = def.attrs.get_string("mode", "DCR") == "CRD";
  return make_kernel([b, crd](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
    const int64_t oc = c / (b * b);
    // Read in the order [N, C', H, b, W, b]; the strides say where each of those
    // lives.
    const Shape view{n, oc, h, b, w, b};
    const int64_t hw = h * w;
    std::vector<int64_t> strides =
        crd ? std::vector<int64_t>{c * hw, b * b * hw, w, b * hw, 1, hw}
            : std::vector<int64_t>{c * hw, hw, w, b * oc * hw, 1, oc * hw};
    return permute(x, ctx.output(0), view, std::move(strides));
  });
}

}  // namespace

std::vector<KernelEntry> transpose_kernels() {
  return {
      KernelEntry{"Transpose", create_transpose},
      KernelEntry{"SpaceToDepth", create_space_to_depth},
      KernelEntry{"DepthToSpace", create_depth_to_space},
  };
}

}  // namespace kestrel::runtime::cpu
