#include "kestrel/optimize/fuse_conv_batchnorm.h"

#include <cmath>

namespace kestrel::optimize {
namespace {

// Values of a constant as double; nullopt unless it is a floating constant of `count` elements.
std::optional<std::vector<double>> constant_values(const ir::Value* v, int64_t count) {
  if (v == nullptr || !v->has_constant() || !is_floating(v->dtype()) ||
      v->constant().num_elements() != count) {
    return std::nullopt;
  }
  return v->constant().to_double_vector();
}

// A host tensor of `dtype` and `shape` holding `values`.
StatusOr<Tensor> make_tensor(DType dtype, const Shape& shape, const std::vector<double>& values) {
  KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(dtype, shape));
  KS_RETURN_IF_ERROR(dispatch_dtype<FloatTypes>(dtype, [&]<typename T>(TypeTag<T>) -> Status {
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
        p[i] = T(static_cast<float>(values[i]));
      } else {
        p[i] = static_cast<T>(values[i]);
      }
    }
    return Status();
  }));
  return t;
}

}  // namespace

StatusOr<int> fuse_conv_batchnorm(ir::Graph& g) {
  int fused = 0;
  for (ir::Node* bn : g.nodes()) {
    if (bn->op_type() != "BatchNormalization" || bn->num_outputs() != 1) continue;
    ir::Node* conv = bn->input(0)->producer();
    if (conv == nullptr || conv->op_type() != "Conv" || bn->input(0)->uses().size() != 1 ||
        bn->input(0)->is_graph_output()) {
      continue;
    }
    const ir::Value* w = conv->input(1);
    if (!w->has_constant() || !is_floating(w->dtype()) || w->constant().rank() < 3) continue;
    const int64_t k = w->constant().shape()[0];
    const auto scale = constant_values(bn->input(1), k);
    const auto shift = constant_values(bn->input(2), k);
    const auto mean = constant_values(bn->input(3), k);
    const auto var = constant_values(bn->input(4), k);
    if (!scale || !shift || !mean || !var) continue;
    std::vector<double> bias(static_cast<size_t>(k), 0.0);
    if (conv->has_input(2)) {
      const auto b = constant_values(conv->input(2), k);
      if (!b) continue;
      bias = *b;
    }
    const double eps = bn->attrs().get_float("epsilon", 1e-5f);
    std::vector<double> weights = w->constant().to_double_vector();
    const size_t per_channel = weights.size() / static_cast<size_t>(k);
    for (size_t c = 0; c < static_cast<size_t>(k); ++c) {
      const double s = (*scale)[c] / std::sqrt((*var)[c] + eps);
      for (size_t i = 0; i < per_channel; ++i) weights[c * per_channel + i] *= s;
      bias[c] = (bias[c] - (*mean)[c]) * s + (*shift)[c];
    }
    KS_ASSIGN_OR_RETURN(Tensor new_w, make_tensor(w->dtype(), w->constant().shape(), weights));
    KS_ASSIGN_OR_RETURN(Tensor new_b, make_tensor(w->dtype(), Shape{k}, bias));
    conv->set_input(1,
                    g.add_constant(g.unique_name(conv->name() + "_bn_weight"), std::move(new_w)));
    if (conv->num_inputs() < 3) conv->add_input(nullptr);
    conv->set_input(2, g.add_constant(g.unique_name(conv->name() + "_bn_bias"), std::move(new_b)));
    g.replace_all_uses(bn->output(0), conv->output(0));
    ++fused;
  }
  g.remove_dead();
  return fused;
}

}  // namespace kestrel::optimize
