#include "kestrel/optimize/optimizer.h"

#include <fmt/format.h>

#include "kestrel/ir/verifier.h"
#include "kestrel/optimize/fold_constants.h"
#include "kestrel/optimize/fuse_concat.h"
#include "kestrel/optimize/fuse_conv_activation.h"
#include "kestrel/optimize/fuse_conv_batchnorm.h"
#include "kestrel/optimize/fuse_elementwise.h"
#include "kestrel/optimize/stem_space_to_depth.h"
#include "kestrel/optimize/to_channels_last.h"

namespace kestrel::optimize {

std::string OptimizeReport::to_string() const {
  std::string s = fmt::format("{} -> {} nodes:", nodes_before, nodes_after);
  for (const auto& [name, count] : passes) s += fmt::format(" {} {},", name, count);
  s.pop_back();
  return s;
}

StatusOr<OptimizeReport> optimize_graph(ir::Graph& graph, ir::NodeEvaluator& evaluator,
                                        const OptimizeOptions& options) {
  OptimizeReport report;
  report.nodes_before = graph.num_nodes();
  auto record = [&](const char* name, StatusOr<int> count) -> Status {
    if (!count.ok()) return count.status().with_context(name);
    report.passes.emplace_back(name, *count);
    return graph.sort_topologically();
  };
  FoldOptions fold;
  fold.max_batch = options.max_batch;
  KS_RETURN_IF_ERROR(record("fold_constants", fold_constants(graph, evaluator, fold)));
  if (options.fuse) {
    KS_RETURN_IF_ERROR(record("fuse_conv_batchnorm", fuse_conv_batchnorm(graph)));
    KS_RETURN_IF_ERROR(record("fuse_conv_activation", fuse_conv_activation(graph)));
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(graph, &evaluator));
    KS_RETURN_IF_ERROR(record("fuse_conv_residual", fuse_conv_residual(graph)));
  }
  if (options.channels_last) {
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(graph, &evaluator));
    KS_RETURN_IF_ERROR(record("to_channels_last", to_channels_last(graph)));
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(graph, &evaluator));
    KS_RETURN_IF_ERROR(record("stem_space_to_depth", stem_space_to_depth(graph)));
  }
  if (options.fuse && options.fuse_concat) {
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(graph, &evaluator));
    KS_RETURN_IF_ERROR(record("fuse_concat", fuse_concat(graph)));
  }
  if (options.fuse) {
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(graph, &evaluator));
    KS_RETURN_IF_ERROR(record("fuse_elementwise", fuse_elementwise(graph)));
  }
  KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(graph, &evaluator));
  KS_RETURN_IF_ERROR(ir::verify_graph(graph, &evaluator));
  report.nodes_after = graph.num_nodes();
  return report;
}

}  // namespace kestrel::optimize
