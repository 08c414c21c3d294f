// Reference kernels of Gather and GatherElements.
//
// Indices are data: a negative one counts from the end of the axis, and one outside [-dim, dim) is
// an INVALID_ARGUMENT error naming it, never a read out of bounds. Elements are moved as bytes.
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

using IndexTypes = TypeList<int32_t, int64_t>;

// Index `i` made non-negative against `dim`, or an error when it is out of range.
StatusOr<int64_t> checked_index(int64_t i, int64_t dim) {
  if (i < -dim || i >= dim) {
    return invalid_argument("index {} is out of range for an axis of size {}", i, dim);
  }
  return i < 0 ? i + dim : i;
}

// Data of any element type moves as bytes. The element types may be unknown when the engine is
// built (downstream of a data-dependent shape); the indices' type is then dispatched at run time.
Status check_dtypes(const KernelDef& def) {
  const DType indices = def.input_dtypes[1];
  if (indices != DType::kUndefined && !dtype_in<IndexTypes>(indices)) {
    return unimplemented("{}: no CPU kernel for indices of type {}", def.describe(), indices);
  }
  return Status();
}

size_t normalized_axis(int64_t axis, size_t rank) {
  return static_cast<size_t>(axis < 0 ? axis + static_cast<int64_t>(rank) : axis);
}

// Output [outer, indices..., inner] from data [outer, dim, inner]: blocks of `inner` elements.
StatusOr<std::unique_ptr<Kernel>> create_gather(const KernelDef& def) {
  KS_RETURN_IF_ERROR(check_dtypes(def));
  const int64_t axis_attr = def.attrs.get_int("axis", 0);
  return make_kernel([axis_attr](KernelContext& ctx) -> Status {
    const Tensor& data = ctx.input(0);
    const Tensor& indices = ctx.input(1);
    Tensor& out = ctx.output(0);
    const size_t axis = normalized_axis(axis_attr, data.rank());
    const int64_t outer = data.shape().num_elements(0, axis);
    const int64_t dim = data.shape()[axis];
    const size_t block = static_cast<size_t>(data.shape().num_elements(axis + 1, data.rank())) *
                         dtype_size(data.dtype());
    return dispatch_dtype<IndexTypes>(indices.dtype(), [&]<typename I>(TypeTag<I>) -> Status {
      const I* idx = indices.data<I>();
      const int64_t count = indices.num_elements();
      std::vector<int64_t> rows(static_cast<size_t>(count));
      for (int64_t k = 0; k < count; ++k) {
        KS_ASSIGN_OR_RETURN(rows[k], checked_index(static_cast<int64_t>(idx[k]), dim));
      }
      if (block == 0) return Status();
      const auto* src = static_cast<const std::byte*>(data.raw_data());
      auto* dst = static_cast<std::byte*>(out.raw_data());
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t row : rows) {
          std::memcpy(dst, src + (o * dim + row) * block, block);
          dst += block;
        }
      }
      return Status();
    });
  });
}

template <size_t N, typename I>
Status gather_elements(const Tensor& data, const Tensor& indices, Tensor& out, size_t axis) {
  // Walk the indices' shape reading data at the same position, except along the axis, where the
  // index decides.
  std::vector<int64_t> strides = contiguous_strides(data.shape());
  const int64_t axis_stride = strides[axis];
  const int64_t dim = data.shape()[axis];
  strides[axis] = 0;
  const I* idx = indices.data<I>();
  const auto* src = static_cast<const std::byte*>(data.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  Status status;
  for_each_broadcast<1>(indices.shape(), {std::move(strides)},
                        [&](int64_t i, const std::array<int64_t, 1>& o) {
                          if (!status.ok()) return;
                          StatusOr<int64_t> k = checked_index(static_cast<int64_t>(idx[i]), dim);
                          if (!k.ok()) {
                            status = k.status();
                            return;
                          }
                          std::memcpy(dst + i * N, src + (o[0] + *k * axis_stride) * N, N);
                        });
  return status;
}

StatusOr<std::unique_ptr<Kernel>> create_gather_elements(const KernelDef& def) {
  KS_RETURN_IF_ERROR(check_dtypes(def));
  const int64_t axis_attr = def.attrs.get_int("axis", 0);
  return make_kernel([axis_attr](KernelContext& ctx) -> Status {
    const Tensor& data = ctx.input(0);
    const Tensor& indices = ctx.input(1);
    Tensor& out = ctx.output(0);
    const size_t axis = normalized_axis(axis_attr, data.rank());
    return dispatch_dtype<IndexTypes>(indices.dtype(), [&]<typename I>(TypeTag<I>) -> Status {
      switch (dtype_size(data.dtype())) {
        case 1:
          return gather_elements<1, I>(data, indices, out, axis);
        case 2:
          return gather_elements<2, I>(data, indices, out, axis);
        case 4:
          return gather_elements<4, I>(data, indices, out, axis);
        case 8:
          return gather_elements<8, I>(data, indices, out, axis);
      }
      return unimplemented("element type {} is not supported here", data.dtype());
    });
  });
}

}  // namespace

std::vector<KernelEntry> gather_kernels() {
  return {
      KernelEntry{"Gather", create_gather},
      KernelEntry{"GatherElements", create_gather_elements},
  };
}

}  // namespace kestrel::runtime::cpu
