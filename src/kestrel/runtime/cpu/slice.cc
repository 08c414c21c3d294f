// Reference kernel of Slice: the output is walked in row-major order and each element read at
// start + index * step along every axis, i.e. through the input's strides scaled by the steps.
//
// The clamping of starts and ends follows ONNX exactly; it repeats the shape rule's
// (ir/ops/movement.cc), which has already checked the inputs and sized the output.
#include <algorithm>
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

struct SliceAxis {
  int64_t start = 0;
  int64_t count = 0;
};

// Negative starts and ends count from the end; both are then clamped to [0, dim] for a positive
// step and to [0, dim-1] / [-1, dim-1] for a negative one. No value overflows, INT64_MIN included.
SliceAxis slice_axis(int64_t start, int64_t end, int64_t step, int64_t dim) {
  SliceAxis s;
  if (dim == 0) return s;
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  uint64_t span = 0, stride = 0;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    span = static_cast<uint64_t>(end > start ? end - start : 0);
    stride = static_cast<uint64_t>(step);
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    span = static_cast<uint64_t>(start > end ? start - end : 0);
    stride = uint64_t{0} - static_cast<uint64_t>(step);
  }
  s.count = static_cast<int64_t>(span / stride + (span % stride != 0));
  s.start = start;
  return s;
}

template <size_t N>
void strided_copy(const std::byte* src, std::byte* dst, const Shape& out_shape,
                  std::vector<int64_t> strides) {
  for_each_broadcast<1>(out_shape, {std::move(strides)},
                        [&](int64_t i, const std::array<int64_t, 1>& o) {
                          std::memcpy(dst + i * N, src + o[0] * N, N);
                        });
}

StatusOr<std::unique_ptr<Kernel>> create_slice(const KernelDef&) {
  // Every element type moves as bytes, so the kernel needs no element type up front (it may be
  // unknown when the engine is built, downstream of a data-dependent shape).
  return make_kernel([](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& out = ctx.output(0);
    if (out.num_elements() == 0) return Status();
    const auto rank = static_cast<int64_t>(x.rank());
    KS_ASSIGN_OR_RETURN(std::vector<int64_t> starts, ctx.input(1).to_int64_vector());
    KS_ASSIGN_OR_RETURN(std::vector<int64_t> ends, ctx.input(2).to_int64_vector());
    std::vector<int64_t> axes, steps(starts.size(), 1);
    if (ctx.has_input(3)) {
      KS_ASSIGN_OR_RETURN(axes, ctx.input(3).to_int64_vector());
    } else {
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    }
    if (ctx.has_input(4)) {
      KS_ASSIGN_OR_RETURN(steps, ctx.input(4).to_int64_vector());
    }

    const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
    std::vector<int64_t> strides = in_strides;  // axes not sliced: start 0, step 1
    int64_t base = 0;
    for (size_t i = 0; i < axes.size(); ++i) {
      const auto a = static_cast<size_t>(axes[i] < 0 ? axes[i] + rank : axes[i]);
      const SliceAxis s = slice_axis(starts[i], ends[i], steps[i], x.shape()[a]);
      base += s.start * in_strides[a];
      // With one element the step is never taken (and may be huge); otherwise |step| < dim.
      strides[a] = s.count > 1 ? steps[i] * in_strides[a] : 0;
    }
    const auto* src = static_cast<const std::byte*>(x.raw_data());
    auto* dst = static_cast<std::byte*>(out.raw_data());
    switch (dtype_size(x.dtype())) {
      case 1:
        strided_copy<1>(src + base, dst, out.shape(), std::move(strides));
        break;
      case 2:
        strided_copy<2>(src + base * 2, dst, out.shape(), std::move(strides));
        break;
      case 4:
        strided_copy<4>(src + base * 4, dst, out.shape(), std::move(strides));
        break;
      case 8:
        strided_copy<8>(src + base * 8, dst, out.shape(), std::move(strides));
        break;
      default:
        return unimplemented("element type {} is not supported here", x.dtype());
    }
    return Status();
  });
}

}  // namespace

std::vector<KernelEntry> slice_kernels() { return {KernelEntry{"Slice", create_slice}}; }

}  // namespace kestrel::runtime::cpu
