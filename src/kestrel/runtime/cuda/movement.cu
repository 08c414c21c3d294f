// Data-movement kernels. They move bytes, so one instantiation per access size serves every
// element type.
//
// Transpose reduces its permutation first (unit axes dropped, axes that stay adjacent merged),
// then either gathers rows of 16-byte accesses (the innermost axis stays innermost), or moves tiles
// through shared memory so that both the reads and the writes are coalesced (it moves). Concat and
// Split copy every slice in one launch. Indices are 32-bit with divisions by multiplication
// (FastDivmod); tensors of 2^31 elements or more take the 64-bit kernels at the end.
#include <algorithm>

#include "kestrel/runtime/cuda/device_math.cuh"
#include "kestrel/runtime/cuda/movement_launch.h"

namespace kestrel::runtime::cuda {
namespace {

constexpr int kThreads = 256;

// Each thread issues this many independent loads before it stores any (its loop would otherwise
// wait for every load in turn): at least 16 bytes in flight per thread, which a full GPU needs to
// cover memory latency.
template <typename U>
inline constexpr int kIlp = sizeof(U) >= 16 ? 2 : (sizeof(U) >= 4 ? 4 : 8);

// Blocks for a grid-stride loop over n units, `ilp` per thread: enough to fill a large GPU
// several times over.
unsigned grid_for(int64_t n, int ilp) {
  const int64_t blocks = (n + kThreads * ilp - 1) / (kThreads * ilp);
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 8192));
}

// ---- Gather: out[i] = in[offset of i], with the axes right-aligned in kMaxRank slots. ----

struct GatherPlan {
  int first = kMaxRank;  // the outermost used slot
  FastDivmod dims[kMaxRank];
  uint32_t strides[kMaxRank] = {};  // in the input, in units

  __device__ __forceinline__ uint32_t offset(uint32_t i) const {
    uint32_t rest = i, at = 0;
#pragma unroll
    for (int d = kMaxRank - 1; d > 0; --d) {
      if (d <= first) break;
      uint32_t q, r;
      dims[d].divmod(rest, q, r);
      at += r * strides[d];
      rest = q;
    }
    return at + rest * strides[first];  // rest: the outermost index
  }
};

template <typename U>
__global__ void gather_units(const U* __restrict__ in, U* __restrict__ out, uint32_t n,
                             GatherPlan p) {
  constexpr int kK = kIlp<U>;
  for (uint32_t base = blockIdx.x * blockDim.x * kK + threadIdx.x; base < n;
       base += gridDim.x * blockDim.x * kK) {
    U v[kK];
#pragma unroll
    for (int k = 0; k < kK; ++k) {
      const uint32_t i = base + k * blockDim.x;
      if (i < n) v[k] = in[p.offset(i)];
    }
#pragma unroll
    for (int k = 0; k < kK; ++k) {
      const uint32_t i = base + k * blockDim.x;
      if (i < n) out[i] = v[k];
    }
  }
}

// ---- Tiled transpose: output axis A is contiguous in the input, output axis B (the innermost)
// is contiguous in the output. A block loads a tile_b x tile_a tile along A (coalesced reads),
// then writes it along B (coalesced writes); the other axes are batch axes. ----

struct TilePlan {
  uint32_t dim_a = 0, dim_b = 0;
  uint32_t in_stride_b = 0, out_stride_a = 0;
  uint32_t tile_a = 0, tile_b = 0, pitch = 0;  // pitch: elements per shared-memory row
  FastDivmod by_tile_a, by_tile_b;             // divide by tile_a, tile_b
  FastDivmod tiles_a, tiles_b;                 // tiles along A and B
  uint32_t tiles = 0;                          // in all, batch included
  int first = kMaxRank;                        // batch axes in slots [first, kMaxRank)
  FastDivmod batch_dims[kMaxRank];
  uint32_t batch_in[kMaxRank] = {}, batch_out[kMaxRank] = {};
};

