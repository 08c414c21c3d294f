#include "kestrel/optimize/fuse_concat.h"

#include <string>
#include <vector>

namespace kestrel::optimize {
namespace {

// The convolution producing `v` when its epilogue can move into `concat`: v's only use, a Conv or
// FusedConv whose channel axis is the concatenated one.
ir::Node* movable_conv(const ir::Value* v, const ir::Node* concat, int64_t axis) {
  ir::Node* conv = v->producer();
  if (conv == nullptr || v->is_graph_output() || v->uses().size() != 1 ||
      v->uses()[0].node != concat) {
    return nullptr;
  }
  const bool fused = conv->op_type() == "FusedConv";
  if (!fused && conv->op_type() != "Conv") return nullptr;
  if (!v->shape().has_rank()) return nullptr;
  const auto rank = static_cast<int64_t>(v->shape().rank());
  const bool channels_last = fused && conv->attrs().get_int("channels_last", 0) != 0;
  const int64_t channel_axis = channels_last ? rank - 1 : 1;
  if (axis != channel_axis) return nullptr;
  // Nothing to move: the Concat would only copy it.
  const bool has_epilogue = conv->has_input(2) || (fused && conv->has_input(3)) ||
                            (fused && !conv->attrs().get_string("activation", "").empty());
  return has_epilogue ? conv : nullptr;
}

}  // namespace

StatusOr<int> fuse_concat(ir::Graph& g) {
  int rewritten = 0;
  for (ir::Node* concat : g.nodes()) {
    if (concat->op_type() != "Concat" || concat->num_outputs() != 1) continue;
    const ir::Value* out = concat->output(0);
    if (!out->shape().has_rank() || !is_floating(out->dtype())) continue;
    const auto rank = static_cast<int64_t>(out->shape().rank());
    int64_t axis = concat->attrs().get_int("axis", 0);
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) continue;

    const size_t parts = concat->num_inputs();
    std::vector<std::string> activations(parts);
    std::vector<float> alphas(parts, 0.f), betas(parts, 0.f);
    std::vector<int64_t> biases(parts, -1), residuals(parts, -1);
    std::vector<ir::Value*> extra;
    bool any = false;
    for (size_t k = 0; k < parts; ++k) {
      ir::Value* v = concat->input(k);
      if (v == nullptr) break;
      ir::Node* conv = movable_conv(v, concat, axis);
      if (conv == nullptr) continue;
      any = true;
      const bool fused = conv->op_type() == "FusedConv";
      if (conv->has_input(2)) {
        biases[k] = static_cast<int64_t>(parts + extra.size());
        extra.push_back(conv->input(2));
      }
      if (fused && conv->has_input(3)) {
        residuals[k] = static_cast<int64_t>(parts + extra.size());
        extra.push_back(conv->input(3));
      }
      if (fused) {
        activations[k] = conv->attrs().get_string("activation", "");
        alphas[k] = conv->attrs().get_float("activation_alpha", 0.f);
        betas[k] = conv->attrs().get_float("activation_beta", 0.f);
        conv->attrs().set("activation", std::string());
        conv->attrs().set("activation_alpha", 0.f);
        conv->attrs().set("activation_beta", 0.f);
      }
      conv->truncate_inputs(2);  // the raw convolution: X and W
    }
    if (!any) continue;
    for (ir::Value* v : extra) concat->add_input(v);
    concat->set_op_type("FusedConcat");
    Attributes& a = concat->attrs();
    a.set("axis", axis);
    a.set("num_parts", static_cast<int64_t>(parts));
    a.set("activations", activations);
    a.set("activation_alpha", alphas);
    a.set("activation_beta", betas);
    a.set("bias_inputs", biases);
    a.set("residual_inputs", residuals);
    ++rewritten;
  }
  return rewritten;
}

}  // namespace kestrel::optimize
