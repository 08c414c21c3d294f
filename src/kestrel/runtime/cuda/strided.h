// Host-side construction of StridedShape (launch.h) for broadcasts and permutations.
// Internal to runtime/cuda/.
#pragma once

#include <span>

#include "kestrel/base/shape.h"
#include "kestrel/runtime/cuda/cuda_kernels.h"
#include "kestrel/runtime/cuda/launch.h"

namespace kestrel::runtime::cuda {

// `out` with operand k's strides set so that operand k (of shape operands[k]) broadcasts to it.
// INVALID_ARGUMENT beyond kMaxRank dimensions.
StatusOr<StridedShape> broadcast_layout(const Shape& out, std::span<const Shape> operands);

}  // namespace kestrel::runtime::cuda
