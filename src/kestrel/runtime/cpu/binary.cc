// Reference kernels of the broadcasting elementwise operators with two or more inputs.
//
// One template walks the broadcast (kernel_util.h's for_each_broadcast); each operator is a
// function of two compute-type values. Variadic Min/Max/Sum/Mean fold their inputs pairwise into
// the output.
#include <cmath>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

// out = op(a, b) elementwise with broadcasting; A and B are storage types, Out the output's.
template <typename A, typename B, typename Out, typename Op>
void broadcast_apply(const Tensor& a, const Tensor& b, Tensor& out, Op op) {
  const std::array<std::vector<int64_t>, 2> strides = {broadcast_strides(a.shape(), out.shape()),
                                                       broadcast_strides(b.shape(), out.shape())};
  const A* pa = a.data<A>();
  const B* pb = b.data<B>();
  Out* po = out.data<Out>();
  for_each_broadcast<2>(out.shape(), strides, [&](int64_t i, const std::array<int64_t, 2>& o) {
    po[i] = op(pa[o[0]], pb[o[1]]);
  });
}

// A kernel for a same-type arithmetic operator; `op` works on ComputeType<T>.
template <typename List, typename Op>
StatusOr<std::unique_ptr<Kernel>> arithmetic(const KernelDef& def, Op op) {
  if (!dtype_in<List>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([op](KernelContext& ctx) -> Status {
    return dispatch_dtype<List>(ctx.input(0).dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      using C = ComputeType<T>;
      Status status;
      auto f = [&](T x, T y) {
        if constexpr (std::is_integral_v<C>) {
          StatusOr<C> r = op(C(x), C(y));
          if (!r.ok()) {
            status = r.status();
            return T(0);
          }
          return to_storage<T>(*r);
        } else {
          return to_storage<T>(op(C(x), C(y)));
        }
      };
      // Fold the inputs: out = in0 op in1 op in2 ...; the first step reads inputs 0 and 1.
      Tensor& out = ctx.output(0);
      if (ctx.num_inputs() == 1) {
        broadcast_apply<T, T, T>(ctx.input(0), ctx.input(0), out, [](T x, T) { return x; });
      } else {
        broadcast_apply<T, T, T>(ctx.input(0), ctx.input(1), out, f);
      }
      for (size_t k = 2; k < ctx.num_inputs(); ++k) {
        // Input k may broadcast against the running result; the result already has the final
        // shape, so it is both an operand and the destination.
        Tensor acc = out;
        broadcast_apply<T, T, T>(acc, ctx.input(k), out, f);
      }
      return status;
    });
  });
}

// A comparison or logic operator: inputs of one type, bool output.
template <typename List, typename Op>
StatusOr<std::unique_ptr<Kernel>> predicate(const KernelDef& def, Op op) {
  if (!dtype_in<List>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([op](KernelContext& ctx) -> Status {
    return dispatch_dtype<List>(ctx.input(0).dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      using C = ComputeType<T>;
      broadcast_apply<T, T, bool>(ctx.input(0), ctx.input(1), ctx.output(0),
                                  [&](T x, T y) { return op(C(x), C(y)); });
      return Status();
    });
  });
}

// Pow: the exponent's type may differ from the base's. Computed in double for every type.
StatusOr<std::unique_ptr<Kernel>> create_pow(const KernelDef& def) {
  if (!dtype_in<NumericTypes>(def.input_dtypes[0]) ||
      !dtype_in<NumericTypes>(def.input_dtypes[1])) {
    return unimplemented("{}: no CPU kernel for {} ^ {}", def.describe(), def.input_dtypes[0],
                         def.input_dtypes[1]);
  }
  return make_kernel([](KernelContext& ctx) -> Status {
    const Tensor& a = ctx.input(0);
    const Tensor& b = ctx.input(1);
    return dispatch_dtype<NumericTypes>(a.dtype(), [&]<typename A>(TypeTag<A>) -> Status {
      return dispatch_dtype<NumericTypes>(b.dtype(), [&]<typename B>(TypeTag<B>) -> Status {
        broadcast_apply<A, B, A>(a, b, ctx.output(0), [](A x, B y) {
          const double r = std::pow(static_cast<double>(ComputeType<A>(x)),
                                    static_cast<double>(ComputeType<B>(y)));
          if constexpr (std::is_integral_v<A>)
            return saturating_cast<A>(r);
          else
            return to_storage<A>(r);
        });
        return Status();
      });
    });
  });
}

StatusOr<std::unique_ptr<Kernel>> create_where(const KernelDef& def) {
  if (!dtype_in<AllTypes>(def.input_dtypes[1])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[1]);
  }
  return make_kernel([](KernelContext& ctx) -> Status {
    Tensor& out = ctx.output(0);
    return dispatch_dtype<AllTypes>(out.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      const std::array<std::vector<int64_t>, 3> strides = {
          broadcast_strides(ctx.input(0).shape(), out.shape()),
          broadcast_strides(ctx.input(1).shape(), out.shape()),
          broadcast_strides(ctx.input(2).shape(), out.shape())};
      const bool* c = ctx.input(0).data<bool>();
      const T* x = ctx.input(1).data<T>();
      const T* y = ctx.input(2).data<T>();
      T* o = out.data<T>();
      for_each_broadcast<3>(out.shape(), strides, [&](int64_t i, const std::array<int64_t, 3>& k) {
        o[i] = c[k[0]] ? x[k[1]] : y[k[2]];
      });
      return Status();
    });
  });
}

