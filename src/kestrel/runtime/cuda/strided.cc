#include "kestrel/runtime/cuda/strided.h"

namespace kestrel::runtime::cuda {

StatusOr<StridedShape> broadcast_layout(const Shape& out, std::span<const Shape> operands) {
  if (out.rank() > static_cast<size_t>(kMaxRank) || operands.size() > 3) {
    return unimplemented("more than {} dimensions in a CUDA elementwise kernel", kMaxRank);
  }
  StridedShape s;
  s.rank = static_cast<int>(out.rank());
  for (size_t d = 0; d < out.rank(); ++d) s.dims[d] = out[d];
  for (size_t k = 0; k < operands.size(); ++k) {
    const Shape& in = operands[k];
    const std::vector<int64_t> own = contiguous_strides(in);
    const size_t lead = out.rank() - in.rank();
    for (size_t i = 0; i < in.rank(); ++i) s.strides[k][lead + i] = in[i] == 1 ? 0 : own[i];
  }
  if (out.rank() == 0) {  // scalars: one element, rank-1 view
    s.rank = 1;
    s.dims[0] = 1;
  }
  return s;
}

}  // namespace kestrel::runtime::cuda
