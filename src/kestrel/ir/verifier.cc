#include "kestrel/ir/verifier.h"

#include <unordered_set>

#include "kestrel/ir/op_schema.h"

namespace kestrel::ir {

Status verify_graph(const Graph& graph, NodeEvaluator* evaluator) {
  std::unordered_set<const Value*> defined;
  for (const Value* v : graph.values()) {
    if (v->is_graph_input() || v->has_constant()) defined.insert(v);
  }
  for (const Value* v : graph.inputs()) {
    if (v->dtype() == DType::kUndefined) {
      return invalid_argument("graph input '{}' has no element type", v->name());
    }
    if (!v->shape().has_rank()) {
      return invalid_argument("graph input '{}' has no shape", v->name());
    }
  }
  for (const Node* node : graph.nodes()) {
    KS_RETURN_IF_ERROR(check_node_against_schema(*node));
    for (const Value* in : node->inputs()) {
      if (in != nullptr && !defined.count(in)) {
        return failed_precondition(
            "{}: input '{}' is not computed before it (cycle or wrong order)", node->describe(),
            in->name());
      }
    }
    for (const Value* out : node->outputs()) {
      if (!defined.insert(out).second) {
        return invalid_argument("{}: output '{}' is computed twice", node->describe(), out->name());
      }
    }
  }
  if (graph.outputs().empty()) return invalid_argument("the graph has no outputs");
  for (const Value* v : graph.outputs()) {
    if (!defined.count(v))
      return invalid_argument("graph output '{}' is never computed", v->name());
  }
  InferenceOptions options;
  options.evaluator = evaluator;
  return infer_types(graph, options).status();
}

}  // namespace kestrel::ir
