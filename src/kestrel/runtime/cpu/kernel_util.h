// Small helpers for writing CPU kernels. Internal to runtime/cpu/.
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "kestrel/runtime/kernel.h"

namespace kestrel::runtime::cpu {

// A kernel whose run() is a callable: most reference kernels are one function of the attributes.
template <typename F>
class FunctionKernel final : public Kernel {
 public:
  explicit FunctionKernel(F f) : f_(std::move(f)) {}
  Status run(KernelContext& ctx) override { return f_(ctx); }

 private:
  F f_;
};

template <typename F>
std::unique_ptr<Kernel> make_kernel(F f) {
  return std::make_unique<FunctionKernel<F>>(std::move(f));
}

// The type arithmetic on T is done in: float for the 16-bit floats, T otherwise.
template <typename T>
using ComputeType =
    std::conditional_t<std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, float, T>;

// Converts a computed value back to T (rounding for the 16-bit floats).
template <typename T, typename C>
T to_storage(C v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    return T(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// Rounds a double to T exactly once. For the 16-bit floats the intermediate float is rounded to
// odd, which makes its final round-to-nearest-even equal to rounding the double directly (a plain
// double -> float -> half conversion can round twice and land on the wrong neighbour).
template <typename T>
T round_to(double v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    float f = static_cast<float>(v);
    if (std::isfinite(v) && static_cast<double>(f) != v) {
      if (std::abs(static_cast<double>(f)) > std::abs(v)) f = std::nextafter(f, 0.0f);
      f = std::bit_cast<float>(std::bit_cast<uint32_t>(f) | 1u);
    }
    return T(f);
  } else {
    return static_cast<T>(v);
  }
}

// Strides of `in` as seen from a broadcast output of shape `out`: 0 along broadcast dimensions,
// aligned to out's rank. REQUIRES: `in` broadcasts to `out`.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

// Calls f(out_index, offsets) for every element of `out`, where offsets[k] is the element of
// input k (with `strides[k]` from broadcast_strides) that lands there. Row-major order.
template <size_t N, typename F>
void for_each_broadcast(const Shape& out, const std::array<std::vector<int64_t>, N>& strides,
                        F&& f) {
  const int64_t total = out.num_elements();
  if (total == 0) return;
  const size_t rank = out.rank();
  std::array<int64_t, N> offsets{};
  if (rank == 0) {
    f(int64_t{0}, offsets);
    return;
  }
  std::vector<int64_t> index(rank, 0);
  const int64_t inner = out[rank - 1];
  std::array<int64_t, N> inner_stride{};
  for (size_t k = 0; k < N; ++k) inner_stride[k] = strides[k][rank - 1];
  for (int64_t i = 0; i < total; i += inner) {
    std::array<int64_t, N> o = offsets;
    for (int64_t j = 0; j < inner; ++j) {
      f(i + j, o);
      for (size_t k = 0; k < N; ++k) o[k] += inner_stride[k];
    }
    // Advance the multi-index over all but the innermost dimension.
    for (size_t d = rank - 1; d-- > 0;) {
      ++index[d];
      for (size_t k = 0; k < N; ++k) offsets[k] += strides[k][d];
      if (index[d] < out[d]) break;
      for (size_t k = 0; k < N; ++k) offsets[k] -= strides[k][d] * out[d];
      index[d] = 0;
    }
  }
}

// static_cast from a floating value to integer type I that is defined for every input: NaN gives 0
// and out-of-range values saturate (C++ leaves both undefined).
template <typename I, typename F>
I saturating_cast(F v) {
  if constexpr (std::is_same_v<I, bool>) {
    return v != F(0);
  } else {
    if (std::isnan(static_cast<double>(v))) return I(0);
    const double d = static_cast<double>(v);
    if (d <= static_cast<double>(std::numeric_limits<I>::lowest())) {
      return std::numeric_limits<I>::lowest();
    }
    if (d >= static_cast<double>(std::numeric_limits<I>::max()))
      return std::numeric_limits<I>::max();
    return static_cast<I>(v);
  }
}

}  // namespace kestrel::runtime::cpu
