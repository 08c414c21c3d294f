#include "kestrel/runtime/kernel.h"

#include <fmt/format.h>

namespace kestrel::runtime {

std::string KernelDef::describe() const {
  return node_name.empty() ? op_type : fmt::format("{} '{}'", op_type, node_name);
}

Status KernelContext::allocate_output(size_t i, DType dtype, const Shape& shape) {
  KS_ASSIGN_OR_RETURN(outputs_[i], allocate_(dtype, shape));
  return Status();
}

}  // namespace kestrel::runtime
