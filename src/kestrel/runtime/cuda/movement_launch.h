// Launchers of the data-movement kernels that take whole operators (Transpose, Concat, Split) and
// the index arithmetic those kernels share with Resize and the pools: a 32-bit division by a
// multiply and a shift, and the vector types that move 1 to 16 bytes at once. Plain C++ like
// launch.h, so that the .cc files and the .cu files can both include it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kestrel/runtime/cuda/launch.h"

#if defined(__CUDACC__)
#define KS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define KS_HOST_DEVICE inline
#endif

namespace kestrel::runtime::cuda {

// n / d and n % d for 0 <= n < 2^31 and 1 <= d < 2^31 with a multiply-high, an add and a shift
// (Granlund and Montgomery's method, in the form of PyTorch's IntDivider): a 64-bit division
// costs about a hundred instructions, which is what made the per-element index arithmetic of the
// first movement kernels slower than memory.
struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t multiplier = 1;
  uint32_t shift = 0;

  FastDivmod() = default;
  // REQUIRES: 1 <= d < 2^31.
  explicit FastDivmod(uint32_t d) : divisor(d) {
    while (shift < 31 && (uint32_t{1} << shift) < d) ++shift;
    multiplier =
        static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1);
  }
  // REQUIRES: n < 2^31 (so that t + n does not wrap).
  KS_HOST_DEVICE uint32_t div(uint32_t n) const {
    const auto t = static_cast<uint32_t>((static_cast<uint64_t>(n) * multiplier) >> 32);
    return (t + n) >> shift;
  }
  KS_HOST_DEVICE void divmod(uint32_t n, uint32_t& quotient, uint32_t& remainder) const {
    quotient = div(n);
    remainder = n - quotient * divisor;
  }
};

// The largest index the 32-bit kernels take; larger tensors run the 64-bit kernels of launch.h.
inline constexpr int64_t kMaxIndex32 = 0x7fffffff;

// The type that moves `Bytes` bytes in one access (the pointer must be aligned to it).
template <int Bytes>
struct UnitOf;
template <>
struct UnitOf<1> {
  using type = uint8_t;
};
template <>
struct UnitOf<2> {
  using type = uint16_t;
};
template <>
struct UnitOf<4> {
  using type = uint32_t;
};
template <>
struct UnitOf<8> {
  using type = uint2;
};
template <>
struct UnitOf<16> {
  using type = uint4;
};

// Runs `body` with `using U = UnitOf<bytes>::type`; returns cudaErrorInvalidValue for other sizes.
#define KS_BY_UNIT(bytes, body)     \
  switch (bytes) {                  \
    case 1: {                       \
      using U = UnitOf<1>::type;    \
      body;                         \
      break;                        \
    }                               \
    case 2: {                       \
      using U = UnitOf<2>::type;    \
      body;                         \
      break;                        \
    }                               \
    case 4: {                       \
      using U = UnitOf<4>::type;    \
      body;                         \
      break;                        \
    }                               \
    case 8: {                       \
      using U = UnitOf<8>::type;    \
      body;                         \
      break;                        \
    }                               \
    case 16: {                      \
      using U = UnitOf<16>::type;   \
      body;                         \
      break;                        \
    }                               \
    default:                        \
      return cudaErrorInvalidValue; \
  }

// The widest access (16, 8, 4, 2 or 1 bytes, at least `element_size`) that divides `bytes` and the
// address `p`.
inline int widest_unit(int element_size, uint64_t bytes, const void* p) {
  const uint64_t address = reinterpret_cast<uintptr_t>(p);
  int unit = 16;
  while (unit > element_size && (bytes % unit != 0 || address % unit != 0)) unit /= 2;
  return unit;
}

// Transpose as a gather: out[i] = in[offset of i], where output axis d has extent dims[d] and
// stride strides[0][d] in the input (elements). The launcher drops unit axes, merges axes the
// permutation keeps adjacent, then copies rows with 16-byte accesses where the innermost axis stays
// innermost, or moves tiles through shared memory where it does not (both sides coalesced).
cudaError_t launch_transpose(int element_size, const void* in, void* out,
                             const StridedShape& layout, cudaStream_t stream);

// Concat and Split in one launch: `whole` is [outer, whole_width] (elements); part k is
// [outer, widths[k]], at column offsets[k] of the whole's rows. `into_whole`: Concat (parts ->
// whole); else Split (whole -> parts). Parts of width 0 are skipped.
struct SegmentCopy {
  const void* const* parts_in = nullptr;  // Concat's inputs
  void* const* parts_out = nullptr;       // Split's outputs
  const int64_t* widths = nullptr;
  const int64_t* offsets = nullptr;
  int count = 0;
  const void* whole_in = nullptr;  // Split's input
  void* whole_out = nullptr;       // Concat's output
  int64_t outer = 0, whole_width = 0;
};
cudaError_t launch_segment_copy(int element_size, const SegmentCopy& copy, cudaStream_t stream);

}  // namespace kestrel::runtime::cuda
