// Reference kernels of the one-input elementwise operators: y[i] = f(x[i]).
//
// 16-bit floats are computed in float and rounded once on the way out.
#include <algorithm>
#include <cmath>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

// A kernel applying `op` (a generic callable on the compute type) to each element of input 0.
template <typename List, typename Op>
std::unique_ptr<Kernel> elementwise(Op op) {
  return make_kernel([op](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.output(0);
    return dispatch_dtype<List>(x.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      const T* in = x.data<T>();
      T* out = y.data<T>();
      const int64_t n = x.num_elements();
      for (int64_t i = 0; i < n; ++i) out[i] = to_storage<T>(op(ComputeType<T>(in[i])));
      return Status();
    });
  });
}

template <typename List>
StatusOr<std::unique_ptr<Kernel>> checked(const KernelDef& def, std::unique_ptr<Kernel> k) {
  if (!dtype_in<List>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return k;
}

#define KS_UNARY(Name, List, ...)                                          \
  KernelEntry {                                                            \
    Name, +[](const KernelDef& def) -> StatusOr<std::unique_ptr<Kernel>> { \
      const Attributes& attrs = def.attrs;                                 \
      (void)attrs;                                                         \
      return checked<List>(def, elementwise<List>(__VA_ARGS__));           \
    }                                                                      \
  }

StatusOr<std::unique_ptr<Kernel>> create_identity(const KernelDef&) {
  // The output shares the input's storage: no copy.
  return make_kernel([](KernelContext& ctx) -> Status {
    ctx.output(0) = ctx.input(0);
    return Status();
  });
}

StatusOr<std::unique_ptr<Kernel>> create_clip(const KernelDef& def) {
  if (!dtype_in<NumericTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.output(0);
    return dispatch_dtype<NumericTypes>(x.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      using C = ComputeType<T>;
      C lo = std::numeric_limits<C>::lowest(), hi = std::numeric_limits<C>::max();
      if constexpr (std::is_floating_point_v<C>) {
        lo = -std::numeric_limits<C>::infinity();
        hi = std::numeric_limits<C>::infinity();
      }
      if (ctx.has_input(1)) lo = C(ctx.input(1).data<T>()[0]);
      if (ctx.has_input(2)) hi = C(ctx.input(2).data<T>()[0]);
      const T* in = x.data<T>();
      T* out = y.data<T>();
      for (int64_t i = 0; i < x.num_elements(); ++i) {
        const C v = C(in[i]);
        // NaN passes through; min is applied before max, as ONNX specifies.
        out[i] = to_storage<T>(v < lo ? lo : (v > hi ? hi : v));
        if (lo > hi) out[i] = to_storage<T>(hi);
      }
      return Status();
    });
  });
}

}  // namespace

std::vector<KernelEntry> unary_kernels() {
  return {
      KS_UNARY("Abs", NumericTypes,
               [](auto x) {
                 if constexpr (std::is_unsigned_v<decltype(x)>)
                   return x;
                 else
                   return x < decltype(x)(0) ? decltype(x)(-x) : x;
               }),
      KS_UNARY("Ceil", FloatTypes, [](auto x) { return std::ceil(x); }),
      KS_UNARY("Exp", FloatTypes, [](auto x) { return std::exp(x); }),
      KS_UNARY("Floor", FloatTypes, [](auto x) { return std::floor(x); }),
      KS_UNARY(
          "HardSigmoid", FloatTypes,
          [alpha = attrs.get_float("alpha", 0.2f), beta = attrs.get_float("beta", 0.5f)](auto x) {
            using C = decltype(x);
            return std::max(C(0), std::min(C(1), C(alpha) * x + C(beta)));
          }),
      KS_UNARY("HardSwish", FloatTypes,
               [](auto x) {
                 using C = decltype(x);
                 return x * std::max(C(0), std::min(C(1), x / C(6) + C(0.5)));
               }),
      KS_UNARY("LeakyRelu", FloatTypes,
               [alpha = attrs.get_float("alpha", 0.01f)](auto x) {
                 using C = decltype(x);
                 return x < C(0) ? C(alpha) * x : x;
               }),
      KS_UNARY("Log", FloatTypes, [](auto x) { return std::log(x); }),
      KS_UNARY("Neg", SignedNumericTypes, [](auto x) { return decltype(x)(-x); }),
      KS_UNARY("Not", TypeList<bool>, [](bool x) { return !x; }),
      KS_UNARY("Relu", SignedNumericTypes,
               [](auto x) { return x < decltype(x)(0) ? decltype(x)(0) : x; }),
      // Halves round to even, as ONNX requires: nearbyint in the default rounding mode.
      KS_UNARY("Round", FloatTypes, [](auto x) { return std::nearbyint(x); }),
      KS_UNARY("Sigmoid", FloatTypes,
               [](auto x) {
                 using C = decltype(x);
                 return C(1) / (C(1) + std::exp(-x));
               }),
      KS_UNARY("Sqrt", FloatTypes, [](auto x) { return std::sqrt(x); }),
      KernelEntry{"Identity", create_identity},
      KernelEntry{"Clip", create_clip},
  };
}

}  // namespace kestrel::runtime::cpu
