// stem_space_to_depth: the stride-2 convolution with an even kernel over few input channels that
// opens YOLOv5 (6x6, stride 2, pad 2, 3 channels) becomes a stride-1 convolution with half the
// kernel over the space-to-depth rearrangement of its input (each 2x2 block of pixels as 4C
// channels) — the same sums, term for term:
//
//   y[o] = sum_{kh < k} x[2o - p + kh] w[kh]  =  sum_{a < k/2} X'[o - p/2 + a] w'[a],
//   X'[i] = (x[2i], x[2i + 1]),  w'[a] = (w[2a], w[2a + 1])            (per spatial axis)
//
// With 3 channels a tensor-core convolution multiplies mostly padding; with 12 it has 4 times the
// depth per pixel and a quarter of the pixels, which is what the GPU's kernels are built for. Runs
// on channels-last graphs (after to_channels_last): when the input comes straight from the NCHW
// graph input's Transpose, the rearrangement replaces that Transpose (one 6-D Transpose of the
// input instead of a 4-D one), otherwise it follows it.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

// Returns the number of convolutions rewritten. REQUIRES: annotated shapes (static H and W).
StatusOr<int> stem_space_to_depth(ir::Graph& g);

}  // namespace kestrel::optimize
