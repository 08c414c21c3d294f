// fuse_concat: a convolution whose only consumer is a Concat along its channel axis hands its
// epilogue (bias, activation, residual) to the Concat, which becomes a FusedConcat
// (ir/ops/movement.cc) and writes each part, epilogue applied, straight into its slice of the
// output.
//
//   Y1 = FusedConv(X1, W1, B1; Silu)                 Y1' = FusedConv(X1, W1)        (raw)
//   Y2 = FusedConv(X2, W2, B2; Silu, residual R)  => Y2' = FusedConv(X2, W2)        (raw)
//   Z  = Concat(Y1, Y2, P; axis = channels)          Z   = FusedConcat(Y1', Y2', P, B1, B2, R)
//
// On the GPU this is how Concat disappears as a pass of its own: cuDNN writes the raw convolution,
// and one kernel reads it once and writes the final values into the concatenation, where before
// the epilogue read and wrote every output and the Concat copied it again. Inputs that are not
// such convolutions (a pool, a Resize, a convolution with other consumers) are copied as they are.
// Worth it where the convolution's own epilogue is a separate pass: cuDNN's channels-first
// convolutions. The CPU's oneDNN and cuDNN's channels-last float16 graph kernels fuse epilogues
// into the convolution, so the builder runs this pass for channels-first GPU engines only.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

// Returns the number of Concats rewritten. REQUIRES: annotated shapes (the ranks of the Concats'
// outputs).
StatusOr<int> fuse_concat(ir::Graph& g);

}  // namespace kestrel::optimize
