// The optimizer: the passes an engine build runs, in order, with what each changed.
//
//   fold_constants        build-time values (shape chains, grids) become constants
//   fuse_conv_batchnorm   BatchNormalization folded into the preceding Conv's weights
//   fuse_conv_activation  Conv + activation (incl. SiLU) -> FusedConv
//   fuse_conv_residual    FusedConv + Add of a same-shape tensor -> FusedConv with a residual input
//   to_channels_last      (option channels_last) convolutional regions run NHWC, transposes at
//                         their borders
//   stem_space_to_depth   (with channels_last) a stride-2 even-kernel convolution over <= 4
//                         channels becomes a stride-1 one over 2x2 pixel blocks as channels
//   fuse_concat           (option fuse_concat) a convolution feeding only a Concat along its
//                         channels hands its epilogue to the Concat (a FusedConcat), which writes
//                         the final values into the output's slice
//   fuse_elementwise      connected elementwise operators (YOLO's box decoding: Mul, Add, Pow,
//                         ...) -> one FusedElementwise; runs last
//
// Every pass is a small rewrite in its own file with a before/after test (tests/optimize/). The
// result verifies and computes the same function (checked on the real models in the tests).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"
#include "kestrel/ir/shape_inference.h"

namespace kestrel::optimize {

struct OptimizeOptions {
  // The engine accepts batches 1..max_batch; folding is exact over that range.
  int64_t max_batch = 32;
  // Fusions on (off: only folding and dead-code removal, e.g. to debug a fusion).
  bool fuse = true;
  // Run convolutions, pools and what lies between them channels-last (to_channels_last.h), after
  // the fusions; the graph's inputs and outputs stay NCHW.
  bool channels_last = false;
  // Move the epilogues of convolutions that feed Concats into the Concats (fuse_concat.h): for
  // backends whose convolution epilogue is a pass of its own (CUDA), not for oneDNN's.
  bool fuse_concat = false;
};

struct OptimizeReport {
  // (pass name, number of rewrites), in the order run.
  std::vector<std::pair<std::string, int>> passes;
  size_t nodes_before = 0;
  size_t nodes_after = 0;
  std::string to_string() const;
};

StatusOr<OptimizeReport> optimize_graph(ir::Graph& graph, ir::NodeEvaluator& evaluator,
                                        const OptimizeOptions& options = {});

}  // namespace kestrel::optimize
