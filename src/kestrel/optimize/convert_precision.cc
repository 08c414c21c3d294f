#include "kestrel/optimize/convert_precision.h"

#include "kestrel/ir/op_schema.h"

namespace kestrel::optimize {
namespace {

Attributes cast_to(DType dtype) {
  Attributes a;
  a.set("to", static_cast<int64_t>(dtype));
  return a;
}

// Inserts Cast(to) on `v` and makes every listed use read the cast instead.
ir::Value* cast_uses(ir::Graph& g, ir::Value* v, DType to, const std::vector<ir::Use>& uses) {
  ir::Node* cast = g.add_node("Cast", {v}, 1, cast_to(to),
                              g.unique_name(v->name() + "_to_" + std::string(dtype_name(to))));
  for (const ir::Use& u : uses) u.node->set_input(u.index, cast->output(0));
  return cast->output(0);
}

bool is_value_use(const ir::Use& u) {
  const ir::OpSchema* s = ir::find_op_schema(u.node->op_type());
  return s != nullptr && s->is_value_input(u.index);
}

}  // namespace

StatusOr<int> convert_to_float16(ir::Graph& g, const PrecisionOptions& options) {
  int converted = 0;
  // Constants: convert those that only feed computation.
  for (ir::Value* v : g.values()) {
    if (!v->has_constant() || v->dtype() != DType::kFloat32 || v->uses().empty()) continue;
    bool data_only = true;
    for (const ir::Use& u : v->uses()) {
      data_only = data_only && !is_value_use(u) && !options.keep_float32.count(u.node->name());
    }
    if (!data_only) continue;
    const Tensor& c = v->constant();
    KS_ASSIGN_OR_RETURN(Tensor half, Tensor::allocate(DType::kFloat16, c.shape()));
    for (int64_t i = 0; i < c.num_elements(); ++i) half.data<Half>()[i] = Half(c.data<float>()[i]);
    g.make_constant(v, std::move(half));
    ++converted;
  }
  // Graph inputs: a Cast to float16 right after each float32 input.
  for (ir::Value* in : g.inputs()) {
    if (in->dtype() != DType::kFloat32) continue;
    std::vector<ir::Use> uses;
    for (const ir::Use& u : in->uses()) {
      if (!is_value_use(u)) uses.push_back(u);
    }
    if (!uses.empty()) cast_uses(g, in, DType::kFloat16, uses);
  }
  // Nodes kept in float32: cast their float16 inputs up and their outputs back down. Their input
  // types are known only after inference; the verifier then checks the result.
  for (ir::Node* n : g.nodes()) {
    if (!options.keep_float32.count(n->name())) continue;
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      ir::Value* in = n->input(i);
      if (in == nullptr || is_value_use({n, i}) || in->dtype() != DType::kFloat32 ||
          in->has_constant() || in->is_graph_input()) {
        continue;
      }
      // In the converted graph this input arrives as float16.
      cast_uses(g, in, DType::kFloat32, {{n, i}});
    }
    for (ir::Value* out : n->outputs()) {
      if (out->uses().empty() && !out->is_graph_output()) continue;
      std::vector<ir::Use> uses = out->uses();
      ir::Value* down = cast_uses(g, out, DType::kFloat16, uses);
      if (out->is_graph_output()) g.replace_output(out, down);
    }
  }
  // Graph outputs that were float32 are float32 again at the end.
  for (ir::Value* out : std::vector<ir::Value*>(g.outputs())) {
    if (out->dtype() != DType::kFloat32 || out->is_graph_input() || out->has_constant()) continue;
    ir::Node* cast = g.add_node("Cast", {out}, 1, cast_to(DType::kFloat32),
                                g.unique_name(out->name() + "_to_float32"));
    g.replace_output(out, cast->output(0));
  }
  KS_RETURN_IF_ERROR(g.sort_topologically());
  return converted;
}

}  // namespace kestrel::optimize
