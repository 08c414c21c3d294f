// Reference kernels of the reductions (ReduceSum, ReduceMean, ReduceMax, ...) and of ArgMax and
// ArgMin.
//
// A reduction folds every input element into the accumulator of the output element it lands on
// (the output seen with keepdims=1 broadcasts to the input), then finishes each accumulator.
// Accumulators are double for the floating types and 64-bit unsigned for the integers, where
// overflow wraps around like two's complement instead of being undefined. Reductions over an empty
// set give what ONNX specifies: 0 for the sums and norms, 1 for the product, -inf (or the lowest
// value) for ReduceMax, ReduceLogSum and ReduceLogSumExp, +inf (or the highest) for ReduceMin, and
// NaN for ReduceMean (0 for integers), which ONNX leaves undefined.
//
// NaN: ReduceMax and ReduceMin propagate it; ArgMax and ArgMin take a NaN as the extreme value, as
// numpy does (the first NaN, or the last with select_last_index).
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

using ReduceTypes = TypeList<float, double, Half, BFloat16, int32_t, int64_t, uint32_t, uint64_t>;
using ReduceMinMaxTypes = TypeList<float, double, Half, BFloat16, int32_t, int64_t, uint32_t,
                                   uint64_t, int8_t, uint8_t, bool>;

enum class Op { kSum, kMean, kProd, kL1, kL2, kSumSquare, kLogSum, kLogSumExp, kMax, kMin };

template <typename T>
constexpr bool kIsFloat = std::is_floating_point_v<ComputeType<T>>;

// The accumulator of the sums and the product.
template <typename T>
using Acc = std::conditional_t<kIsFloat<T>, double, uint64_t>;

template <typename T>
Acc<T> widen(T x) {
  if constexpr (kIsFloat<T>) {
    return static_cast<double>(ComputeType<T>(x));
  } else {
    // Sign-extends negative values: modular arithmetic on the result matches two's complement.
    return static_cast<uint64_t>(x);
  }
}

// A result computed in double as T: rounded for the floating types, saturated for the integers.
template <typename T>
T narrow(double v) {
  if constexpr (kIsFloat<T>) {
    return to_storage<T>(v);
  } else {
    return saturating_cast<T>(v);
  }
}

// Which dimensions of input 0 are reduced, from the `axes` input as the shape rule reads it.
// Checked again here: a kernel must not trust that its inputs went through the rule.
StatusOr<std::vector<bool>> reduced_axes(const KernelContext& ctx, bool noop) {
  const auto rank = static_cast<int64_t>(ctx.input(0).rank());
  std::vector<int64_t> axes;
  if (ctx.has_input(1)) {
    KS_ASSIGN_OR_RETURN(axes, ctx.input(1).to_int64_vector());
  }
  std::vector<bool> reduced(static_cast<size_t>(rank), axes.empty() && !noop);
  for (int64_t a : axes) {
    KS_ASSIGN_OR_RETURN(const int64_t n, normalize_axis(a, rank));
    reduced[static_cast<size_t>(n)] = true;
  }
  return reduced;
}

// Input 0's shape with the reduced dimensions set to 1.
Shape kept_shape(const Shape& in, const std::vector<bool>& reduced) {
  Shape out = in;
  for (size_t d = 0; d < in.rank(); ++d) {
    if (reduced[d]) out[d] = 1;
  }
  return out;
}

// Calls f(input_index, output_index) for every input element, in row-major order.
template <typename F>
void for_each_reduced(const Shape& in, const Shape& kept, F&& f) {
  const std::array<std::vector<int64_t>, 1> strides = {broadcast_strides(kept, in)};
  for_each_broadcast<1>(in, strides,
                        [&](int64_t i, const std::array<int64_t, 1>& o) { f(i, o[0]); });
}

template <Op op, typename T>
void reduce_max_min(const Tensor& x, const Shape& kept, Tensor& y) {
  // double holds every value of the floating types exactly; integers stay as they are, and bool
  // (false < true) becomes uint8_t, out of std::vector<bool>'s way.
  using C = std::conditional_t<kIsFloat<T>, double,
                               std::conditional_t<std::is_same_v<T, bool>, uint8_t, T>>;
  C init;
  if constexpr (kIsFloat<T>) {
    init = op == Op::kMax ? -std::numeric_limits<double>::infinity()
                          : std::numeric_limits<double>::infinity();
  } else {
    init = op == Op::kMax ? C(std::numeric_limits<T>::lowest()) : C(std::numeric_limits<T>::max());
  }
  std::vector<C> acc(static_cast<size_t>(y.num_elements()), init);
  const T* in = x.data<T>();
  for_each_reduced(x.shape(), kept, [&](int64_t i, int64_t o) {
    C& a = acc[static_cast<size_t>(o)];
    const C v = C(ComputeType<T>(in[i]));
    if constexpr (kIsFloat<T>) {
      // NaN propagates, like numpy.maximum.reduce: once there, it stays.
      if (std::isnan(a)) return;
      if (std::isnan(v)) {
        a = v;
        return;
      }
    }
    if (op == Op::kMax ? a < v : v < a) a = v;
  });
  T* out = y.data<T>();
  for (size_t j = 0; j < acc.size(); ++j) out[j] = to_storage<T>(acc[j]);
}

