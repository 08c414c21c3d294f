// Shape rules of the movement operators.
#include "kestrel/ir/op_families.h"

namespace kestrel::ir {

std::vector<OpSchema> movement_op_schemas() { return {}; }

}  // namespace kestrel::ir
