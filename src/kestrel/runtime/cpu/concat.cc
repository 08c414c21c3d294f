// Reference kernels of Concat: for each index of the dimensions before the axis, the inputs' blocks
// (their axis size times the inner dimensions) are copied one after another; and of Kestrel's
// FusedConcat, which puts each part through its convolution epilogue (bias, activation, residual;
// ir/ops/movement.cc) on the way, computed in double and rounded once.
#include <cstring>

#include "kestrel/runtime/activation.h"
#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

StatusOr<std::unique_ptr<Kernel>> create_concat(const KernelDef& def) {
  // Every element type moves as bytes, so the kernel needs no element type up front (it may be
  // unknown when the engine is built, downstream of a data-dependent shape).
  const int64_t axis_attr = def.attrs.get_int("axis", 0);
  return make_kernel([axis_attr](KernelContext& ctx) -> Status {
    Tensor& out = ctx.output(0);
    const auto rank = static_cast<int64_t>(out.rank());
    const auto axis = static_cast<size_t>(axis_attr < 0 ? axis_attr + rank : axis_attr);
    const size_t element = dtype_size(out.dtype());
    const int64_t outer = out.shape().num_elements(0, axis);
    auto* dst = static_cast<std::byte*>(out.raw_data());
    for (int64_t o = 0; o < outer; ++o) {
      for (size_t k = 0; k < ctx.num_inputs(); ++k) {
        const Tensor& in = ctx.input(k);
        const size_t block =
            static_cast<size_t>(in.shape().num_elements(axis, in.rank())) * element;
        if (block == 0) continue;
        std::memcpy(dst, static_cast<const std::byte*>(in.raw_data()) + o * block, block);
        dst += block;
      }
    }
    return Status();
  });
}

// One part of a FusedConcat.
struct Part {
  ActivationSpec activation;
  int64_t bias = -1;      // input index, or -1
  int64_t residual = -1;  // input index, or -1
};

template <typename T>
Status fused_concat(const std::vector<Part>& parts, size_t axis, KernelContext& ctx) {
  Tensor& out = ctx.output(0);
  const int64_t outer = out.shape().num_elements(0, axis);
  const int64_t inner = out.shape().num_elements(axis + 1, out.rank());
  T* dst = out.data<T>();
  for (int64_t o = 0; o < outer; ++o) {
    for (size_t k = 0; k < parts.size(); ++k) {
      const Part& p = parts[k];
      const Tensor& in = ctx.input(k);
      const int64_t channels = in.shape()[axis];
      const int64_t block = channels * inner;
      const T* x = in.data<T>() + o * block;
      const T* bias = p.bias >= 0 ? ctx.input(static_cast<size_t>(p.bias)).data<T>() : nullptr;
      const T* residual = p.residual >= 0
                              ? ctx.input(static_cast<size_t>(p.residual)).data<T>() + o * block
                              : nullptr;
      for (int64_t i = 0; i < block; ++i) {
        double v = static_cast<double>(static_cast<ComputeType<T>>(x[i]));
        if (bias) v += static_cast<double>(static_cast<ComputeType<T>>(bias[i / inner]));
        v = apply_activation(p.activation, v);
        if (residual) v += static_cast<double>(static_cast<ComputeType<T>>(residual[i]));
        *dst++ = round_to<T>(v);
      }
    }
  }
  return Status();
}

StatusOr<std::unique_ptr<Kernel>> create_fused_concat(const KernelDef& def) {
  if (!dtype_in<FloatTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
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
  std::vector<Part> parts(n);
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
  return make_kernel([parts, axis_attr](KernelContext& ctx) -> Status {
    const auto rank = static_cast<int64_t>(ctx.output(0).rank());
    const auto axis = static_cast<size_t>(axis_attr < 0 ? axis_attr + rank : axis_attr);
    return dispatch_dtype<FloatTypes>(ctx.input(0).dtype(), [&]<typename T>(TypeTag<T>) {
      return fused_concat<T>(parts, axis, ctx);
    });
  });
}

}  // namespace

std::vector<KernelEntry> concat_kernels() {
  return {KernelEntry{"Concat", create_concat}, KernelEntry{"FusedConcat", create_fused_concat}};
}

}  // namespace kestrel::runtime::cpu
