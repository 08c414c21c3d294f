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

// Converts the `from` constants that only feed computation (and no node in `keep`) to `to`.
// Returns how many.
StatusOr<int> convert_constants(ir::Graph& g, DType from, DType to,
                                const std::set<std::string>& keep) {
  int converted = 0;
  for (ir::Value* v : g.values()) {
    if (!v->has_constant() || v->dtype() != from || v->uses().empty()) continue;
    bool data_only = true;
    for (const ir::Use& u : v->uses()) {
      data_only = data_only && !is_value_use(u) && !keep.count(u.node->name());
    }
    if (!data_only) continue;
    const Tensor& c = v->constant();
    KS_ASSIGN_OR_RETURN(Tensor out, Tensor::allocate(to, c.shape()));
    if (to == DType::kFloat16) {
      for (int64_t i = 0; i < c.num_elements(); ++i) out.data<Half>()[i] = Half(c.data<float>()[i]);
    } else {
      for (int64_t i = 0; i < c.num_elements(); ++i) out.data<float>()[i] = c.data<Half>()[i];
    }
    g.make_constant(v, std::move(out));
    ++converted;
  }
  return converted;
}

// A Cast to `to` right after each `from` graph input, read by its computing uses.
void cast_inputs(ir::Graph& g, DType from, DType to) {
  for (ir::Value* in : g.inputs()) {
    if (in->dtype() != from) continue;
    std::vector<ir::Use> uses;
    for (const ir::Use& u : in->uses()) {
      if (!is_value_use(u)) uses.push_back(u);
    }
    if (!uses.empty()) cast_uses(g, in, to, uses);
  }
}

// Graph outputs of type `type` get a Cast back to it at the end (after the conversion they are
// computed in the other type; inputs and constants passed through are left alone).
void cast_outputs(ir::Graph& g, DType type) {
  for (ir::Value* out : std::vector<ir::Value*>(g.outputs())) {
    if (out->dtype() != type || out->is_graph_input() || out->has_constant()) continue;
    ir::Node* cast =
        g.add_node("Cast", {out}, 1, cast_to(type),
                   g.unique_name(out->name() + "_to_" + std::string(dtype_name(type))));
    g.replace_output(out, cast->output(0));
  }
}

bool casts_to(const ir::Node* n, DType type) {
  return n->op_type() == "Cast" && n->attrs().get_int("to", 0) == static_cast<int64_t>(type);
}

// A Cast to `from` whose result only feeds computation casts to `to` instead (one that feeds
// shape-deciding inputs, like Range's, keeps its type).
void retarget_casts(ir::Graph& g, DType from, DType to) {
  for (ir::Node* n : g.nodes()) {
    if (!casts_to(n, from) || n->output(0)->is_graph_output()) continue;
    bool data_only = true;
    for (const ir::Use& u : n->output(0)->uses()) data_only = data_only && !is_value_use(u);
    if (data_only) n->attrs().set("to", static_cast<int64_t>(to));
  }
}

}  // namespace

bool computes_in_float16(const ir::Graph& g) {
  for (const ir::Value* v : g.values()) {
    if ((v->is_graph_input() || v->has_constant()) && v->dtype() == DType::kFloat16) return true;
  }
  for (const ir::Node* n : g.nodes()) {
    if (casts_to(n, DType::kFloat16)) return true;
  }
  return false;
}

StatusOr<int> convert_to_float32(ir::Graph& g) {
  KS_ASSIGN_OR_RETURN(int converted,
                      convert_constants(g, DType::kFloat16, DType::kFloat32, /*keep=*/{}));
  cast_inputs(g, DType::kFloat16, DType::kFloat32);
  // Casts to float16 inside the computation keep it in float32 (the outputs' Casts come next).
  retarget_casts(g, DType::kFloat16, DType::kFloat32);
  cast_outputs(g, DType::kFloat16);
  KS_RETURN_IF_ERROR(g.sort_topologically());
  return converted;
}

StatusOr<int> convert_to_float16(ir::Graph& g, const PrecisionOptions& options) {
  KS_ASSIGN_OR_RETURN(int converted,
                      convert_constants(g, DType::kFloat32, DType::kFloat16, options.keep_float32));
  cast_inputs(g, DType::kFloat32, DType::kFloat16);
  // Casts to float32 inside the computation (of integers, say) cast to float16 instead.
  retarget_casts(g, DType::kFloat32, DType::kFloat16);
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
  cast_outputs(g, DType::kFloat32);
  KS_RETURN_IF_ERROR(g.sort_topologically());
  return converted;
}

}  // namespace kestrel::optimize
