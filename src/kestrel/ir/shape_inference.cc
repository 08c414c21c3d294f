#include "kestrel/ir/shape_inference.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <set>

#include "kestrel/ir/op_schema.h"

namespace kestrel::ir {

bool InferredValue::is_static() const {
  return known_rank && std::none_of(dims.begin(), dims.end(), [](int64_t d) { return d < 0; });
}

StatusOr<std::vector<InferredValue>> infer_node(const Node& node, std::span<const DType> dtypes,
                                                std::span<const Shape> shapes,
                                                std::span<const Tensor* const> values) {
  const OpSchema* schema = find_op_schema(node.op_type());
  if (schema == nullptr) {
    return unimplemented("unsupported operator '{}' (node '{}')", node.op_type(), node.name());
  }
  InferContext ctx(node, dtypes, shapes, values);
  KS_RETURN_IF_ERROR(schema->infer(ctx));
  std::vector<InferredValue> out(node.num_outputs());
  for (size_t i = 0; i < out.size(); ++i) {
    const InferContext::Output& o = ctx.outputs()[i];
    if (!o.set) {
      // Optional outputs a rule leaves unset are legal only when nothing consumes them.
      const Value* v = node.output(i);
      if (!v->uses().empty() || v->is_graph_output()) {
        return unimplemented("{}: optional output {} ('{}') is not supported", node.describe(), i,
                             v->name());
      }
      continue;
    }
    bool dynamic = false;
    for (int64_t d : o.dims) {
      if (d < -1) return internal_error("{}: shape rule produced dimension {}", node.describe(), d);
      dynamic |= d == -1;
    }
    if (!dynamic) {
      StatusOr<int64_t> n = checked_num_elements(o.dims);
      if (!n.ok()) return n.status().with_context(node.describe());
    }
    out[i].dtype = o.dtype;
    out[i].dims = o.dims;
    out[i].known_rank = true;
  }
  return out;
}

std::vector<std::string> input_symbols(const Graph& graph) {
  std::set<std::string> names;
  for (const Value* v : graph.inputs()) {
    if (!v->shape().has_rank()) continue;
    for (const SymDim& d : v->shape().dims()) {
      if (d.is_symbolic()) names.insert(d.symbol_name());
    }
  }
  return {names.begin(), names.end()};
}

StatusOr<InferredTypes> initial_types(const Graph& graph, const InferenceOptions& options) {
  std::map<std::string, int64_t> bindings = options.symbols;
  for (const std::string& s : input_symbols(graph)) bindings.emplace(s, 1);

  InferredTypes types;
  for (const Value* v : graph.values()) {
    if (!v->has_constant()) continue;
    const Tensor& c = v->constant();
    types[v] = InferredValue{c.dtype(), c.shape().vec(), true, c};
  }
  for (const Value* v : graph.inputs()) {
    if (v->has_constant()) continue;
    InferredValue iv;
    iv.dtype = v->dtype();
    if (std::optional<Shape> s = v->shape().evaluate(bindings)) {
      StatusOr<int64_t> count = checked_num_elements(s->dims());
      if (!count.ok())
        return count.status().with_context(fmt::format("graph input '{}'", v->name()));
      iv.dims = s->vec();
      iv.known_rank = true;
    } else if (v->shape().has_rank()) {
      return invalid_argument("graph input '{}' has shape {} with an unknown dimension", v->name(),
                              v->shape().to_string());
    }
    types[v] = std::move(iv);
  }
  return types;
}

Status infer_step(const Node& node, InferredTypes& types, const InferenceOptions& options) {
  const OpSchema* schema = find_op_schema(node.op_type());
  if (schema == nullptr) {
    return unimplemented("unsupported operator '{}' (node '{}')", node.op_type(), node.name());
  }
  const size_t n = node.num_inputs();
  std::vector<DType> dtypes(n, DType::kUndefined);
  std::vector<Shape> shapes(n);
  std::vector<const Tensor*> values(n, nullptr);
  bool inferable = true, all_values_known = true;
  for (size_t i = 0; i < n; ++i) {
    const Value* in = node.input(i);
    if (in == nullptr) continue;
    auto it = types.find(in);
    if (it == types.end()) {
      return failed_precondition("{}: input '{}' is used before it is computed", node.describe(),
                                 in->name());
    }
    const InferredValue& iv = it->second;
    dtypes[i] = iv.dtype;
    if (iv.dtype == DType::kUndefined || !iv.is_static()) {
      inferable = false;
      continue;
    }
    shapes[i] = Shape(iv.dims);
    if (iv.value) {
      values[i] = &*iv.value;
    } else if (!schema->is_shape_only_input(i)) {
      all_values_known = false;
      if (schema->is_value_input(i)) inferable = false;
    }
  }
  if (!inferable) {
    // Downstream of a data-dependent size: only run time can tell.
    for (const Value* out : node.outputs()) types[out] = InferredValue{};
    return Status();
  }
  KS_ASSIGN_OR_RETURN(std::vector<InferredValue> outs, infer_node(node, dtypes, shapes, values));

  bool fold = options.evaluator != nullptr && all_values_known;
  for (const InferredValue& o : outs) {
    fold =
        fold && o.is_static() && checked_num_elements(o.dims).value() <= options.max_fold_elements;
  }
  if (fold) {
    std::vector<Tensor> inputs(n);
    for (size_t i = 0; i < n; ++i) {
      if (values[i]) {
        inputs[i] = *values[i];
      } else if (dtypes[i] != DType::kUndefined) {
        // A shape-only input: its shape without data is all the kernel reads.
        inputs[i] = Tensor::wrap(dtypes[i], shapes[i], nullptr, nullptr);
      }
    }
    KS_ASSIGN_OR_RETURN(std::vector<Tensor> results, options.evaluator->evaluate(node, inputs));
    for (size_t i = 0; i < outs.size() && i < results.size(); ++i) {
      if (results[i].defined()) outs[i].value = std::move(results[i]);
    }
  }
  for (size_t i = 0; i < outs.size(); ++i) types[node.output(i)] = std::move(outs[i]);
  return Status();
}

StatusOr<InferredTypes> infer_types(const Graph& graph, const InferenceOptions& options) {
  KS_ASSIGN_OR_RETURN(InferredTypes types, initial_types(graph, options));
  for (const Node* node : graph.nodes()) KS_RETURN_IF_ERROR(infer_step(*node, types, options));
  return types;
}

StatusOr<std::unordered_map<const Node*, int64_t>> count_flops(const Graph& graph,
                                                               const InferredTypes& types) {
  std::unordered_map<const Node*, int64_t> flops;
  for (const Node* node : graph.nodes()) {
    const OpSchema* schema = find_op_schema(node->op_type());
    const size_t n = node->num_inputs();
    std::vector<DType> dtypes(n, DType::kUndefined);
    std::vector<Shape> shapes(n);
    std::vector<const Tensor*> values(n, nullptr);
    bool known = schema != nullptr;
    for (size_t i = 0; i < n && known; ++i) {
      if (!node->has_input(i)) continue;
      auto it = types.find(node->input(i));
      known = it != types.end() && it->second.is_static() && it->second.dtype != DType::kUndefined;
      if (!known) break;
      dtypes[i] = it->second.dtype;
      shapes[i] = Shape(it->second.dims);
      if (it->second.value) values[i] = &*it->second.value;
      if (schema->is_value_input(i) && values[i] == nullptr) known = false;
    }
    if (!known) {
      flops[node] = 0;
      continue;
    }
    InferContext ctx(*node, dtypes, shapes, values);
    KS_RETURN_IF_ERROR(schema->infer(ctx));
    int64_t f = 0;
    if (schema->flops) {
      f = schema->flops(ctx);
    } else {
      for (const auto& o : ctx.outputs()) {
        int64_t count = 1;
        for (int64_t d : o.dims) count *= std::max<int64_t>(d, 0);
        if (o.set) f += count;
      }
    }
    flops[node] = f;
  }
  return flops;
}

namespace {

// Probe sizes for the symbols: primes above 1, so that no symbol accidentally broadcasts and the
// affine fit has three distinct points.
constexpr int64_t kProbes[3] = {5, 7, 11};

}  // namespace

Status annotate_symbolic_shapes(Graph& graph, NodeEvaluator* evaluator) {
  const std::vector<std::string> symbols = input_symbols(graph);
  auto run = [&](const std::map<std::string, int64_t>& b) -> StatusOr<InferredTypes> {
    InferenceOptions options;
    options.symbols = b;
    options.evaluator = evaluator;
    StatusOr<InferredTypes> t = infer_types(graph, options);
    if (!t.ok() && !b.empty()) {
      std::string where;
      for (const auto& [k, v] : b) where += fmt::format("{}{}={}", where.empty() ? "" : ", ", k, v);
      return t.status().with_context(fmt::format("shape inference with {}", where));
    }
    return t;
  };

  std::map<std::string, int64_t> base;
  for (const std::string& s : symbols) base[s] = kProbes[0];
  KS_ASSIGN_OR_RETURN(InferredTypes base_types, run(base));
  // varied[s][k]: the run with symbol s at kProbes[k + 1], the others at kProbes[0].
  std::map<std::string, std::array<InferredTypes, 2>> varied;
  for (const std::string& s : symbols) {
    for (int k = 0; k < 2; ++k) {
      std::map<std::string, int64_t> b = base;
      b[s] = kProbes[k + 1];
      KS_ASSIGN_OR_RETURN(varied[s][k], run(b));
    }
  }

  for (Value* v : graph.values()) {
    if (v->is_graph_input() || v->has_constant()) continue;
    auto it = base_types.find(v);
    if (it == base_types.end()) continue;
    const InferredValue& b = it->second;
    TensorType type;
    type.dtype = b.dtype;
    if (b.known_rank) {
      std::vector<SymDim> dims;
      bool rank_agrees = true;
      for (size_t d = 0; d < b.dims.size(); ++d) {
        SymDim dim = b.dims[d] < 0 ? SymDim::unknown() : SymDim(b.dims[d]);
        int depends = 0;
        for (const std::string& s : symbols) {
          const InferredValue& v1 = varied[s][0][v];
          const InferredValue& v2 = varied[s][1][v];
          if (!v1.known_rank || !v2.known_rank || v1.dims.size() != b.dims.size() ||
              v2.dims.size() != b.dims.size()) {
            rank_agrees = false;
            break;
          }
          const int64_t d0 = b.dims[d], d1 = v1.dims[d], d2 = v2.dims[d];
          if (d0 == d1 && d0 == d2) continue;
          ++depends;
          const int64_t p0 = kProbes[0], p1 = kProbes[1], p2 = kProbes[2];
          if (d0 < 0 || d1 < 0 || d2 < 0 || (d1 - d0) % (p1 - p0) != 0) {
            dim = SymDim::unknown();
            continue;
          }
          const int64_t coef = (d1 - d0) / (p1 - p0);
          const int64_t offset = d0 - coef * p0;
          dim = d2 == coef * p2 + offset ? SymDim::symbol(s, coef, offset) : SymDim::unknown();
        }
        if (depends > 1) dim = SymDim::unknown();
        dims.push_back(dim);
      }
      if (rank_agrees) type.shape = SymShape(std::move(dims));
    }
    v->set_type(std::move(type));
  }
  return Status();
}

}  // namespace kestrel::ir