// ReduceLogSumExp: log(sum(exp(x - m))) + m with m the largest element, so that exp cannot
// overflow. Two passes: the maxima, then the sums.
template <typename T>
void reduce_log_sum_exp(const Tensor& x, const Shape& kept, Tensor& y) {
  const size_t n = static_cast<size_t>(y.num_elements());
  const T* in = x.data<T>();
  std::vector<double> max(n, -std::numeric_limits<double>::infinity());
  for_each_reduced(x.shape(), kept, [&](int64_t i, int64_t o) {
    double& m = max[static_cast<size_t>(o)];
    const double v = static_cast<double>(ComputeType<T>(in[i]));
    if (!std::isnan(m) && (std::isnan(v) || v > m)) m = v;  // a NaN sticks
  });
  std::vector<double> sum(n, 0.0);
  for_each_reduced(x.shape(), kept, [&](int64_t i, int64_t o) {
    const double m = max[static_cast<size_t>(o)];
    if (std::isfinite(m)) {
      sum[static_cast<size_t>(o)] += std::exp(static_cast<double>(ComputeType<T>(in[i])) - m);
    }
  });
  T* out = y.data<T>();
  for (size_t j = 0; j < n; ++j) {
    // An infinite or NaN maximum is the result: all -inf (or nothing), some +inf, some NaN.
    const double r = std::isfinite(max[j]) ? max[j] + std::log(sum[j]) : max[j];
    out[j] = narrow<T>(r);
  }
}

// The reductions computed in double for every element type (integers saturate on the way out).
template <Op op, typename T>
void reduce_in_double(const Tensor& x, const Shape& kept, Tensor& y) {
  std::vector<double> acc(static_cast<size_t>(y.num_elements()), 0.0);
  const T* in = x.data<T>();
  for_each_reduced(x.shape(), kept, [&](int64_t i, int64_t o) {
    const double v = static_cast<double>(ComputeType<T>(in[i]));
    acc[static_cast<size_t>(o)] += op == Op::kL2 ? v * v : v;
  });
  T* out = y.data<T>();
  for (size_t j = 0; j < acc.size(); ++j) {
    const double r = op == Op::kL2 ? std::sqrt(acc[j]) : std::log(acc[j]);
    out[j] = narrow<T>(r);
  }
}

// Sum, mean, product, L1 norm, sum of squares: accumulated in Acc<T>.
template <Op op, typename T>
void reduce_sum_like(const Tensor& x, const Shape& kept, Tensor& y) {
  using A = Acc<T>;
  std::vector<A> acc(static_cast<size_t>(y.num_elements()), op == Op::kProd ? A(1) : A(0));
  const T* in = x.data<T>();
  for_each_reduced(x.shape(), kept, [&](int64_t i, int64_t o) {
    A& a = acc[static_cast<size_t>(o)];
    const A v = widen(in[i]);
    if constexpr (op == Op::kProd) {
      a *= v;
    } else if constexpr (op == Op::kSumSquare) {
      a += v * v;
    } else if constexpr (op == Op::kL1) {
      if constexpr (kIsFloat<T>) {
        a += std::abs(v);
      } else if constexpr (std::is_signed_v<T>) {
        a += in[i] < T(0) ? A(0) - v : v;
      } else {
        a += v;
      }
    } else {
      a += v;
    }
  });
  // Elements folded into each output element; 0 for an empty reduction.
  const int64_t count = y.num_elements() == 0 ? 0 : x.num_elements() / y.num_elements();
  T* out = y.data<T>();
  for (size_t j = 0; j < acc.size(); ++j) {
    if constexpr (op == Op::kMean) {
      if constexpr (kIsFloat<T>) {
        out[j] = to_storage<T>(count == 0 ? std::numeric_limits<double>::quiet_NaN()
                                          : acc[j] / static_cast<double>(count));
      } else if constexpr (std::is_signed_v<T>) {
        out[j] = count == 0 ? T(0) : static_cast<T>(static_cast<int64_t>(acc[j]) / count);
      } else {
        out[j] = count == 0 ? T(0) : static_cast<T>(acc[j] / static_cast<uint64_t>(count));
      }
    } else {
      // Integers: the low bits of the wrapped 64-bit result, as two's complement arithmetic in T.
      out[j] = to_storage<T>(acc[j]);
    }
  }
}

