// fuse_conv_activation and fuse_conv_residual: put the elementwise work that follows a convolution
// into the convolution's epilogue, where it costs no extra pass over memory.
//
// The result is Kestrel's FusedConv operator (ir/ops/fused.cc):
//   FusedConv(X, W, B?, Z?) = activation(conv(X, W) + B) + Z
// with `activation` one of Relu, LeakyRelu (alpha), Sigmoid, HardSigmoid (alpha, beta), HardSwish,
// Clip (alpha = min, beta = max) and Silu (x * sigmoid(x), which exports spell Mul(x, Sigmoid(x))).
//
// fuse_conv_activation turns Conv -> activation into FusedConv when the Conv's output feeds only
// the activation (for Silu: only the Sigmoid and the Mul), also across Reshapes and Transposes
// that only rearrange the output for the activation (Conv -> Reshape -> Transpose -> Sigmoid in
// YOLO's heads; Sigmoid, Relu and HardSwish). fuse_conv_residual then folds an Add of
// a FusedConv's output and another tensor of the same shape (a residual connection) into Z, when
// the FusedConv's output feeds only that Add.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

// Both return the number of nodes fused.
StatusOr<int> fuse_conv_activation(ir::Graph& graph);
// REQUIRES: value types annotated (ir::annotate_symbolic_shapes), to prove shapes are equal.
StatusOr<int> fuse_conv_residual(ir::Graph& graph);

}  // namespace kestrel::optimize
