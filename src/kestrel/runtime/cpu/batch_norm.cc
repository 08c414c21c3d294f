// Reference kernel of BatchNormalization in inference form (the shape rule refuses training mode):
//   y = (x - mean) / sqrt(var + epsilon) * scale + B, per channel (axis 1),
// computed in double and rounded once. scale/B and mean/var may have their own float types.
#include <bit>
#include <cmath>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

StatusOr<std::unique_ptr<Kernel>> create_batch_norm(const KernelDef& def) {
  for (size_t i = 0; i < 5; ++i) {
    if (!dtype_in<FloatTypes>(def.input_dtypes[i])) {
      return unimplemented("{}: no CPU kernel for input {} of type {}", def.describe(), i,
                           def.input_dtypes[i]);
    }
  }
  const double epsilon = def.attrs.get_float("epsilon", 1e-5f);
  return make_kernel([epsilon](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    const std::vector<double> scale = ctx.input(1).to_double_vector();
    const std::vector<double> bias = ctx.input(2).to_double_vector();
    const std::vector<double> mean = ctx.input(3).to_double_vector();
    const std::vector<double> var = ctx.input(4).to_double_vector();
    const int64_t batch = x.shape()[0], channels = x.shape()[1];
    const int64_t inner = x.shape().num_elements(2, x.rank());
    return dispatch_dtype<FloatTypes>(x.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      const T* in = x.data<T>();
      T* out = ctx.output(0).data<T>();
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t c = 0; c < channels; ++c) {
          const double stddev = std::sqrt(var[c] + epsilon);
          const int64_t base = (b * channels + c) * inner;
          for (int64_t i = base; i < base + inner; ++i) {
            const double v = static_cast<double>(ComputeType<T>(in[i]));
            out[i] = round_to<T>((v - mean[c]) / stddev * scale[c] + bias[c]);
          }
        }
      }
      return Status();
    });
  });
}

}  // namespace

std::vector<KernelEntry> batch_norm_kernels() {
  return {{"BatchNormalization", create_batch_norm}};
}

}  // namespace kestrel::runtime::cpu