// max/min that propagate NaN, like numpy.maximum.
template <typename C>
C nan_max(C x, C y) {
  if constexpr (std::is_floating_point_v<C>) {
    if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<C>::quiet_NaN();
  }
  return x < y ? y : x;
}
template <typename C>
C nan_min(C x, C y) {
  if constexpr (std::is_floating_point_v<C>) {
    if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<C>::quiet_NaN();
  }
  return y < x ? y : x;
}

// Integer operators return StatusOr so that division by zero is an error, not a crash.
template <typename C>
StatusOr<C> integer_div(C x, C y) {
  if (y == C(0)) return invalid_argument("integer division by zero");
  if constexpr (std::is_signed_v<C>) {
    if (x == std::numeric_limits<C>::min() && y == C(-1)) return x;  // wraps, like two's complement
  }
  return C(x / y);
}

#define KS_ARITH(Name, List, int_body, float_body)                         \
  KernelEntry {                                                            \
    Name, +[](const KernelDef& def) -> StatusOr<std::unique_ptr<Kernel>> { \
      return arithmetic<List>(def, [](auto x, auto y) {                    \
        using C = decltype(x);                                             \
        if constexpr (std::is_integral_v<C>)                               \
          return StatusOr<C>(int_body);                                    \
        else                                                               \
          return C(float_body);                                            \
      });                                                                  \
    }                                                                      \
  }

// Integer arithmetic wraps around like two's complement (computed unsigned to avoid C++ UB).
template <typename C>
C wrap_add(C x, C y) {
  using U = std::make_unsigned_t<C>;
  return static_cast<C>(static_cast<U>(x) + static_cast<U>(y));
}
template <typename C>
C wrap_sub(C x, C y) {
  using U = std::make_unsigned_t<C>;
  return static_cast<C>(static_cast<U>(x) - static_cast<U>(y));
}
template <typename C>
C wrap_mul(C x, C y) {
  using U = std::make_unsigned_t<C>;
  if constexpr (sizeof(C) < sizeof(unsigned)) {
    return static_cast<C>(static_cast<unsigned>(static_cast<U>(x)) * static_cast<U>(y));
  } else {
    return static_cast<C>(static_cast<U>(x) * static_cast<U>(y));
  }
}

#define KS_PREDICATE(Name, List, body)                                          \
  KernelEntry {                                                                 \
    Name, +[](const KernelDef& def) -> StatusOr<std::unique_ptr<Kernel>> {      \
      return predicate<List>(def, [](auto x, auto y) -> bool { return body; }); \
    }                                                                           \
  }

StatusOr<std::unique_ptr<Kernel>> create_mean(const KernelDef& def) {
  StatusOr<std::unique_ptr<Kernel>> sum =
      arithmetic<FloatTypes>(def, [](auto x, auto y) { return x + y; });
  if (!sum.ok()) return sum;
  return make_kernel(
      [sum = std::shared_ptr<Kernel>(std::move(sum).value())](KernelContext& ctx) -> Status {
        KS_RETURN_IF_ERROR(sum->run(ctx));
        Tensor& out = ctx.output(0);
        return dispatch_dtype<FloatTypes>(out.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
          using C = ComputeType<T>;
          const C n = C(ctx.num_inputs());
          for (T& v : out.values<T>()) v = to_storage<T>(C(v) / n);
          return Status();
        });
      });
}

}  // namespace

std::vector<KernelEntry> binary_kernels() {
  return {
      KS_ARITH("Add", NumericTypes, wrap_add(x, y), x + y),
      KS_ARITH("Sub", NumericTypes, wrap_sub(x, y), x - y),
      KS_ARITH("Mul", NumericTypes, wrap_mul(x, y), x * y),
      KernelEntry{"Div",
                  +[](const KernelDef& def) -> StatusOr<std::unique_ptr<Kernel>> {
                    return arithmetic<NumericTypes>(def, [](auto x, auto y) {
                      using C = decltype(x);
                      if constexpr (std::is_integral_v<C>)
                        return integer_div(x, y);
                      else
                        return C(x / y);
                    });
                  }},
      KS_ARITH("Min", NumericTypes, nan_min(x, y), nan_min(x, y)),
      KS_ARITH("Max", NumericTypes, nan_max(x, y), nan_max(x, y)),
      KS_ARITH("Sum", FloatTypes, x + y, x + y),
      KernelEntry{"Mean", create_mean},
      KernelEntry{"Pow", create_pow},
      KernelEntry{"Where", create_where},
      KS_PREDICATE("Equal", AllTypes, x == y),
      KS_PREDICATE("Less", NumericTypes, x < y),
      KS_PREDICATE("LessOrEqual", NumericTypes, x <= y),
      KS_PREDICATE("Greater", NumericTypes, x > y),
      KS_PREDICATE("GreaterOrEqual", NumericTypes, x >= y),
      KS_PREDICATE("And", TypeList<bool>, x && y),
      KS_PREDICATE("Or", TypeList<bool>, x || y),
      KS_PREDICATE("Xor", TypeList<bool>, x != y),
  };
}

}  // namespace kestrel::runtime::cpu
