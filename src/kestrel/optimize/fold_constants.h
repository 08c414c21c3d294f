// fold_constants: computes at build time everything that does not depend on the input data.
//
// A value is folded into a constant when shape inference, run with constant propagation for every
// batch size the engine will accept (each symbol bound to 1..max_batch), finds the same value each
// time. That is exact over the supported range, and it is what turns the Shape -> Gather -> Range
// -> Expand chains of dynamic exports (YOLOv5's grid construction) into plain constants.
//
// Reshape nodes whose target shape still depends on the batch (it comes from Shape(x)) get a
// constant target instead, using ONNX's "0 = copy this dimension from the input" rule; the shape
// computation then becomes dead. Dead nodes and values are removed at the end.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"
#include "kestrel/ir/shape_inference.h"

namespace kestrel::optimize {

struct FoldOptions {
  // Every symbol is probed at 1..max(2, max_batch).
  int64_t max_batch = 32;
  // Largest folded result, in elements (weights transformed at build time are folded too).
  int64_t max_elements = int64_t{1} << 24;
};

// Returns the number of values folded.
StatusOr<int> fold_constants(ir::Graph& graph, ir::NodeEvaluator& evaluator,
                             const FoldOptions& options = {});

}  // namespace kestrel::optimize
