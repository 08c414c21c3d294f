#include "kestrel/engine/builder.h"

#include <fmt/format.h>

#include "kestrel/engine/backends.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/optimize/append_nms.h"
#include "kestrel/optimize/convert_precision.h"

namespace kestrel::engine {

std::string BuildReport::to_string() const {
  std::string s = optimizer.to_string();
  if (converted_to_float16 > 0) s += fmt::format(", {} constants to float16", converted_to_float16);
  if (converted_to_float32 > 0) s += fmt::format(", {} constants to float32", converted_to_float32);
  if (tf32_convolutions > 0) s += fmt::format(", TF32 in {} convolutions", tf32_convolutions);
  return s;
}

std::string precision_name(const BuildOptions& options) {
  return options.tf32 && options.precision == "fp32" ? "tf32" : options.precision;
}

int allow_tf32(ir::Graph& graph) {
  int marked = 0;
  for (ir::Node* n : graph.nodes()) {
    if (n->op_type() != "Conv" && n->op_type() != "FusedConv") continue;
    n->attrs().set("kestrel_tf32", int64_t{1});
    ++marked;
  }
  return marked;
}

StatusOr<std::unique_ptr<Engine>> build_engine(std::unique_ptr<ir::Graph> graph,
                                               const BuildOptions& options, BuildReport* report) {
  BuildReport local;
  BuildReport& r = report ? *report : local;
  if (options.precision != "fp32" && options.precision != "fp16") {
    return invalid_argument("precision must be fp32 or fp16, not '{}'", options.precision);
  }
  if (options.tf32 && options.precision != "fp32") {
    return invalid_argument("TF32 is a float32 mode: it cannot be combined with {}",
                            options.precision);
  }
  if (options.layout != "auto" && options.layout != "nchw" && options.layout != "nhwc") {
    return invalid_argument("layout must be auto, nchw or nhwc, not '{}'", options.layout);
  }
  const bool on_gpu =
      options.engine.backend == "cuda" || (options.engine.backend == "auto" && cuda_available());
  const bool channels_last =
      options.layout == "nhwc" ||
      (options.layout == "auto" && options.optimize && on_gpu &&
       (options.precision == "fp16" || (options.tf32 && options.cudnn_graph)));
  if (channels_last && !options.optimize) {
    return invalid_argument("the nhwc layout needs the optimizer");
  }
  std::unique_ptr<ir::NodeEvaluator> evaluator = make_cpu_evaluator();
  KS_RETURN_IF_ERROR(graph->sort_topologically());
  if (options.optimize) {
    optimize::OptimizeOptions o;
    o.max_batch = options.max_batch;
    o.channels_last = channels_last;
    // Channels-last float16 convolutions fuse their epilogue in cuDNN's graph kernels, and a plain
    // Concat then moves the same bytes a FusedConcat would, faster; channels-first ones (float32)
    // keep a separate epilogue pass, which FusedConcat saves where a Concat follows.
    o.fuse_concat = on_gpu && !channels_last;
    KS_ASSIGN_OR_RETURN(r.optimizer, optimize::optimize_graph(*graph, *evaluator, o));
  } else {
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(*graph, evaluator.get()));
  }
  // After the optimizer, like the float16 conversion: its folding has turned the shape
  // computations of dynamic exports (Shape, Range, Cast chains) into constants.
  if (options.precision == "fp32" && optimize::computes_in_float16(*graph)) {
    KS_ASSIGN_OR_RETURN(r.converted_to_float32, optimize::convert_to_float32(*graph));
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(*graph, evaluator.get()));
  }
  if (options.precision == "fp16") {
    KS_ASSIGN_OR_RETURN(r.converted_to_float16,
                        optimize::convert_to_float16(*graph, {options.keep_float32}));
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(*graph, evaluator.get()));
  }
  // After the optimizer: its fusions make the FusedConv nodes that must carry the mark.
  if (options.tf32) r.tf32_convolutions = allow_tf32(*graph);
  if (!options.cudnn_graph) {
    for (ir::Node* n : graph->nodes()) {
      if ((n->op_type() == "Conv" || n->op_type() == "FusedConv") &&
          !n->attrs().has("kestrel_kernel")) {
        n->attrs().set("kestrel_kernel", std::string("no_graph"));
      }
    }
  }
  if (options.nms) {
    KS_RETURN_IF_ERROR(optimize::append_yolo_nms(*graph, *options.nms));
    KS_RETURN_IF_ERROR(ir::annotate_symbolic_shapes(*graph, evaluator.get()));
  }
  return Engine::create(std::move(graph), options.engine);
}

}  // namespace kestrel::engine