template <typename E>
__global__ void transpose_tiled(const E* __restrict__ in, E* __restrict__ out, TilePlan p) {
  constexpr int kK = kIlp<E>;
  constexpr uint32_t kNone = 0xffffffffu;
  extern __shared__ __align__(16) unsigned char shared[];
  E* tile = reinterpret_cast<E*>(shared);
  for (uint32_t t = blockIdx.x; t < p.tiles; t += gridDim.x) {
    uint32_t rest, ta, tb;
    p.tiles_a.divmod(t, rest, ta);
    p.tiles_b.divmod(rest, rest, tb);
    uint32_t in_base = 0, out_base = 0;
#pragma unroll
    for (int d = kMaxRank - 1; d >= 0; --d) {
      if (d < p.first) break;
      uint32_t q, r;
      p.batch_dims[d].divmod(rest, q, r);
      in_base += r * p.batch_in[d];
      out_base += r * p.batch_out[d];
      rest = q;
    }
    const uint32_t a0 = ta * p.tile_a, b0 = tb * p.tile_b;
    const uint32_t na = min(p.tile_a, p.dim_a - a0), nb = min(p.tile_b, p.dim_b - b0);
    const E* src = in + in_base + b0 * p.in_stride_b + a0;
    const uint32_t count = p.tile_a * nb;
    for (uint32_t base = threadIdx.x; base < count; base += blockDim.x * kK) {
      E v[kK];
      uint32_t at[kK];  // where v[k] goes in the tile; kNone: nowhere
#pragma unroll
      for (int k = 0; k < kK; ++k) {
        const uint32_t i = base + k * blockDim.x;
        uint32_t b, a;
        p.by_tile_a.divmod(i, b, a);
        at[k] = i < count && a < na ? b * p.pitch + a : kNone;
        if (at[k] != kNone) v[k] = src[b * p.in_stride_b + a];
      }
#pragma unroll
      for (int k = 0; k < kK; ++k) {
        if (at[k] != kNone) tile[at[k]] = v[k];
      }
    }
    __syncthreads();
    E* dst = out + out_base + a0 * p.out_stride_a + b0;
    for (uint32_t i = threadIdx.x; i < p.tile_b * na; i += blockDim.x) {
      uint32_t a, b;
      p.by_tile_b.divmod(i, a, b);
      if (b < nb) dst[a * p.out_stride_a + b] = tile[b * p.pitch + a];
    }
    __syncthreads();
  }
}

// ---- Concat and Split: part k is [outer, width k] at columns [start k, start k + width k) of
// the whole's rows. Threads walk the whole in order (the part's slice of each row is contiguous
// too), so a narrow part never leaves partly written sectors behind. A launch covers `columns`
// columns from column0 (all of them unless there are more than kMaxSegments parts). ----

constexpr int kMaxSegments = 32;

struct SegmentPlan {
  int count = 0;
  void* whole = nullptr;
  uint32_t whole_width = 0, column0 = 0;  // units
  FastDivmod columns;
  void* parts[kMaxSegments] = {};
  uint32_t widths[kMaxSegments] = {};
  uint32_t starts[kMaxSegments] = {};  // from column0
  uint32_t ends[kMaxSegments] = {};    // starts + widths
};

template <typename U, bool kIntoWhole>
__global__ void copy_segments(uint32_t n, SegmentPlan p) {
  constexpr int kK = kIlp<U>;
  for (uint32_t base = blockIdx.x * blockDim.x * kK + threadIdx.x; base < n;
       base += gridDim.x * blockDim.x * kK) {
    U v[kK];
    U* to[kK];
#pragma unroll
    for (int k = 0; k < kK; ++k) {
      const uint32_t i = base + k * blockDim.x;
      to[k] = nullptr;
      if (i >= n) continue;
      uint32_t row, column;
      p.columns.divmod(i, row, column);
      int s = 0;
      while (column >= p.ends[s]) ++s;
      U* part = static_cast<U*>(p.parts[s]) + row * p.widths[s] + (column - p.starts[s]);
      U* whole = static_cast<U*>(p.whole) + row * p.whole_width + p.column0 + column;
      v[k] = kIntoWhole ? *part : *whole;
      to[k] = kIntoWhole ? whole : part;
    }
#pragma unroll
    for (int k = 0; k < kK; ++k) {
      if (to[k] != nullptr) *to[k] = v[k];
    }
  }
}

// ---- 64-bit kernels, for tensors of 2^31 elements or more (and Expand). ----

template <typename E>
__global__ void gather_strided(const E* __restrict__ in, E* __restrict__ out, int64_t n,
                               StridedShape s) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) out[i] = in[strided_offset(s, 0, i)];
}

template <typename E>
__global__ void copy_blocks(const E* __restrict__ in, E* __restrict__ out, int64_t outer,
                            int64_t block, int64_t in_stride, int64_t out_stride) {
  const int64_t n = outer * block;
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const int64_t o = i / block, j = i % block;
    out[o * out_stride + j] = in[o * in_stride + j];
  }
}

