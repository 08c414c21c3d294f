// Shape rules of the nn operators.
#include "kestrel/ir/op_families.h"

namespace kestrel::ir {

std::vector<OpSchema> nn_op_schemas() { return {}; }

}  // namespace kestrel::ir
