#include "kestrel/optimize/fold_constants.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace kestrel::optimize {
namespace {

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0);
}

// A constant Reshape target for `node`: each entry either is the same for every probe, or equals
// the input's dimension at the same position for every probe (the batch) and becomes 0, ONNX's
// "copy from the input". Nullopt when the computed target is anything else.
std::optional<std::vector<int64_t>> static_reshape_target(
    const ir::Node& node, const std::vector<ir::InferredTypes>& probes) {
  if (node.attrs().get_int("allowzero", 0) != 0) return std::nullopt;
  std::vector<std::vector<int64_t>> targets, inputs;
  for (const ir::InferredTypes& t : probes) {
    auto in = t.find(node.input(0));
    auto shape = t.find(node.input(1));
    if (in == t.end() || shape == t.end() || !shape->second.value || !in->second.is_static()) {
      return std::nullopt;
    }
    StatusOr<std::vector<int64_t>> v = shape->second.value->to_int64_vector();
    if (!v.ok() || (!targets.empty() && v->size() != targets[0].size())) return std::nullopt;
    targets.push_back(*v);
    inputs.push_back(in->second.dims);
  }
  std::vector<int64_t> result = targets[0];
  for (size_t i = 0; i < result.size(); ++i) {
    bool same = true, copies = true;
    for (size_t p = 0; p < targets.size(); ++p) {
      same = same && targets[p][i] == targets[0][i];
      copies = copies && i < inputs[p].size() && targets[p][i] == inputs[p][i];
    }
    if (same) continue;
    if (!copies) return std::nullopt;
    result[i] = 0;
  }
  return result;
}

}  // namespace

StatusOr<int> fold_constants(ir::Graph& graph, ir::NodeEvaluator& evaluator,
                             const FoldOptions& options) {
  KS_RETURN_IF_ERROR(graph.sort_topologically());
  const std::vector<std::string> symbols = ir::input_symbols(graph);
  // At least two sizes, so that a symbolic dimension is never mistaken for a constant.
  const int64_t probes_per_symbol = symbols.empty() ? 1 : std::max<int64_t>(2, options.max_batch);
  std::vector<ir::InferredTypes> probes;
  for (int64_t b = 1; b <= probes_per_symbol; ++b) {
    ir::InferenceOptions inference;
    inference.evaluator = &evaluator;
    inference.max_fold_elements = options.max_elements;
    for (const std::string& s : symbols) inference.symbols[s] = b;
    KS_ASSIGN_OR_RETURN(ir::InferredTypes t, ir::infer_types(graph, inference));
    probes.push_back(std::move(t));
  }

  int folded = 0;
  for (ir::Node* node : graph.nodes()) {
    for (ir::Value* out : node->outputs()) {
      if (out->uses().empty() && !out->is_graph_output()) continue;
      const ir::InferredValue& first = probes[0].at(out);
      bool constant = first.value.has_value();
      for (size_t p = 1; constant && p < probes.size(); ++p) {
        const ir::InferredValue& other = probes[p].at(out);
        constant = other.value && same_tensor(*first.value, *other.value);
      }
      if (!constant) continue;
      // The folded value must not alias storage a kernel may still own: copy it.
      KS_ASSIGN_OR_RETURN(Tensor copy, first.value->clone());
      graph.make_constant(out, std::move(copy));
      ++folded;
    }
  }
  for (ir::Node* node : graph.nodes()) {
    if (node->op_type() != "Reshape" || node->input(1)->has_constant()) continue;
    if (std::optional<std::vector<int64_t>> target = static_reshape_target(*node, probes)) {
      ir::Value* c = graph.add_constant(
          graph.unique_name(node->name() + "_target"),
          Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(target->size())}, *target));
      node->set_input(1, c);
      ++folded;
    }
  }
  graph.remove_dead();
  return folded;
}

}  // namespace kestrel::optimize
