// Graph-level type and shape inference.
//
// infer_types() walks the graph in topological order and applies each operator's shape rule with
// every symbol bound to a concrete size (e.g. batch = 1). When a NodeEvaluator is given, nodes
// whose inputs are all known and small are also evaluated, so the Shape -> Gather -> Concat ->
// Reshape chains of dynamic exports resolve to concrete shapes (constant propagation).
//
// annotate_symbolic_shapes() runs that inference under several bindings of each symbol and writes
// back, on every Value, the shape as an affine function of the symbols where it is one ("batch",
// "3*batch"), a constant where it does not depend on them, and "?" otherwise.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/ir/graph.h"

namespace kestrel::ir {

// Runs one node on host tensors. The engine implements it with the CPU backend; it is injected so
// that ir/ does not depend on any runtime.
class NodeEvaluator {
 public:
  virtual ~NodeEvaluator() = default;
  // Outputs in the node's output order. `inputs` holds an undefined Tensor for omitted inputs.
  virtual StatusOr<std::vector<Tensor>> evaluate(const Node& node,
                                                 std::span<const Tensor> inputs) = 0;
};

struct InferredValue {
  DType dtype = DType::kUndefined;
  // Concrete dimensions; -1 where only run time can tell. Empty with known_rank=false when the
  // shape could not be inferred at all (downstream of a data-dependent operator).
  std::vector<int64_t> dims;
  bool known_rank = false;
  // The value itself when it is a constant or was folded.
  std::optional<Tensor> value;

  bool is_static() const;  // rank known and no -1
};

struct InferenceOptions {
  // Sizes for the symbols of the graph inputs' shapes; unbound symbols default to 1.
  std::map<std::string, int64_t> symbols;
  NodeEvaluator* evaluator = nullptr;
  // Largest result, in elements, that is evaluated during inference.
  int64_t max_fold_elements = 1 << 18;
};

using InferredTypes = std::unordered_map<const Value*, InferredValue>;

// Infers every value's type. Fails (naming the node) when a shape rule rejects its inputs or an
// operator is unknown.
StatusOr<InferredTypes> infer_types(const Graph& graph, const InferenceOptions& options);

// Incremental inference, for passes that rewrite nodes while they infer: initial_types() seeds the
// constants and graph inputs, infer_step() adds one node's outputs (folding them when it can).
// infer_types() is initial_types() followed by infer_step() on every node in order.
StatusOr<InferredTypes> initial_types(const Graph& graph, const InferenceOptions& options);
Status infer_step(const Node& node, InferredTypes& types, const InferenceOptions& options);

// Runs one node's shape rule on concrete inputs: the engine's per-run path. `values` holds the
// host values of the schema's value inputs (null elsewhere).
StatusOr<std::vector<InferredValue>> infer_node(const Node& node, std::span<const DType> dtypes,
                                                std::span<const Shape> shapes,
                                                std::span<const Tensor* const> values);

// Floating-point operations of every node under `types` (from infer_types), by the operators' FLOP
// rules; nodes whose shapes are not static count 0.
StatusOr<std::unordered_map<const Node*, int64_t>> count_flops(const Graph& graph,
                                                               const InferredTypes& types);

// The symbols used in the graph inputs' shapes.
std::vector<std::string> input_symbols(const Graph& graph);

// Writes symbolic types onto every Value of `graph` (see the top of this file).
Status annotate_symbolic_shapes(Graph& graph, NodeEvaluator* evaluator);

}  // namespace kestrel::ir
