// fuse_elementwise: connected elementwise operators become one FusedElementwise node
// (ir/ops/fused.cc), which reads each input once and writes only the result: the intermediate
// tensors of a chain like YOLO's box decoding (Mul, Add, Mul; Mul, Pow, Mul) never reach memory.
//
// A group is a connected set of elementwise float operators (the arithmetic Add, Sub, Mul, Div,
// Pow, two-input Min/Max, and Sigmoid, Relu, LeakyRelu, Tanh, Exp, Log, Neg, Abs, Sqrt,
// Reciprocal, Floor, Ceil, Round, HardSigmoid, HardSwish, Clip with constant bounds) of one
// element type, float32 or float16, where every value computed inside it except the group's result
// is used only inside the group (once or several times: x feeding both a Sigmoid and a Mul is
// fine) and is not a graph output. Its external inputs must broadcast to the result's shape on
// the annotated symbolic shapes. One-element constants (Mul by 2, Pow's exponent, whatever their
// element type) become Const instructions instead of inputs, except where they alone give the
// result its rank; other constants are inputs like any tensor. Groups of two or more operators are
// replaced. A group stops growing at 8 inputs and 16 operators, which keeps the CUDA kernel's
// program in registers.
//
// The optimizer runs it last, after the convolution fusions (FusedConv takes its own activation
// and residual Add first) and after the layout passes.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

// Returns the number of FusedElementwise nodes created. REQUIRES: value types annotated
// (ir::annotate_symbolic_shapes). Leaves the nodes in topological order.
StatusOr<int> fuse_elementwise(ir::Graph& graph);

}  // namespace kestrel::optimize
