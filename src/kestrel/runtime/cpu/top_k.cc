// Reference kernel of TopK: the k largest (or smallest) elements along an axis, with their indices.
//
// Each slice along the axis is ordered by (value, index): equal values keep the lower index first,
// as ONNX requires, so the result is the same whether `sorted` is set or not. NaN orders above
// every number (as in numpy's sort), which keeps the order a strict weak ordering: std::sort with
// a plain `<` on NaN would be undefined behaviour.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

// a < b in the total order where NaN is above every number and equal to itself.
template <typename C>
bool less_than(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    if (std::isnan(a)) return false;
    if (std::isnan(b)) return true;
  }
  return a < b;
}

StatusOr<std::unique_ptr<Kernel>> create_top_k(const KernelDef& def) {
  if (!dtype_in<NumericTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  const int64_t axis_attr = def.attrs.get_int("axis", -1);
  const bool largest = def.attrs.get_int("largest", 1) != 0;
  return make_kernel([axis_attr, largest](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    KS_ASSIGN_OR_RETURN(const std::vector<int64_t> ks, ctx.input(1).to_int64_vector());
    KS_ASSIGN_OR_RETURN(const int64_t axis, normalize_axis(axis_attr, x.rank()));
    const auto a = static_cast<size_t>(axis);
    const int64_t n = x.shape()[a];
    if (ks.size() != 1 || ks[0] < 0 || ks[0] > n) {
      return invalid_argument("k must be one value in 0..{} (axis {} of shape {})", n, axis_attr,
                              x.shape());
    }
    const int64_t k = ks[0];
    const int64_t outer = x.shape().num_elements(0, a);
    const int64_t inner = x.shape().num_elements(a + 1, x.rank());
    Tensor& values = ctx.output(0);
    Tensor& indices = ctx.output(1);
    if (values.num_elements() != outer * k * inner || indices.num_elements() != outer * k * inner) {
      return internal_error("TopK of {} with k = {} into {} and {}", x.shape(), k, values.shape(),
                            indices.shape());
    }
    return dispatch_dtype<NumericTypes>(x.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      using C = ComputeType<T>;
      const T* in = x.data<T>();
      T* out_values = values.data<T>();
      int64_t* out_indices = indices.data<int64_t>();
      std::vector<int64_t> order(static_cast<size_t>(n));
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) {
          const T* p = in + o * n * inner + i;
          auto at = [&](int64_t j) { return C(p[j * inner]); };
          // First in the output: the more extreme value, then the lower index.
          auto first = [&](int64_t l, int64_t r) {
            const C vl = at(l), vr = at(r);
            if (largest ? less_than(vr, vl) : less_than(vl, vr)) return true;
            if (largest ? less_than(vl, vr) : less_than(vr, vl)) return false;
            return l < r;
          };
          std::iota(order.begin(), order.end(), int64_t{0});
          std::partial_sort(order.begin(), order.begin() + k, order.end(), first);
          for (int64_t j = 0; j < k; ++j) {
            const int64_t dst = (o * k + j) * inner + i;
            out_values[dst] = p[order[static_cast<size_t>(j)] * inner];
            out_indices[dst] = order[static_cast<size_t>(j)];
          }
        }
      }
      return Status();
    });
  });
}

}  // namespace

std::vector<KernelEntry> top_k_kernels() { return {KernelEntry{"TopK", create_top_k}}; }

}  // namespace kestrel::runtime::cpu
