// make_batch_dynamic: lets a model exported with a fixed batch of 1 run at any batch size.
//
// Most users export YOLO models with batch 1 baked in: the input is [1,3,640,640] and the detection
// head reshapes with constants such as [1,3,85,80,80] or [1,-1,85]. Simply feeding 4 images would
// fail, or worse, silently merge the batch into one image ([1,-1,85] -> [1,4*19200,85]). This pass
// makes the leading dimension of every rank>=2 input the symbol `batch`, then follows the batch
// through the graph and rewrites each constant that pins it:
//   - Reshape shape constants whose first entry is the batch become 0 ("copy from the input");
//   - Resize `sizes` constants that include the batch become the equivalent `scales`.
// It fails, naming the culprit, when an output does not end up with the batch as its first
// dimension, so a model it cannot fix is reported rather than mis-run.
#pragma once

#include <string>

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"
#include "kestrel/ir/shape_inference.h"

namespace kestrel::optimize {

// `evaluator` folds the constant parts of the graph while the batch is followed (see
// ir/shape_inference.h); it may be null for graphs whose shape inputs are all constants.
Status make_batch_dynamic(ir::Graph& graph, ir::NodeEvaluator* evaluator,
                          const std::string& symbol = "batch");

}  // namespace kestrel::optimize
