// FusedElementwise's kernel: per output element, each input's element at its broadcast offset is
// loaded into a register, the program runs on the registers, and the result is stored once.
//
// The register file is an array indexed only by compile-time constants (each access unrolls into
// a comparison per register), so it stays in registers rather than local memory; the program
// itself is uniform across threads and read from the kernel's parameters. Where the shapes allow
// (fused_elementwise_launch.h), each thread takes four consecutive elements with 8- or 16-byte
// loads and stores, decodes each instruction once for the four, and reads broadcast inputs once.
// Indices are 32-bit below 2^31 elements.
#include "kestrel/runtime/cuda/device_math.cuh"
#include "kestrel/runtime/cuda/fused_elementwise_launch.h"

namespace kestrel::runtime::cuda {
namespace {

constexpr int kThreads = 256;

// R registers of L lanes (the L elements a thread computes at once).
template <int R, int L>
struct Registers {
  float v[R][L];

  __device__ __forceinline__ void get(int r, float (&out)[L]) const {
#pragma unroll
    for (int s = 0; s < R; ++s) {
      if (s == r) {
#pragma unroll
        for (int l = 0; l < L; ++l) out[l] = v[s][l];
      }
    }
  }
  __device__ __forceinline__ void set(int r, const float (&in)[L]) {
#pragma unroll
    for (int s = 0; s < R; ++s) {
      if (s == r) {
#pragma unroll
        for (int l = 0; l < L; ++l) v[s][l] = in[l];
      }
    }
  }
};

// One instruction on L lanes, each as the CPU reference computes it (runtime/cpu/
// fused_elementwise.cc).
template <int L>
__device__ __forceinline__ void execute(const FusedRegInstr& in, const float (&a)[L],
                                        const float (&b)[L], float (&r)[L]) {
#define KS_LANES(expr)                            \
  _Pragma("unroll") for (int l = 0; l < L; ++l) { \
    const float x = a[l];                         \
    const float y = b[l];                         \
    (void)y;                                      \
    r[l] = (expr);                                \
  }                                               \
  break
  const float alpha = in.alpha, beta = in.beta;
  switch (in.op) {
    case FusedOp::kAdd:
      KS_LANES(x + y);
    case FusedOp::kSub:
      KS_LANES(x - y);
    case FusedOp::kMul:
      KS_LANES(x * y);
    case FusedOp::kDiv:
      KS_LANES(x / y);
    case FusedOp::kPow:
      KS_LANES(powf(x, y));
    case FusedOp::kMin:  // NaN propagates, as on the CPU
      KS_LANES((isnan(x) || isnan(y)) ? NAN : fminf(x, y));
    case FusedOp::kMax:
      KS_LANES((isnan(x) || isnan(y)) ? NAN : fmaxf(x, y));
    case FusedOp::kSigmoid:
      KS_LANES(1.f / (1.f + expf(-x)));
    case FusedOp::kRelu:
      KS_LANES(x < 0.f ? 0.f : x);
    case FusedOp::kTanh:
      KS_LANES(tanhf(x));
    case FusedOp::kExp:
      KS_LANES(expf(x));
    case FusedOp::kLog:
      KS_LANES(logf(x));
    case FusedOp::kNeg:
      KS_LANES(-x);
    case FusedOp::kAbs:
      KS_LANES(fabsf(x));
    case FusedOp::kSqrt:
      KS_LANES(sqrtf(x));
    case FusedOp::kReciprocal:
      KS_LANES(1.f / x);
    case FusedOp::kFloor:
      KS_LANES(floorf(x));
    case FusedOp::kCeil:
      KS_LANES(ceilf(x));
    case FusedOp::kRound:  // halves to even, like ONNX
      KS_LANES(rintf(x));
    case FusedOp::kHardSwish:
      KS_LANES(x * fmaxf(0.f, fminf(1.f, x / 6.f + 0.5f)));
    case FusedOp::kLeakyRelu:
      KS_LANES(x < 0.f ? alpha * x : x);
    case FusedOp::kHardSigmoid:
      KS_LANES(fmaxf(0.f, fminf(1.f, alpha * x + beta)));
    case FusedOp::kClip:  // NaN passes through; min > max gives max
      KS_LANES(alpha > beta ? beta : (x < alpha ? alpha : (x > beta ? beta : x)));
    case FusedOp::kConst:
      KS_LANES(alpha);
  }
#undef KS_LANES
}

// Four elements at p (aligned to four elements), as floats.
__device__ __forceinline__ void load4(const float* p, float (&out)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
__device__ __forceinline__ void load4(const __half* p, float (&out)[4]) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
  const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
  out[0] = lo.x;
  out[1] = lo.y;
  out[2] = hi.x;
  out[3] = hi.y;
}
__device__ __forceinline__ void store4(float* p, const float (&v)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store4(__half* p, const float (&v)[4]) {
  const __half2 lo = __floats2half2_rn(v[0], v[1]);
  const __half2 hi = __floats2half2_rn(v[2], v[3]);
  uint2 raw;
  raw.x = *reinterpret_cast<const unsigned*>(&lo);
  raw.y = *reinterpret_cast<const unsigned*>(&hi);
  *reinterpret_cast<uint2*>(p) = raw;
}

// T: storage type; R: registers; L: 1, or 4 with p.vectorized; I: index type.
template <typename T, int R, int L, typename I>
__global__ void __launch_bounds__(kThreads) fused_kernel(const __grid_constant__ FusedLaunch p) {
  const I units = static_cast<I>(p.count / L);
  const I stride = static_cast<I>(gridDim.x) * kThreads;
  for (I u = static_cast<I>(blockIdx.x) * kThreads + threadIdx.x; u < units; u += stride) {
    const I first = u * L;
    // Each input's offset for the first element (the lanes share all but the innermost index).
    I offset[kMaxFusedInputs];
#pragma unroll
    for (int k = 0; k < kMaxFusedInputs; ++k) offset[k] = 0;
    if (p.rank == 1) {
#pragma unroll
      for (int k = 0; k < kMaxFusedInputs; ++k) offset[k] = first * static_cast<I>(p.strides[k][0]);
    } else {
      I rest = first;
      for (int d = p.rank - 1; d >= 0; --d) {
        const I dim = static_cast<I>(p.dims[d]);
        const I index = rest % dim;
        rest /= dim;
#pragma unroll
        for (int k = 0; k < kMaxFusedInputs; ++k) {
          offset[k] += index * static_cast<I>(p.strides[k][d]);
        }
      }
    }
    Registers<R, L> regs;
#pragma unroll
    for (int k = 0; k < kMaxFusedInputs; ++k) {
      if (k >= p.num_inputs) break;
      const T* in = static_cast<const T*>(p.inputs[k]) + offset[k];
      if constexpr (L == 4) {
        if (p.strides[k][p.rank - 1] == 1) {
          load4(in, regs.v[k]);
        } else {  // broadcast along the innermost dimension: one element for the four lanes
          const float v = to_float(*in);
#pragma unroll
          for (int l = 0; l < L; ++l) regs.v[k][l] = v;
        }
      } else {
        regs.v[k][0] = to_float(*in);
      }
    }
    for (int j = 0; j < p.num_code; ++j) {
      const FusedRegInstr in = p.code[j];
      float a[L] = {}, b[L] = {}, r[L];
      if (in.a >= 0) regs.get(in.a, a);
      if (in.b >= 0) regs.get(in.b, b);
      execute<L>(in, a, b, r);
      regs.set(in.dst, r);
    }
    float out[L] = {};
    regs.get(p.result, out);
    T* y = static_cast<T*>(p.output) + first;
    if constexpr (L == 4) {
      store4(y, out);
    } else {
      *y = from_float<T>(out[0]);
    }
  }
}

template <typename T, int R>
cudaError_t launch_with(const FusedLaunch& p, cudaStream_t stream) {
  const int64_t units = p.vectorized ? p.count / 4 : p.count;
  const unsigned blocks = blocks_for(units);
  const bool narrow = p.count <= 0x7fffffff;
  if (p.vectorized && narrow) {
    fused_kernel<T, R, 4, uint32_t><<<blocks, kThreads, 0, stream>>>(p);
  } else if (p.vectorized) {
    fused_kernel<T, R, 4, int64_t><<<blocks, kThreads, 0, stream>>>(p);
  } else if (narrow) {
    fused_kernel<T, R, 1, uint32_t><<<blocks, kThreads, 0, stream>>>(p);
  } else {
    fused_kernel<T, R, 1, int64_t><<<blocks, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_fused_elementwise(FloatType t, const FusedLaunch& launch, cudaStream_t stream) {
  if (launch.count == 0) return cudaSuccess;
  if (launch.num_registers > kMaxFusedRegisters || launch.num_inputs > kMaxFusedInputs ||
      launch.num_code > kMaxFusedCode || launch.rank < 1 || launch.rank > kMaxRank) {
    return cudaErrorInvalidValue;
  }
  if (launch.num_registers <= 8) {
    KS_FLOAT_DISPATCH(t, return (launch_with<T, 8>(launch, stream)));
  }
  KS_FLOAT_DISPATCH(t, return (launch_with<T, kMaxFusedRegisters>(launch, stream)));
  return cudaSuccess;
}

}  // namespace kestrel::runtime::cuda
