// Reference kernels of Softmax, LogSoftmax and Hardmax (opset 13: along one axis).
//
// Softmax and LogSoftmax subtract the maximum before exponentiating and compute in double, rounding
// once. Hardmax marks the first maximum along the axis, or the first NaN when there is one, as
// numpy.argmax does.
#include <bit>
#include <cmath>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

enum class Op { kSoftmax, kLogSoftmax, kHardmax };

template <typename T, Op kOp>
Status softmax(int64_t axis, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Shape& shape = x.shape();
  if (axis < 0) axis += static_cast<int64_t>(shape.rank());
  const auto a = static_cast<size_t>(axis);
  const int64_t outer = shape.num_elements(0, a), n = shape[a];
  const int64_t inner = shape.num_elements(a + 1, shape.rank());
  const T* in = x.data<T>();
  T* out = ctx.output(0).data<T>();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      // Element j of this slice is at base + j * inner.
      const int64_t base = o * n * inner + i;
      for (int64_t j = 0; j < n; ++j) {
        v[j] = static_cast<double>(ComputeType<T>(in[base + j * inner]));
      }
      if constexpr (kOp == Op::kHardmax) {
        int64_t best = 0;
        for (int64_t j = 1; j < n && !std::isnan(v[best]); ++j) {
          if (v[j] > v[best] || std::isnan(v[j])) best = j;
        }
        for (int64_t j = 0; j < n; ++j) out[base + j * inner] = round_to<T>(j == best ? 1.0 : 0.0);
      } else {
        double max = -INFINITY;
        for (int64_t j = 0; j < n; ++j) max = std::max(max, v[j]);
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += std::exp(v[j] - max);
        for (int64_t j = 0; j < n; ++j) {
          const double r =
              kOp == Op::kSoftmax ? std::exp(v[j] - max) / sum : (v[j] - max) - std::log(sum);
          out[base + j * inner] = round_to<T>(r);
        }
      }
    }
  }
  return Status();
}

template <Op kOp>
StatusOr<std::unique_ptr<Kernel>> create(const KernelDef& def) {
  if (!dtype_in<FloatTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([axis = def.attrs.get_int("axis", -1)](KernelContext& ctx) -> Status {
    return dispatch_dtype<FloatTypes>(
        ctx.input(0).dtype(), [&]<typename T>(TypeTag<T>) { return softmax<T, kOp>(axis, ctx); });
  });
}

}  // namespace

std::vector<KernelEntry> softmax_kernels() {
  return {{"Softmax", create<Op::kSoftmax>},
          {"LogSoftmax", create<Op::kLogSoftmax>},
          {"Hardmax", create<Op::kHardmax>}};
}

}  // namespace kestrel::runtime::cpu