// The permutation with unit axes dropped and adjacent axes merged: output axes d and d+1 merge
// when the input has them adjacent too (stride[d] == stride[d+1] * dims[d+1]).
struct Reduced {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t strides[kMaxRank] = {};
};

Reduced reduce(const StridedShape& s) {
  Reduced r;
  for (int d = 0; d < s.rank; ++d) {
    const int64_t dim = s.dims[d], stride = s.strides[0][d];
    if (dim == 1) continue;
    if (r.rank > 0 && r.strides[r.rank - 1] == stride * dim) {
      r.dims[r.rank - 1] *= dim;
      r.strides[r.rank - 1] = stride;
      continue;
    }
    r.dims[r.rank] = dim;
    r.strides[r.rank] = stride;
    ++r.rank;
  }
  return r;
}

// Gathers with accesses of `unit` bytes (a multiple of the element size that divides the rows
// when the innermost axis is contiguous in the input; the element size otherwise).
cudaError_t gather(int element_size, int unit, const void* in, void* out, const Reduced& r,
                   cudaStream_t stream) {
  const int per_unit = unit / element_size;
  GatherPlan p;
  p.first = kMaxRank - r.rank;
  int64_t n = 1;
  for (int d = 0; d < r.rank; ++d) {
    const bool innermost = d == r.rank - 1;
    const int64_t dim = innermost ? r.dims[d] / per_unit : r.dims[d];
    p.dims[p.first + d] = FastDivmod(static_cast<uint32_t>(dim));
    p.strides[p.first + d] =
        static_cast<uint32_t>(innermost ? r.strides[d] : r.strides[d] / per_unit);
    n *= dim;
  }
  KS_BY_UNIT(unit,
             (gather_units<U><<<grid_for(n, kIlp<U>), kThreads, 0, stream>>>(
                 static_cast<const U*>(in), static_cast<U*>(out), static_cast<uint32_t>(n), p)));
  return cudaGetLastError();
}

// Tile sizes for axes A (extent da) and B (extent db): square tiles of `side` when both are long,
// else as long as 8 KB of shared memory allows along the long axis. 0 when the tile would be too
// small to pay for its two barriers (both axes short): the gather does those.
struct TileSize {
  uint32_t a = 0, b = 0;
};
TileSize tile_size(int element_size, int64_t da, int64_t db) {
  const int64_t side = element_size <= 2 ? 64 : 32;
  const int64_t cap = 8192 / element_size;
  auto round_up = [](int64_t v) { return (v + 31) / 32 * 32; };
  int64_t a = side, b = side;
  if (da >= side && db >= side) {
  } else if (db < side && da >= side) {
    b = db;
    a = std::min(round_up(da), std::max<int64_t>(32, cap / db / 32 * 32));
  } else if (da < side && db >= side) {
    a = da;
    b = std::min(round_up(db), std::max<int64_t>(32, cap / da / 32 * 32));
  } else {
    return {};
  }
  if (a * b < 512) return {};
  return {static_cast<uint32_t>(a), static_cast<uint32_t>(b)};
}

// Elements per shared-memory row of a tile, chosen so that the write phase, whose warps read
// the tile across rows, hits distinct banks (4-byte words, 32 banks). A warp reads 32 consecutive
// (a, b) with b fastest: with at least 32 rows, 32 rows at one a, which an odd word stride spreads
// over all banks; with fewer rows, 32 / b consecutive a in each of the b rows, which a stride of
// that span (mod 32 words) lays side by side.
uint32_t tile_pitch(int element_size, TileSize tile) {
  const uint32_t per_word = element_size >= 4 ? 1 : 4 / element_size;   // elements per word
  const uint32_t words_per = element_size >= 4 ? element_size / 4 : 1;  // words per element
  const uint32_t row_words = (tile.a + per_word - 1) / per_word * words_per;
  uint32_t stride = 0;  // words between rows
  if (tile.b >= 32) {
    stride = row_words + 1;
    if (words_per == 2) stride = row_words + 2;  // 8-byte elements: odd in elements
    if (stride % 2 == 0 && words_per == 1) ++stride;
  } else {
    const uint32_t span = ((32 + tile.b - 1) / tile.b * words_per + per_word - 1) / per_word;
    stride = (row_words + 31) / 32 * 32 + span;
  }
  return stride * per_word / words_per;
}

}  // namespace

