// Reference kernels of Gemm and MatMul.
//
// Operands are converted to double and every dot product is accumulated in double, then rounded
// once (float is not enough for the 16-bit types either). The innermost loop adds a row of B,
// scaled by one element of A, into a double row of the result: contiguous and vectorizable.
#include <bit>
#include <cmath>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

// A rows x cols matrix of doubles from a rank-2 tensor, transposed when `transpose` is set (then
// the tensor is cols x rows).
template <typename T>
std::vector<double> matrix(const Tensor& t, bool transpose) {
  const int64_t r = t.shape()[0], c = t.shape()[1];
  const T* p = t.data<T>();
  std::vector<double> m(static_cast<size_t>(r * c));
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      const double v = static_cast<double>(ComputeType<T>(p[i * c + j]));
      m[transpose ? j * r + i : i * c + j] = v;
    }
  }
  return m;
}

// out[m][n] = sum_k a[m][k] * b[k][n], in double, for one row-major (m x k) by (k x n) product.
void multiply(const double* a, const double* b, int64_t m, int64_t k, int64_t n, double* out) {
  for (int64_t i = 0; i < m; ++i) {
    double* row = out + i * n;
    std::fill(row, row + n, 0.0);
    for (int64_t j = 0; j < k; ++j) {
      const double av = a[i * k + j];
      const double* brow = b + j * n;
      for (int64_t c = 0; c < n; ++c) row[c] += av * brow[c];
    }
  }
}

// Gemm: Y = alpha * A' * B' + beta * C, C broadcasting to (M, N).
template <typename T>
Status gemm(const Attributes& attrs, KernelContext& ctx) {
  const bool trans_a = attrs.get_int("transA", 0) != 0;
  const bool trans_b = attrs.get_int("transB", 0) != 0;
  const double alpha = attrs.get_float("alpha", 1.0f), beta = attrs.get_float("beta", 1.0f);
  const std::vector<double> a = matrix<T>(ctx.input(0), trans_a);
  const std::vector<double> b = matrix<T>(ctx.input(1), trans_b);
  Tensor& y = ctx.output(0);
  const int64_t m = y.shape()[0], n = y.shape()[1];
  const int64_t k = trans_a ? ctx.input(0).shape()[0] : ctx.input(0).shape()[1];
  std::vector<double> product(static_cast<size_t>(m * n));
  multiply(a.data(), b.data(), m, k, n, product.data());
  T* out = y.data<T>();
  if (!ctx.has_input(2)) {
    for (int64_t i = 0; i < m * n; ++i) out[i] = round_to<T>(alpha * product[i]);
    return Status();
  }
  const Tensor& c = ctx.input(2);
  const std::array<std::vector<int64_t>, 1> strides = {broadcast_strides(c.shape(), y.shape())};
  const T* pc = c.data<T>();
  for_each_broadcast<1>(y.shape(), strides, [&](int64_t i, const std::array<int64_t, 1>& o) {
    out[i] = round_to<T>(alpha * product[i] + beta * static_cast<double>(ComputeType<T>(pc[o[0]])));
  });
  return Status();
}

// MatMul with numpy.matmul's semantics: a 1-D A is one row, a 1-D B one column; the batch
// dimensions (all but the last two) broadcast.
template <typename T>
Status matmul(KernelContext& ctx) {
  const Tensor& ta = ctx.input(0);
  const Tensor& tb = ctx.input(1);
  Tensor& y = ctx.output(0);
  const size_t ra = ta.rank(), rb = tb.rank();
  const int64_t m = ra >= 2 ? ta.shape()[ra - 2] : 1;
  const int64_t k = ta.shape()[ra - 1];
  const int64_t n = rb >= 2 ? tb.shape()[rb - 1] : 1;
  const Shape batch_a(
      std::vector<int64_t>(ta.shape().begin(), ta.shape().end() - std::min<size_t>(ra, 2)));
  const Shape batch_b(
      std::vector<int64_t>(tb.shape().begin(), tb.shape().end() - std::min<size_t>(rb, 2)));
  const size_t batch_rank = y.rank() - (ra >= 2) - (rb >= 2);
  const Shape batch(std::vector<int64_t>(y.shape().begin(), y.shape().begin() + batch_rank));
  std::vector<double> a(static_cast<size_t>(ta.num_elements()));
  std::vector<double> b(static_cast<size_t>(tb.num_elements()));
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<double>(ComputeType<T>(ta.data<T>()[i]));
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<double>(ComputeType<T>(tb.data<T>()[i]));
  std::vector<double> product(static_cast<size_t>(m * n));
  T* out = y.data<T>();
  // Strides in units of whole matrices: batch index -> matrix index of A and of B.
  const std::array<std::vector<int64_t>, 2> strides = {broadcast_strides(batch_a, batch),
                                                       broadcast_strides(batch_b, batch)};
  for_each_broadcast<2>(batch, strides, [&](int64_t i, const std::array<int64_t, 2>& o) {
    multiply(a.data() + o[0] * m * k, b.data() + o[1] * k * n, m, k, n, product.data());
    T* dst = out + i * m * n;
    for (int64_t j = 0; j < m * n; ++j) dst[j] = round_to<T>(product[j]);
  });
  return Status();
}

StatusOr<std::unique_ptr<Kernel>> create_gemm(const KernelDef& def) {
  if (!dtype_in<FloatTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([attrs = def.attrs](KernelContext& ctx) -> Status {
    return dispatch_dtype<FloatTypes>(ctx.input(0).dtype(),
                                      [&]<typename T>(TypeTag<T>) { return gemm<T>(attrs, ctx); });
  });
}

StatusOr<std::unique_ptr<Kernel>> create_matmul(const KernelDef& def) {
  if (!dtype_in<FloatTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([](KernelContext& ctx) -> Status {
    return dispatch_dtype<FloatTypes>(ctx.input(0).dtype(),
                                      [&]<typename T>(TypeTag<T>) { return matmul<T>(ctx); });
  });
}

}  // namespace

std::vector<KernelEntry> matmul_kernels() {
  return {{"Gemm", create_gemm}, {"MatMul", create_matmul}};
}

}  // namespace kestrel::runtime::cpu
