// fuse_conv_batchnorm: Conv followed by an inference BatchNormalization becomes one Conv.
//
//   y = gamma * (conv(x, W) + b - mean) / sqrt(var + eps) + beta
//     = conv(x, W * s) + (b - mean) * s + beta,   s = gamma / sqrt(var + eps) per output channel
//
// Applies when W, b and the four BN parameters are constants and the Conv's output feeds only the
// BatchNormalization. The arithmetic is done in double and stored in the weights' element type.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

// Returns the number of BatchNormalizations folded.
StatusOr<int> fuse_conv_batchnorm(ir::Graph& graph);

}  // namespace kestrel::optimize
