#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.rank(), 0);
  const std::vector<int64_t> own = contiguous_strides(in);
  const size_t lead = out.rank() - in.rank();
  for (size_t i = 0; i < in.rank(); ++i) {
    strides[lead + i] = in[i] == 1 ? 0 : own[i];
  }
  return strides;
}

}  // namespace kestrel::runtime::cpu