template <Op op>
StatusOr<std::unique_ptr<Kernel>> create_reduce(const KernelDef& def) {
  constexpr bool min_max = op == Op::kMax || op == Op::kMin;
  using List = std::conditional_t<min_max, ReduceMinMaxTypes, ReduceTypes>;
  if (!dtype_in<List>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  const bool noop = def.attrs.get_int("noop_with_empty_axes", 0) != 0;
  return make_kernel([noop](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.output(0);
    KS_ASSIGN_OR_RETURN(const std::vector<bool> reduced, reduced_axes(ctx, noop));
    const Shape kept = kept_shape(x.shape(), reduced);
    if (kept.num_elements() != y.num_elements()) {
      return internal_error("reduction of {} to {} elements, but the output is {}", x.shape(),
                            kept.num_elements(), y.shape());
    }
    return dispatch_dtype<List>(x.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      if constexpr (min_max) {
        reduce_max_min<op, T>(x, kept, y);
      } else if constexpr (op == Op::kLogSumExp) {
        reduce_log_sum_exp<T>(x, kept, y);
      } else if constexpr (op == Op::kL2 || op == Op::kLogSum) {
        reduce_in_double<op, T>(x, kept, y);
      } else {
        reduce_sum_like<op, T>(x, kept, y);
      }
      return Status();
    });
  });
}

// ArgMax (max = true) and ArgMin: the index along `axis` of the extreme element.
template <bool max>
StatusOr<std::unique_ptr<Kernel>> create_arg_reduce(const KernelDef& def) {
  if (!dtype_in<NumericTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  const int64_t axis_attr = def.attrs.get_int("axis", 0);
  const bool last = def.attrs.get_int("select_last_index", 0) != 0;
  return make_kernel([axis_attr, last](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    KS_ASSIGN_OR_RETURN(const int64_t axis, normalize_axis(axis_attr, x.rank()));
    const auto a = static_cast<size_t>(axis);
    const int64_t outer = x.shape().num_elements(0, a);
    const int64_t n = x.shape()[a];
    const int64_t inner = x.shape().num_elements(a + 1, x.rank());
    Tensor& y = ctx.output(0);
    if (y.num_elements() != outer * inner) {
      return internal_error("{} of {} along axis {} into {}", max ? "ArgMax" : "ArgMin", x.shape(),
                            axis, y.shape());
    }
    if (n == 0 && y.num_elements() > 0) {
      return invalid_argument("axis {} of shape {} is empty", axis_attr, x.shape());
    }
    return dispatch_dtype<NumericTypes>(x.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      using C = ComputeType<T>;
      // Whether v replaces the current best b: strictly more extreme, or equal with
      // select_last_index. A NaN beats every number, and a later NaN only with select_last_index.
      auto better = [last](C v, C b) {
        if constexpr (std::is_floating_point_v<C>) {
          if (std::isnan(b)) return last && std::isnan(v);
          if (std::isnan(v)) return true;
        }
        return (max ? b < v : v < b) || (last && v == b);
      };
      const T* in = x.data<T>();
      int64_t* out = y.data<int64_t>();
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) {
          const T* p = in + o * n * inner + i;
          int64_t best = 0;
          for (int64_t k = 1; k < n; ++k) {
            if (better(C(p[k * inner]), C(p[best * inner]))) best = k;
          }
          out[o * inner + i] = best;
        }
      }
      return Status();
    });
  });
}

}  // namespace

std::vector<KernelEntry> reduce_kernels() {
  return {
      KernelEntry{"ReduceSum", create_reduce<Op::kSum>},
      KernelEntry{"ReduceMean", create_reduce<Op::kMean>},
      KernelEntry{"ReduceProd", create_reduce<Op::kProd>},
      KernelEntry{"ReduceL1", create_reduce<Op::kL1>},
      KernelEntry{"ReduceL2", create_reduce<Op::kL2>},
      KernelEntry{"ReduceSumSquare", create_reduce<Op::kSumSquare>},
      KernelEntry{"ReduceLogSum", create_reduce<Op::kLogSum>},
      KernelEntry{"ReduceLogSumExp", create_reduce<Op::kLogSumExp>},
      KernelEntry{"ReduceMax", create_reduce<Op::kMax>},
      KernelEntry{"ReduceMin", create_reduce<Op::kMin>},
      KernelEntry{"ArgMax", create_arg_reduce<true>},
      KernelEntry{"ArgMin", create_arg_reduce<false>},
  };
}

}  // namespace kestrel::runtime::cpu
