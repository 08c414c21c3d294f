#include "kestrel/optimize/rebatch.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "kestrel/ir/verifier.h"

namespace kestrel::optimize {
namespace {

// The batch size used to tell batch dimensions apart from others: a prime no model hard-codes.
constexpr int64_t kProbeBatch = 7;

const ir::InferredValue* find(const ir::InferredTypes& t, const ir::Value* v) {
  auto it = t.find(v);
  return it == t.end() ? nullptr : &it->second;
}

// True when v's first dimension is the batch: 1 at batch 1 and kProbeBatch at the probe.
bool leads_with_batch(const ir::InferredTypes& one, const ir::InferredTypes& probe,
                      const ir::Value* v) {
  const ir::InferredValue* a = find(one, v);
  const ir::InferredValue* b = find(probe, v);
  return a && b && a->is_static() && b->is_static() && !a->dims.empty() &&
         a->dims.size() == b->dims.size() && a->dims[0] == 1 && b->dims[0] == kProbeBatch;
}

// The known value of `v`, when it is the same at batch 1 and at the probe (a true constant).
std::optional<std::vector<int64_t>> constant_ints(const ir::InferredTypes& one,
                                                  const ir::InferredTypes& probe,
                                                  const ir::Value* v) {
  const ir::InferredValue* a = find(one, v);
  const ir::InferredValue* b = find(probe, v);
  if (!a || !b || !a->value || !b->value) return std::nullopt;
  StatusOr<std::vector<int64_t>> x = a->value->to_int64_vector();
  StatusOr<std::vector<int64_t>> y = b->value->to_int64_vector();
  if (!x.ok() || !y.ok() || *x != *y) return std::nullopt;
  return *x;
}

Status rewrite_reshape(ir::Graph& g, ir::Node* n, const ir::InferredTypes& one,
                       const ir::InferredTypes& probe) {
  if (!leads_with_batch(one, probe, n->input(0))) return Status();
  std::optional<std::vector<int64_t>> shape = constant_ints(one, probe, n->input(1));
  if (!shape || shape->empty() || (*shape)[0] != 1) return Status();
  const bool allow_zero = n->attrs().get_int("allowzero", 0) != 0;
  if (allow_zero) {
    // 0 would mean a zero-sized dimension: use -1 when it is free.
    if (std::count(shape->begin(), shape->end(), -1) > 0) {
      return unimplemented("{}: cannot make its batch dynamic (allowzero=1 and a -1 already used)",
                           n->describe());
    }
    (*shape)[0] = -1;
  } else {
    (*shape)[0] = 0;
  }
  ir::Value* c = g.add_constant(
      g.unique_name(n->name() + "_dynamic_shape"),
      Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(shape->size())}, *shape));
  n->set_input(1, c);
  return Status();
}

Status rewrite_resize_sizes(ir::Graph& g, ir::Node* n, const ir::InferredTypes& one,
                            const ir::InferredTypes& probe) {
  if (!n->has_input(3) || !leads_with_batch(one, probe, n->input(0))) return Status();
  std::optional<std::vector<int64_t>> sizes = constant_ints(one, probe, n->input(3));
  const ir::InferredValue* in = find(one, n->input(0));
  if (!sizes || sizes->size() != in->dims.size() || (*sizes)[0] != 1 || n->attrs().has("axes")) {
    return Status();
  }
  std::vector<float> scales;
  for (size_t i = 0; i < sizes->size(); ++i) {
    const float s = static_cast<float>((*sizes)[i]) / static_cast<float>(in->dims[i]);
    if (static_cast<int64_t>(std::floor(static_cast<float>(in->dims[i]) * s)) != (*sizes)[i]) {
      return unimplemented(
          "{}: its output size {} is not an exact multiple of its input; cannot "
          "make its batch dynamic",
          n->describe(), (*sizes)[i]);
    }
    scales.push_back(s);
  }
  ir::Value* c = g.add_constant(
      g.unique_name(n->name() + "_scales"),
      Tensor::from_vector<float>(Shape{static_cast<int64_t>(scales.size())}, scales));
  n->set_input(3, nullptr);
  n->truncate_inputs(3);
  n->set_input(2, c);
  return Status();
}

}  // namespace

Status make_batch_dynamic(ir::Graph& g, ir::NodeEvaluator* evaluator, const std::string& symbol) {
  KS_RETURN_IF_ERROR(g.sort_topologically());
  bool any = false;
  for (ir::Value* in : g.inputs()) {
    if (!in->shape().has_rank() || in->shape().rank() < 2) continue;
    const ir::SymDim& d0 = in->shape()[0];
    if (d0.is_symbolic()) return Status();  // already dynamic
    if (d0.value() != 1) {
      return unimplemented(
          "input '{}' has a fixed batch of {}; only batch-1 exports can be made "
          "dynamic",
          in->name(), d0.value());
    }
    ir::TensorType t = in->type();
    t.shape.mutable_dims()[0] = ir::SymDim::symbol(symbol);
    in->set_type(std::move(t));
    any = true;
  }
  if (!any) return invalid_argument("the model has no input with a batch dimension");

  ir::InferenceOptions at_one, at_probe;
  at_one.evaluator = at_probe.evaluator = evaluator;
  at_one.symbols[symbol] = 1;
  at_probe.symbols[symbol] = kProbeBatch;
  KS_ASSIGN_OR_RETURN(ir::InferredTypes one, ir::initial_types(g, at_one));
  KS_ASSIGN_OR_RETURN(ir::InferredTypes probe, ir::initial_types(g, at_probe));
  for (ir::Node* n : g.nodes()) {
    if (n->op_type() == "Reshape") KS_RETURN_IF_ERROR(rewrite_reshape(g, n, one, probe));
    if (n->op_type() == "Resize") KS_RETURN_IF_ERROR(rewrite_resize_sizes(g, n, one, probe));
    // Constants added by the rewrites are known to both inferences.
    for (const ir::Value* in : n->inputs()) {
      if (in && in->has_constant() && !one.count(in)) {
        ir::InferredValue c{in->dtype(), in->constant().shape().vec(), true, in->constant()};
        one[in] = c;
        probe[in] = c;
      }
    }
    KS_RETURN_IF_ERROR(ir::infer_step(*n, one, at_one));
    Status s = ir::infer_step(*n, probe, at_probe);
    if (!s.ok()) return s.with_context("making the batch dynamic");
  }
  for (const ir::Value* out : g.outputs()) {
    if (!leads_with_batch(one, probe, out)) {
      return unimplemented(
          "output '{}' does not have the batch as its first dimension after "
          "re-batching; this model's batch cannot be made dynamic",
          out->name());
    }
  }
  g.remove_dead();
  return Status();
}

}  // namespace kestrel::optimize
