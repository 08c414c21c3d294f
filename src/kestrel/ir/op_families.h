// The operator families whose schemas make up the registry (op_schema.cc). One file under ir/ops/
// per family; each returns its schemas. Internal to ir/.
#pragma once

#include <vector>

#include "kestrel/ir/op_schema.h"

namespace kestrel::ir {

std::vector<OpSchema> unary_op_schemas();      // ops/unary.cc: Relu, Sigmoid, Cast, ...
std::vector<OpSchema> binary_op_schemas();     // ops/binary.cc: Add, Mul, Equal, Where, Min, ...
std::vector<OpSchema> movement_op_schemas();   // ops/movement.cc: Reshape, Concat, Slice, ...
std::vector<OpSchema> generator_op_schemas();  // ops/generator.cc: Constant, Range, Shape, ...
std::vector<OpSchema> nn_op_schemas();         // ops/nn.cc: Conv, pools, Gemm, Resize, ...
std::vector<OpSchema> reduce_op_schemas();     // ops/reduce.cc: ReduceMean, ArgMax, TopK, NMS
std::vector<OpSchema> fused_op_schemas();      // ops/fused.cc: FusedElementwise

}  // namespace kestrel::ir
