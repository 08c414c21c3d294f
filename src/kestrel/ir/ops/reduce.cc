// Shape rules of the reduce operators.
#include "kestrel/ir/op_families.h"

namespace kestrel::ir {

std::vector<OpSchema> reduce_op_schemas() { return {}; }

}  // namespace kestrel::ir
