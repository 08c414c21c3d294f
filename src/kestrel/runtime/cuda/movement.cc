// Engine kernels for data movement on the GPU: views (Reshape and friends share storage),
// Transpose, Expand, Concat and Split. Device code in movement.cu.
#include <algorithm>

#include "kestrel/runtime/cuda/cuda_kernels.h"
#include "kestrel/runtime/cuda/movement_launch.h"
#include "kestrel/runtime/cuda/strided.h"

namespace kestrel::runtime::cuda {
namespace {

int element_size(const Tensor& t) { return static_cast<int>(dtype_size(t.dtype())); }

// Reshape, Flatten, Squeeze, Unsqueeze, Identity: the input seen with the shape the rule computed.
StatusOr<std::unique_ptr<Kernel>> create_view(const KernelDef&) {
  return make_kernel([](KernelContext& ctx) -> Status {
    ctx.output(0) = ctx.input(0).reshaped(ctx.output(0).shape());
    return Status();
  });
}

StatusOr<std::unique_ptr<Kernel>> create_transpose(const KernelDef& def) {
  const std::vector<int64_t> perm = def.attrs.get_ints("perm");
  return make_kernel([perm](KernelContext& ctx) -> Status {
    const Tensor& in = ctx.input(0);
    Tensor& out = ctx.output(0);
    const size_t rank = in.rank();
    if (rank > static_cast<size_t>(kMaxRank)) return unimplemented("Transpose of rank {}", rank);
    const std::vector<int64_t> in_strides = contiguous_strides(in.shape());
    StridedShape s;
    s.rank = static_cast<int>(rank);
    for (size_t d = 0; d < rank; ++d) {
      const size_t from = perm.empty() ? rank - 1 - d : static_cast<size_t>(perm[d]);
      s.dims[d] = out.shape()[d];
      s.strides[0][d] = in_strides[from];
    }
    if (rank == 0) {
      s.rank = 1;
      s.dims[0] = 1;
    }
    return check_launch("transpose", launch_transpose(element_size(in), in.raw_data(),
                                                      out.raw_data(), s, stream_of(ctx)));
  });
}

StatusOr<std::unique_ptr<Kernel>> create_expand(const KernelDef&) {
  return make_kernel([](KernelContext& ctx) -> Status {
    const Tensor& in = ctx.input(0);
    Tensor& out = ctx.output(0);
    const Shape operands[1] = {in.shape()};
    KS_ASSIGN_OR_RETURN(StridedShape s, broadcast_layout(out.shape(), operands));
    return check_launch("expand",
                        launch_gather_strided(element_size(in), in.raw_data(), out.raw_data(),
                                              out.num_elements(), s, stream_of(ctx)));
  });
}

int64_t axis_of(const Attributes& attrs, size_t rank) {
  const int64_t axis = attrs.get_int("axis", 0);
  return axis < 0 ? axis + static_cast<int64_t>(rank) : axis;
}

// Concat: every input is copied into its slice of the output in one launch.
StatusOr<std::unique_ptr<Kernel>> create_concat(const KernelDef& def) {
  return make_kernel([attrs = def.attrs](KernelContext& ctx) -> Status {
    Tensor& out = ctx.output(0);
    const auto axis = static_cast<size_t>(axis_of(attrs, out.rank()));
    const int64_t inner = out.shape().num_elements(axis + 1, out.rank());
    std::vector<const void*> parts;
    std::vector<int64_t> widths, offsets;
    int64_t offset = 0;
    for (size_t k = 0; k < ctx.num_inputs(); ++k) {
      const Tensor& in = ctx.input(k);
      const int64_t width = in.shape()[axis] * inner;
      parts.push_back(in.raw_data());
      widths.push_back(width);
      offsets.push_back(offset);
      offset += width;
    }
    SegmentCopy copy;
    copy.parts_in = parts.data();
    copy.widths = widths.data();
    copy.offsets = offsets.data();
    copy.count = static_cast<int>(parts.size());
    copy.whole_out = out.raw_data();
    copy.outer = out.shape().num_elements(0, axis);
    copy.whole_width = offset;
    return check_launch("concat", launch_segment_copy(element_size(out), copy, stream_of(ctx)));
  });
}

// Split: every output is copied out of its slice of the input in one launch.
StatusOr<std::unique_ptr<Kernel>> create_split(const KernelDef& def) {
  return make_kernel([attrs = def.attrs](KernelContext& ctx) -> Status {
    const Tensor& in = ctx.input(0);
    const auto axis = static_cast<size_t>(axis_of(attrs, in.rank()));
    const int64_t inner = in.shape().num_elements(axis + 1, in.rank());
    std::vector<void*> parts;
    std::vector<int64_t> widths, offsets;
    int64_t offset = 0;
    size_t missing = ctx.num_outputs();  // the first output left unallocated
    for (size_t k = 0; k < ctx.num_outputs(); ++k) {
      Tensor& out = ctx.output(k);
      if (!out.defined()) {
        missing = std::min(missing, k);
        continue;
      }
      // An unallocated output's width is unknown, so the slices after it cannot be placed.
      if (missing < k) return internal_error("Split: output {} is not allocated", missing);
      const int64_t width = out.shape()[axis] * inner;
      parts.push_back(out.raw_data());
      widths.push_back(width);
      offsets.push_back(offset);
      offset += width;
    }
    SegmentCopy copy;
    copy.parts_out = parts.data();
    copy.widths = widths.data();
    copy.offsets = offsets.data();
    copy.count = static_cast<int>(parts.size());
    copy.whole_in = in.raw_data();
    copy.outer = in.shape().num_elements(0, axis);
    copy.whole_width = in.shape()[axis] * inner;
    return check_launch("split", launch_segment_copy(element_size(in), copy, stream_of(ctx)));
  });
}

}  // namespace

std::vector<KernelEntry> movement_kernels() {
  return {
      {"Reshape", create_view},   {"Flatten", create_view},  {"Squeeze", create_view},
      {"Unsqueeze", create_view}, {"Identity", create_view}, {"Transpose", create_transpose},
      {"Expand", create_expand},  {"Concat", create_concat}, {"Split", create_split},
  };
}

}  // namespace kestrel::runtime::cuda