cudaError_t launch_transpose(int element_size, const void* in, void* out,
                             const StridedShape& layout, cudaStream_t stream) {
  int64_t n = 1;
  for (int d = 0; d < layout.rank; ++d) n *= layout.dims[d];
  if (n == 0) return cudaSuccess;
  if (n > kMaxIndex32) return launch_gather_strided(element_size, in, out, n, layout, stream);
  const Reduced r = reduce(layout);
  if (r.rank == 0 || (r.rank == 1 && r.strides[0] == 1)) {  // the identity: one copy
    return cudaMemcpyAsync(out, in, static_cast<size_t>(n) * element_size, cudaMemcpyDeviceToDevice,
                           stream);
  }
  const int last = r.rank - 1;
  if (r.strides[last] == 1) {
    // Rows stay rows: the widest access that divides every row and every row's start.
    int unit = widest_unit(element_size, static_cast<uint64_t>(r.dims[last]) * element_size, in);
    unit = std::min(unit, widest_unit(element_size, 0, out));
    for (int d = 0; d < last; ++d) {
      unit = std::min(
          unit, widest_unit(element_size, static_cast<uint64_t>(r.strides[d]) * element_size, in));
    }
    return gather(element_size, unit, in, out, r, stream);
  }
  int a = -1;  // the output axis that is contiguous in the input
  for (int d = 0; d < r.rank; ++d) {
    if (r.strides[d] == 1) a = d;
  }
  const TileSize tile = a < 0 ? TileSize{} : tile_size(element_size, r.dims[a], r.dims[last]);
  if (tile.a == 0) return gather(element_size, element_size, in, out, r, stream);

  int64_t out_strides[kMaxRank];
  out_strides[last] = 1;
  for (int d = last - 1; d >= 0; --d) out_strides[d] = out_strides[d + 1] * r.dims[d + 1];
  TilePlan p;
  p.dim_a = static_cast<uint32_t>(r.dims[a]);
  p.dim_b = static_cast<uint32_t>(r.dims[last]);
  p.in_stride_b = static_cast<uint32_t>(r.strides[last]);
  p.out_stride_a = static_cast<uint32_t>(out_strides[a]);
  p.tile_a = tile.a;
  p.tile_b = tile.b;
  p.pitch = tile_pitch(element_size, tile);
  p.by_tile_a = FastDivmod(tile.a);
  p.by_tile_b = FastDivmod(tile.b);
  const uint32_t tiles_a = (p.dim_a + tile.a - 1) / tile.a;
  const uint32_t tiles_b = (p.dim_b + tile.b - 1) / tile.b;
  p.tiles_a = FastDivmod(tiles_a);
  p.tiles_b = FastDivmod(tiles_b);
  int64_t batch = 1;
  int slot = kMaxRank;
  for (int d = last - 1; d >= 0; --d) {
    if (d == a) continue;
    --slot;
    p.batch_dims[slot] = FastDivmod(static_cast<uint32_t>(r.dims[d]));
    p.batch_in[slot] = static_cast<uint32_t>(r.strides[d]);
    p.batch_out[slot] = static_cast<uint32_t>(out_strides[d]);
    batch *= r.dims[d];
  }
  p.first = slot;
  const int64_t tiles = batch * tiles_a * tiles_b;
  p.tiles = static_cast<uint32_t>(tiles);
  const size_t shared = static_cast<size_t>(p.pitch) * tile.b * element_size;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(tiles, kMaxIndex32));
  switch (element_size) {
    case 1:
      transpose_tiled<<<blocks, kThreads, shared, stream>>>(static_cast<const uint8_t*>(in),
                                                            static_cast<uint8_t*>(out), p);
      break;
    case 2:
      transpose_tiled<<<blocks, kThreads, shared, stream>>>(static_cast<const uint16_t*>(in),
                                                            static_cast<uint16_t*>(out), p);
      break;
    case 4:
      transpose_tiled<<<blocks, kThreads, shared, stream>>>(static_cast<const uint32_t*>(in),
                                                            static_cast<uint32_t*>(out), p);
      break;
    case 8:
      transpose_tiled<<<blocks, kThreads, shared, stream>>>(static_cast<const uint64_t*>(in),
                                                            static_cast<uint64_t*>(out), p);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_segment_copy(int element_size, const SegmentCopy& c, cudaStream_t stream) {
  if (c.outer == 0 || c.whole_width == 0) return cudaSuccess;
  const bool into_whole = c.whole_out != nullptr;
  char* whole = into_whole ? static_cast<char*>(c.whole_out)
                           : const_cast<char*>(static_cast<const char*>(c.whole_in));
  auto part = [&](int k) {
    return into_whole ? const_cast<char*>(static_cast<const char*>(c.parts_in[k]))
                      : static_cast<char*>(c.parts_out[k]);
  };
  if (c.outer * c.whole_width > kMaxIndex32) {  // one 64-bit launch per part
    for (int k = 0; k < c.count; ++k) {
      if (c.widths[k] == 0) continue;
      char* slice = whole + c.offsets[k] * element_size;
      const cudaError_t e =
          into_whole ? launch_copy_blocks(element_size, part(k), slice, c.outer, c.widths[k],
                                          c.widths[k], c.whole_width, stream)
                     : launch_copy_blocks(element_size, slice, part(k), c.outer, c.widths[k],
                                          c.whole_width, c.widths[k], stream);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  // The widest access that divides every row, every slice's start and every pointer.
  int unit = widest_unit(element_size, static_cast<uint64_t>(c.whole_width) * element_size, whole);
  for (int k = 0; k < c.count; ++k) {
    if (c.widths[k] == 0) continue;
    unit = std::min(unit, widest_unit(element_size,
                                      static_cast<uint64_t>(c.widths[k]) * element_size, part(k)));
    unit = std::min(
        unit, widest_unit(element_size, static_cast<uint64_t>(c.offsets[k]) * element_size, whole));
  }
  const int per_unit = unit / element_size;
  // Up to kMaxSegments parts per launch (one launch for any real model's Concat).
  int k = 0;
  while (k < c.count) {
    SegmentPlan p;
    p.whole = whole;
    p.whole_width = static_cast<uint32_t>(c.whole_width / per_unit);
    uint32_t columns = 0;
    for (; k < c.count && p.count < kMaxSegments; ++k) {
      if (c.widths[k] == 0) continue;
      const auto start = static_cast<uint32_t>(c.offsets[k] / per_unit);
      const auto width = static_cast<uint32_t>(c.widths[k] / per_unit);
      if (p.count == 0) p.column0 = start;
      p.parts[p.count] = part(k);
      p.widths[p.count] = width;
      p.starts[p.count] = start - p.column0;
      p.ends[p.count] = start - p.column0 + width;
      columns = p.ends[p.count];
      ++p.count;
    }
    if (p.count == 0) break;
    p.columns = FastDivmod(columns);
    const auto n = static_cast<uint32_t>(c.outer * columns);
    if (into_whole) {
      KS_BY_UNIT(unit,
                 (copy_segments<U, true><<<grid_for(n, kIlp<U>), kThreads, 0, stream>>>(n, p)));
    } else {
      KS_BY_UNIT(unit,
                 (copy_segments<U, false><<<grid_for(n, kIlp<U>), kThreads, 0, stream>>>(n, p)));
    }
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

#define KS_BY_SIZE(size, body)      \
  switch (size) {                   \
    case 1: {                       \
      using E = uint8_t;            \
      body;                         \
      break;                        \
    }                               \
    case 2: {                       \
      using E = uint16_t;           \
      body;                         \
      break;                        \
    }                               \
    case 4: {                       \
      using E = uint32_t;           \
      body;                         \
      break;                        \
    }                               \
    case 8: {                       \
      using E = uint64_t;           \
      body;                         \
      break;                        \
    }                               \
    default:                        \
      return cudaErrorInvalidValue; \
  }

cudaError_t launch_gather_strided(int element_size, const void* in, void* out, int64_t n,
                                  const StridedShape& layout, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  KS_BY_SIZE(element_size, (gather_strided<E><<<blocks_for(n), 256, 0, stream>>>(
                               static_cast<const E*>(in), static_cast<E*>(out), n, layout)));
  return cudaGetLastError();
}

cudaError_t launch_copy_blocks(int element_size, const void* in, void* out, int64_t outer,
                               int64_t block, int64_t in_stride, int64_t out_stride,
                               cudaStream_t stream) {
  if (outer * block == 0) return cudaSuccess;
  KS_BY_SIZE(element_size, (copy_blocks<E><<<blocks_for(outer * block), 256, 0, stream>>>(
                               static_cast<const E*>(in), static_cast<E*>(out), outer, block,
                               in_stride, out_stride)));
  return cudaGetLastError();
}

}  // namespace kestrel::runtime::cuda
