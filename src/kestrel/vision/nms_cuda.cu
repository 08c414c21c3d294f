// YoloNms's GPU kernels (nms_cuda.h is the API, nms_cuda.cc its checks), in three steps per batch,
// all queued on one stream:
//
//   1. decode: one thread per (image, anchor) applies the thresholds exactly as decode_yolo() does
//      and appends a 64-bit sort key per candidate to its image's segment of a key buffer (warp-
//      aggregated atomics; the order of appending does not matter, see 2). Boxes are not stored:
//      step 3 re-reads the few it needs from the raw output.
//   2. sort: the key is (score, ordered for unsigned comparison) << idx_bits | (mask - index), with
//      index = anchor * classes + class, so one descending radix sort per image
//      (cub::DeviceSegmentedRadixSort, no host synchronization, so it records into CUDA graphs)
//      yields NMS's order: score descending, ties by ascending (anchor, class), as the CPU's stable
//      sort of (anchor, class)-ordered candidates. Keys are unique, so sort stability is moot.
//   3. NMS: one block per image walks the first min(count, top_k) keys in chunks of 256. Each
//      thread tests its candidate against every box kept so far, and builds the bit row of the
//      chunk's earlier candidates that would suppress it; one thread then resolves the chunk in
//      order with those bits (256 steps of eight 32-bit ANDs). Kept boxes are written straight to
//      the outputs, which also serve as the kept list that later chunks test against. The rest of
//      each image's rows are padded (0, and class -1).
//
// Exactness: every float operation is the one nms.h and yolo_decode.h specify, rounded separately
// (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn; the vision layer also compiles with --fmad=false),
// and float16 inputs are widened exactly. Only the decisions of the comparisons come from floats;
// the outputs are the same values the CPU produces.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <limits>

#include "kestrel/vision/nms_cuda_launch.h"

namespace kestrel::vision::cuda_nms {
namespace {

namespace cg = cooperative_groups;

constexpr int kDecodeThreads = 256;
constexpr int kChunk = 256;  // candidates per NMS step = threads per NMS block
constexpr int kMaskWords = kChunk / 32;

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }

// Where one image's raw output lives and how to read it.
template <typename T>
struct Raw {
  const T* data;
  int64_t anchors;
  int64_t classes;
  int64_t row;  // v5: row length (5 + classes)
  bool v5;

