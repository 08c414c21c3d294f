#include "kestrel/optimize/fuse_conv_activation.h"

#include <limits>

namespace kestrel::optimize {
namespace {

bool only_use_is(const ir::Value* v, const ir::Node* node) {
  return !v->is_graph_output() && v->uses().size() == 1 && v->uses()[0].node == node;
}

// The single scalar value of a constant input, if it is one.
std::optional<float> scalar_constant(const ir::Value* v) {
  if (v == nullptr || !v->has_constant() || v->constant().num_elements() != 1 ||
      !is_floating(v->dtype())) {
    return std::nullopt;
  }
  return static_cast<float>(v->constant().to_double_vector()[0]);
}

// Conv (not yet fused) or a FusedConv without activation and residual: the start of a fusion.
bool is_plain_conv(const ir::Node* n) {
  if (n == nullptr) return false;
  if (n->op_type() == "Conv") return true;
  return n->op_type() == "FusedConv" && n->attrs().get_string("activation", "").empty() &&
         !n->has_input(3);
}

void make_fused(ir::Node* conv, const std::string& activation, float alpha, float beta) {
  conv->set_op_type("FusedConv");
  conv->attrs().set("activation", activation);
  conv->attrs().set("activation_alpha", alpha);
  conv->attrs().set("activation_beta", beta);
}

// The plain convolution `x` comes from through Reshapes and Transposes that only rearrange it for
// the next one (each output used once): an activation, applied element by element, may as well
// be applied before them, in the convolution's epilogue. YOLO's heads are Conv -> Reshape ->
// Transpose -> Sigmoid. Null when there is none.
ir::Node* conv_through_views(const ir::Value* x) {
  for (int depth = 0; depth < 8 && x != nullptr; ++depth) {
    ir::Node* n = x->producer();
    if (n == nullptr || n->num_outputs() != 1) return nullptr;
    if (is_plain_conv(n)) return depth == 0 ? nullptr : n;
    if (n->op_type() != "Reshape" && n->op_type() != "Transpose") return nullptr;
    const ir::Value* in = n->input(0);
    if (in == nullptr || in->is_graph_output() || in->uses().size() != 1) return nullptr;
    x = in;
  }
  return nullptr;
}

}  // namespace

StatusOr<int> fuse_conv_activation(ir::Graph& g) {
  int fused = 0;
  for (ir::Node* act : g.nodes()) {
    const std::string& op = act->op_type();
    if (!act->has_input(0)) continue;
    ir::Value* x = act->input(0);
    if (ir::Node* conv = conv_through_views(x);
        conv != nullptr && !x->is_graph_output() && x->uses().size() == 1 &&
        (op == "Sigmoid" || op == "Relu" || op == "HardSwish")) {
      // Only the parameterless activations: their value does not depend on where they run.
      make_fused(conv, op, 0, 0);
      g.replace_all_uses(act->output(0), x);
      ++fused;
      continue;
    }
    ir::Node* conv = x->producer();
    if (!is_plain_conv(conv)) continue;

    if (op == "Sigmoid") {
      // SiLU: Mul(x, Sigmoid(x)) where x feeds only the Sigmoid and the Mul.
      const ir::Value* s = act->output(0);
      if (s->is_graph_output() || s->uses().size() != 1) continue;
      ir::Node* mul = s->uses()[0].node;
      if (mul->op_type() != "Mul" || mul->num_inputs() != 2) continue;
      const ir::Value* other = mul->input(1 - s->uses()[0].index);
      if (other != x || x->is_graph_output() || x->uses().size() != 2) continue;
      make_fused(conv, "Silu", 0, 0);
      g.replace_all_uses(mul->output(0), x);
      ++fused;
      continue;
    }
    if (!only_use_is(x, act)) continue;
    std::optional<std::pair<float, float>> params;
    if (op == "Relu") params = {0, 0};
    if (op == "LeakyRelu") params = {act->attrs().get_float("alpha", 0.01f), 0};
    if (op == "HardSigmoid") {
      params = {act->attrs().get_float("alpha", 0.2f), act->attrs().get_float("beta", 0.5f)};
    }
    if (op == "HardSwish") params = {0, 0};
    if (op == "Clip") {
      const std::optional<float> lo =
          act->has_input(1) ? scalar_constant(act->input(1))
                            : std::optional<float>(-std::numeric_limits<float>::infinity());
      const std::optional<float> hi =
          act->has_input(2) ? scalar_constant(act->input(2))
                            : std::optional<float>(std::numeric_limits<float>::infinity());
      if (lo && hi) params = {*lo, *hi};
    }
    if (!params) continue;
    make_fused(conv, op, params->first, params->second);
    g.replace_all_uses(act->output(0), x);
    ++fused;
  }
  g.remove_dead();
  return fused;
}

StatusOr<int> fuse_conv_residual(ir::Graph& g) {
  int fused = 0;
  for (ir::Node* add : g.nodes()) {
    if (add->op_type() != "Add" || add->num_inputs() != 2) continue;
    for (size_t side = 0; side < 2; ++side) {
      ir::Value* y = add->input(side);
      ir::Value* z = add->input(1 - side);
      ir::Node* conv = y->producer();
      if (conv == nullptr || conv->op_type() != "FusedConv" || conv->has_input(3) ||
          !only_use_is(y, add) || z == y) {
        continue;
      }
      // Same shape and type: a residual connection, not a broadcast.
      if (!y->shape().has_rank() || !(y->shape() == z->shape()) || y->dtype() != z->dtype()) {
        continue;
      }
      bool known = true;
      for (const ir::SymDim& d : y->shape().dims()) known = known && !d.is_unknown();
      if (!known) continue;
      while (conv->num_inputs() < 3) conv->add_input(nullptr);
      conv->add_input(z);
      g.replace_all_uses(add->output(0), y);
      ++fused;
      break;
    }
  }
  g.remove_dead();
  return fused;
}

}  // namespace kestrel::optimize
