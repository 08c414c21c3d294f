// FusedConcat on the GPU: one pass that reads each part (the raw output of a convolution), applies
// the part's epilogue (bias, activation, residual) and writes it into its slice of the output, so
// neither a separate epilogue pass nor a copy into the concatenation touches the data again.
//
// Each thread handles V consecutive elements of a row (16 bytes: 8 halves or 4 floats) when every
// part's width, the offset and the row length are multiples of V and the pointers are 16-byte
// aligned, which is the case for YOLO's channel counts; otherwise one element. Indices are 32-bit
// when the launch covers fewer than 2^31 vectors.
#include <cstdint>

#include "kestrel/runtime/cuda/device_math.cuh"
#include "kestrel/runtime/cuda/fused_concat_launch.h"

namespace kestrel::runtime::cuda {
namespace {

template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <typename T, int V, typename I>
__global__ void fused_concat(FusedConcatShape s, I group_width, T* __restrict__ y) {
  const I vectors_per_row = group_width / V;
  const I total = static_cast<I>(s.outer) * vectors_per_row;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const I o = i / vectors_per_row;
    const I column = (i - o * vectors_per_row) * V;  // within this launch's columns
    // The part holding `column`, and the column within it.
    I j = column;
    int k = 0;
#pragma unroll
    for (int p = 0; p < kMaxConcatParts - 1; ++p) {
      if (p == k && p + 1 < s.parts && j >= static_cast<I>(s.part[p].width)) {
        j -= static_cast<I>(s.part[p].width);
        k = p + 1;
      }
    }
    // The part's fields, picked without indexing the parameter block dynamically.
    ConcatPart part = s.part[0];
#pragma unroll
    for (int p = 1; p < kMaxConcatParts; ++p) {
      if (p == k) part = s.part[p];
    }
    const I width = static_cast<I>(part.width);
    const I at = o * width + j;
    Vec<T, V> x = *reinterpret_cast<const Vec<T, V>*>(static_cast<const T*>(part.x) + at);
    Vec<T, V> r;
    if (part.residual) {
      r = *reinterpret_cast<const Vec<T, V>*>(static_cast<const T*>(part.residual) + at);
    }
    const T* bias = static_cast<const T*>(part.bias);
    Vec<T, V> out;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      float v = to_float(x.v[e]);
      if (bias) {
        v += to_float(bias[s.inner == 1 ? j + e : (j + e) / static_cast<I>(s.inner)]);
      }
      v = activate(part.activation, v, part.alpha, part.beta);
      if (part.residual) v += to_float(r.v[e]);
      out.v[e] = from_float<T>(v);
    }
    *reinterpret_cast<Vec<T, V>*>(y + static_cast<I>(s.offset) + o * static_cast<I>(s.row) +
                                  column) = out;
  }
}

template <typename T, int V>
cudaError_t launch(const FusedConcatShape& s, int64_t group_width, void* y, cudaStream_t stream) {
  const int64_t vectors = s.outer * (group_width / V);
  if (vectors == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(vectors);
  // 32-bit indices when every element index of the output fits.
  if (s.outer * s.row < (int64_t{1} << 31)) {
    fused_concat<T, V, int32_t>
        <<<blocks, 256, 0, stream>>>(s, static_cast<int32_t>(group_width), static_cast<T*>(y));
  } else {
    fused_concat<T, V, int64_t><<<blocks, 256, 0, stream>>>(s, group_width, static_cast<T*>(y));
  }
  return cudaGetLastError();
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

cudaError_t launch_fused_concat(FloatType t, const FusedConcatShape& s, void* y,
                                cudaStream_t stream) {
  const int vector = t == FloatType::kFloat16 ? 8 : 4;
  int64_t group_width = 0;
  bool vectorize = s.offset % vector == 0 && s.row % vector == 0 && aligned16(y);
  for (int k = 0; k < s.parts; ++k) {
    const ConcatPart& p = s.part[k];
    group_width += p.width;
    vectorize = vectorize && p.width % vector == 0 && aligned16(p.x) &&
                (p.residual == nullptr || aligned16(p.residual));
  }
  if (t == FloatType::kFloat16) {
    return vectorize ? launch<__half, 8>(s, group_width, y, stream)
                     : launch<__half, 1>(s, group_width, y, stream);
  }
  return vectorize ? launch<float, 4>(s, group_width, y, stream)
                   : launch<float, 1>(s, group_width, y, stream);
}

}  // namespace kestrel::runtime::cuda