  // Channel k of anchor a of image b: v5 rows are [cx, cy, w, h, obj, classes...], v8 channels
  // are [cx, cy, w, h, classes...].
  __device__ __forceinline__ float at(int64_t b, int64_t a, int64_t k) const {
    if (v5) return widen(data[(b * anchors + a) * row + k]);
    return widen(data[(b * (4 + classes) + k) * anchors + a]);
  }
  __device__ __forceinline__ int64_t first_class() const { return v5 ? 5 : 4; }
};

// The order-preserving unsigned image of a (non-NaN) float; -0 and +0 map alike, because the CPU's
// sort finds them equal.
__device__ __forceinline__ uint32_t ordered_bits(float s) {
  if (s == 0.0f) s = 0.0f;
  const uint32_t bits = __float_as_uint(s);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Slot for this thread's candidate in `counter`'s segment: one atomic per group of active lanes.
__device__ __forceinline__ int append_slot(int* counter) {
  cg::coalesced_group active = cg::coalesced_threads();
  int base = 0;
  if (active.thread_rank() == 0) base = atomicAdd(counter, static_cast<int>(active.size()));
  return active.shfl(base, 0) + static_cast<int>(active.thread_rank());
}

struct KeyFormat {
  int idx_bits;
  uint64_t idx_mask;
  __device__ __forceinline__ uint64_t key(float score, int64_t index) const {
    return (static_cast<uint64_t>(ordered_bits(score)) << idx_bits) |
           (idx_mask - static_cast<uint64_t>(index));
  }
  __device__ __forceinline__ int64_t index(uint64_t key) const {
    return static_cast<int64_t>(idx_mask - (key & idx_mask));
  }
};

// Step 1. Grid (anchor blocks, images).
template <typename T>
__global__ void decode_kernel(Raw<T> raw, float threshold, bool multi_label, KeyFormat format,
                              int64_t capacity, uint64_t* keys, int* counts) {
  const int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (a >= raw.anchors) return;
  const float obj = raw.v5 ? raw.at(b, a, 4) : 1.0f;
  if (raw.v5 && !(obj > threshold)) return;
  uint64_t* segment = keys + b * capacity;
  const int64_t first = raw.first_class();
  auto score = [&](int64_t c) {
    const float s = raw.at(b, a, first + c);
    return raw.v5 ? __fmul_rn(s, obj) : s;
  };
  if (multi_label) {
    for (int64_t c = 0; c < raw.classes; ++c) {
      const float s = score(c);
      if (s > threshold) segment[append_slot(&counts[b])] = format.key(s, a * raw.classes + c);
    }
    return;
  }
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_class = -1;
  for (int64_t c = 0; c < raw.classes; ++c) {
    const float s = score(c);
    if (s > best) best = s, best_class = c;  // the first maximum wins
  }
  if (best_class >= 0 && best > threshold) {
    segment[append_slot(&counts[b])] = format.key(best, a * raw.classes + best_class);
  }
}

__global__ void segment_kernel(const int* counts, int64_t capacity, int batch, int* begin,
                               int* end) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  begin[b] = static_cast<int>(b * capacity);
  end[b] = static_cast<int>(b * capacity + counts[b]);
}

struct Box {
  float x1, y1, x2, y2;
};

// nms_iou() of nms.cc, operation by operation; a is the kept box, b the candidate.
__device__ __forceinline__ float box_area(const Box& b) {
  return __fmul_rn(fmaxf(__fsub_rn(b.x2, b.x1), 0.0f), fmaxf(__fsub_rn(b.y2, b.y1), 0.0f));
}
__device__ __forceinline__ float iou(const Box& a, const Box& b) {
  const float iw = fmaxf(__fsub_rn(fminf(a.x2, b.x2), fmaxf(a.x1, b.x1)), 0.0f);
  const float ih = fmaxf(__fsub_rn(fminf(a.y2, b.y2), fmaxf(a.y1, b.y1)), 0.0f);
  const float inter = __fmul_rn(iw, ih);
  const float uni = __fsub_rn(__fadd_rn(box_area(a), box_area(b)), inter);
  return uni > 0 ? __fdiv_rn(inter, uni) : 0.0f;
}

struct NmsParams {
  KeyFormat format;
  int64_t capacity;
  int64_t top_k;
  int max_det;
  float iou_threshold;
  bool agnostic;
};

// Step 3. One block of kChunk threads per image.
template <typename T>
__global__ void __launch_bounds__(kChunk)
    nms_kernel(Raw<T> raw, const uint64_t* sorted, const int* counts, NmsParams p, float* boxes,
               float* scores, int32_t* classes, int32_t* num_dets) {
  __shared__ Box chunk_box[kChunk];
  __shared__ int32_t chunk_class[kChunk];
  __shared__ float chunk_score[kChunk];
  __shared__ bool chunk_suppressed[kChunk];
  __shared__ uint32_t chunk_mask[kChunk][kMaskWords];
  __shared__ int kept;

  const int64_t b = blockIdx.x;
  const int t = threadIdx.x;
  const int64_t n = min(static_cast<int64_t>(counts[b]), p.top_k);
  Box* kept_box = reinterpret_cast<Box*>(boxes + b * p.max_det * 4);
  float* kept_score = scores + b * p.max_det;
  int32_t* kept_class = classes + b * p.max_det;
  if (t == 0) kept = 0;
  __syncthreads();

  for (int64_t start = 0; start < n && kept < p.max_det; start += kChunk) {
    const int size = static_cast<int>(min(static_cast<int64_t>(kChunk), n - start));
    Box box{};
    int32_t cls = -1;
    bool suppressed = true;
    if (t < size) {
      const int64_t index = p.format.index(sorted[b * p.capacity + start + t]);
      const int64_t a = index / raw.classes, c = index % raw.classes;
      // The box and score exactly as decode_yolo() computes them.
      const float cx = raw.at(b, a, 0), cy = raw.at(b, a, 1);
      const float w = raw.at(b, a, 2), h = raw.at(b, a, 3);
      const float hw = __fdiv_rn(w, 2.0f), hh = __fdiv_rn(h, 2.0f);
      box = {__fsub_rn(cx, hw), __fsub_rn(cy, hh), __fadd_rn(cx, hw), __fadd_rn(cy, hh)};
      const float s = raw.at(b, a, raw.first_class() + c);
      chunk_score[t] = raw.v5 ? __fmul_rn(s, raw.at(b, a, 4)) : s;
      cls = static_cast<int32_t>(c);
      suppressed = false;
      for (int k = 0; k < kept; ++k) {
        if ((p.agnostic || kept_class[k] == cls) && iou(kept_box[k], box) > p.iou_threshold) {
          suppressed = true;
          break;
        }
      }
    }
    chunk_box[t] = box;
    chunk_class[t] = cls;
    chunk_suppressed[t] = suppressed;
    __syncthreads();

    // Bit j of row t: candidate j (earlier in the chunk), if kept, suppresses candidate t.
    if (!suppressed) {
      for (int w = 0; w < kMaskWords; ++w) {
        uint32_t bits = 0;
        for (int j = w * 32; j < min(t, w * 32 + 32); ++j) {
          if ((p.agnostic || chunk_class[j] == cls) && iou(chunk_box[j], box) > p.iou_threshold) {
            bits |= 1u << (j & 31);
          }
        }
        chunk_mask[t][w] = bits;
      }
    }
    __syncthreads();

    if (t == 0) {
      uint32_t keep[kMaskWords] = {};
      int count = kept;
      for (int j = 0; j < size && count < p.max_det; ++j) {
        if (chunk_suppressed[j]) continue;
        bool hit = false;
        for (int w = 0; w < kMaskWords; ++w) hit |= (chunk_mask[j][w] & keep[w]) != 0;
        if (hit) continue;
        keep[j >> 5] |= 1u << (j & 31);
        kept_box[count] = chunk_box[j];
        kept_score[count] = chunk_score[j];
        kept_class[count] = chunk_class[j];
        ++count;
      }
      kept = count;
    }
    __syncthreads();
  }

  for (int k = kept + t; k < p.max_det; k += kChunk) {
    kept_box[k] = Box{0, 0, 0, 0};
    kept_score[k] = 0.0f;
    kept_class[k] = -1;
  }
  if (t == 0) num_dets[b] = kept;
}

// Bits needed to hold values 0..n-1 (at least 1).
int bits_for(uint64_t n) {
  int bits = 1;
  while (bits < 63 && (uint64_t{1} << bits) < n) ++bits;
  return bits;
}

#define KS_NMS_RETURN_IF_ERROR(call)                  \
  do {                                                \
    const cudaError_t nms_error_ = (call);            \
    if (nms_error_ != cudaSuccess) return nms_error_; \
  } while (0)

template <typename T>
cudaError_t run(const YoloNmsArgs& args, cudaStream_t stream) {
  Raw<T> raw;
  raw.data = static_cast<const T*>(args.data);
  raw.v5 = args.v5;
  raw.anchors = args.anchors;
  raw.classes = args.classes;
  raw.row = 5 + args.classes;
  const int64_t batch = args.batch;
  const int64_t capacity = raw.anchors * (args.multi_label ? raw.classes : 1);
  const int64_t total = batch * capacity;
  KeyFormat format;
  format.idx_bits = bits_for(static_cast<uint64_t>(raw.anchors * raw.classes));
  format.idx_mask = (uint64_t{1} << format.idx_bits) - 1;

  // Scratch: counts, segment bounds, two key buffers, the sort's temporary storage.
  cub::DoubleBuffer<uint64_t> keys(nullptr, nullptr);
  size_t sort_bytes = 0;
  const int end_bit = 32 + format.idx_bits;
  KS_NMS_RETURN_IF_ERROR(cub::DeviceSegmentedRadixSort::SortKeysDescending(
      nullptr, sort_bytes, keys, static_cast<int>(total), static_cast<int>(batch),
      static_cast<int*>(nullptr), static_cast<int*>(nullptr), 0, end_bit, stream));
  auto align = [](size_t n) { return (n + 255) / 256 * 256; };
  const size_t counts_bytes = align(static_cast<size_t>(batch) * sizeof(int) * 3);
  const size_t keys_bytes = align(static_cast<size_t>(total) * sizeof(uint64_t));
  char* scratch = nullptr;
  KS_NMS_RETURN_IF_ERROR(
      cudaMallocAsync(&scratch, counts_bytes + 2 * keys_bytes + align(sort_bytes), stream));
  int* counts = reinterpret_cast<int*>(scratch);
  int* begin = counts + batch;
  int* end = begin + batch;
  keys =
      cub::DoubleBuffer<uint64_t>(reinterpret_cast<uint64_t*>(scratch + counts_bytes),
                                  reinterpret_cast<uint64_t*>(scratch + counts_bytes + keys_bytes));
  void* sort_storage = scratch + counts_bytes + 2 * keys_bytes;

  const cudaError_t error = [&]() -> cudaError_t {
    KS_NMS_RETURN_IF_ERROR(cudaMemsetAsync(counts, 0, sizeof(int) * batch, stream));
    if (total > 0) {
      const dim3 grid(static_cast<unsigned>((raw.anchors + kDecodeThreads - 1) / kDecodeThreads),
                      static_cast<unsigned>(batch));
      decode_kernel<T><<<grid, kDecodeThreads, 0, stream>>>(
          raw, args.score_threshold, args.multi_label, format, capacity, keys.Current(), counts);
      KS_NMS_RETURN_IF_ERROR(cudaGetLastError());
      segment_kernel<<<static_cast<unsigned>((batch + 255) / 256), 256, 0, stream>>>(
          counts, capacity, static_cast<int>(batch), begin, end);
      KS_NMS_RETURN_IF_ERROR(cudaGetLastError());
      KS_NMS_RETURN_IF_ERROR(cub::DeviceSegmentedRadixSort::SortKeysDescending(
          sort_storage, sort_bytes, keys, static_cast<int>(total), static_cast<int>(batch), begin,
          end, 0, end_bit, stream));
    }
    NmsParams p;
    p.format = format;
    p.capacity = capacity;
    p.top_k = args.top_k;
    p.max_det = args.max_det;
    p.iou_threshold = args.iou_threshold;
    p.agnostic = args.agnostic;
    nms_kernel<T><<<static_cast<unsigned>(batch), kChunk, 0, stream>>>(
        raw, keys.Current(), counts, p, args.boxes, args.scores, args.classes_out, args.num_dets);
    return cudaGetLastError();
  }();
  const cudaError_t freed = cudaFreeAsync(scratch, stream);
  return error != cudaSuccess ? error : freed;
}

}  // namespace

cudaError_t launch_yolo_nms(const YoloNmsArgs& args, cudaStream_t stream) {
  return args.half ? run<__half>(args, stream) : run<float>(args, stream);
}

}  // namespace kestrel::vision::cuda_nms
