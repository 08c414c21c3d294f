// FusedConcat on the GPU (the operator is described in ir/ops/movement.cc, the pass that writes it
// in optimize/fuse_concat.h); device code in fused_concat.cu.
#include <algorithm>

#include "kestrel/runtime/activation.h"
#include "kestrel/runtime/cuda/cuda_kernels.h"
#include "kestrel/runtime/cuda/fused_concat_launch.h"

namespace kestrel::runtime::cuda {
namespace {

Activation to_device(runtime::Activation a) {
  switch (a) {
    case runtime::Activation::kNone:
      return Activation::kNone;
    case runtime::Activation::kRelu:
      return Activation::kRelu;
    case runtime::Activation::kLeakyRelu:
      return Activation::kLeakyRelu;
    case runtime::Activation::kSigmoid:
      return Activation::kSigmoid;
    case runtime::Activation::kHardSigmoid:
      return Activation::kHardSigmoid;
    case runtime::Activation::kHardSwish:
      return Activation::kHardSwish;
    case runtime::Activation::kClip:
      return Activation::kClip;
    case runtime::Activation::kSilu:
      return Activation::kSilu;
  }
  return Activation::kNone;
}

struct PartSpec {
  ActivationSpec activation;
  int64_t bias = -1;
  int64_t residual = -1;
};

StatusOr<std::unique_ptr<Kernel>> create_fused_concat(const KernelDef& def) {
  KS_ASSIGN_OR_RETURN(const FloatType type, float_type(def, def.input_dtypes[0]));
  const auto n = static_cast<size_t>(def.attrs.get_int("num_parts", 0));
  const std::vector<std::string> activations = def.attrs.get_strings("activations");
  const std::vector<float> alphas =
      def.attrs.get_floats("activation_alpha", std::vector<float>(n, 0.f));
  const std::vector<float> betas =
      def.attrs.get_floats("activation_beta", std::vector<float>(n, 0.f));
  const std::vector<int64_t> biases = def.attrs.get_ints("bias_inputs");
  const std::vector<int64_t> residuals = def.attrs.get_ints("residual_inputs");
  if (n == 0 || activations.size() != n || alphas.size() != n || betas.size() != n ||
      biases.size() != n || residuals.size() != n) {
    return invalid_argument("{}: the per-part attributes need num_parts entries each",
                            def.describe());
  }
  std::vector<PartSpec> parts(n);
  for (size_t k = 0; k < n; ++k) {
    Attributes a;
    a.set("activation", activations[k]);
    a.set("activation_alpha", alphas[k]);
    a.set("activation_beta", betas[k]);
    KS_ASSIGN_OR_RETURN(parts[k].activation, parse_activation(a));
    parts[k].bias = biases[k];
    parts[k].residual = residuals[k];
  }
  const int64_t axis_attr = def.attrs.get_int("axis", 0);
  return make_kernel([type, parts, axis_attr](KernelContext& ctx) -> Status {
    Tensor& y = ctx.output(0);
    const auto rank = static_cast<int64_t>(y.rank());
    const auto axis = static_cast<size_t>(axis_attr < 0 ? axis_attr + rank : axis_attr);
    FusedConcatShape shape;
    shape.outer = y.shape().num_elements(0, axis);
    shape.inner = y.shape().num_elements(axis + 1, y.rank());
    shape.row = y.shape()[axis] * shape.inner;
    // Up to kMaxConcatParts parts per launch, each launch writing its own columns.
    for (size_t first = 0; first < parts.size(); first += kMaxConcatParts) {
      const size_t count = std::min<size_t>(kMaxConcatParts, parts.size() - first);
      shape.parts = static_cast<int>(count);
      int64_t width = 0;
      for (size_t i = 0; i < count; ++i) {
        const PartSpec& p = parts[first + i];
        const Tensor& x = ctx.input(first + i);
        ConcatPart& d = shape.part[i];
        d.x = x.raw_data();
        d.bias = p.bias >= 0 ? ctx.input(static_cast<size_t>(p.bias)).raw_data() : nullptr;
        d.residual =
            p.residual >= 0 ? ctx.input(static_cast<size_t>(p.residual)).raw_data() : nullptr;
        d.width = x.shape()[axis] * shape.inner;
        d.activation = to_device(p.activation.kind);
        d.alpha = p.activation.alpha;
        d.beta = p.activation.beta;
        width += d.width;
      }
      KS_RETURN_IF_ERROR(check_launch(
          "fused concat", launch_fused_concat(type, shape, y.raw_data(), stream_of(ctx))));
      shape.offset += width;
    }
    return Status();
  });
}

}  // namespace

std::vector<KernelEntry> fused_concat_kernels() { return {{"FusedConcat", create_fused_concat}}; }

}  // namespace kestrel::runtime::cuda
