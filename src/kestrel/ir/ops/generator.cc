// Shape rules of the generator operators.
#include "kestrel/ir/op_families.h"

namespace kestrel::ir {

std::vector<OpSchema> generator_op_schemas() { return {}; }

}  // namespace kestrel::ir
