// Elementwise kernels: activations and math, broadcasting arithmetic, Clip and Cast. Arithmetic in
// float whatever the storage type.
#include <cmath>
#include <limits>
#include <type_traits>

#include "kestrel/runtime/cuda/device_math.cuh"

namespace kestrel::runtime::cuda {
namespace {

__device__ __forceinline__ float apply_unary(UnaryOp op, float x, float alpha, float beta) {
  switch (op) {
    case UnaryOp::kRelu:
      return x < 0.f ? 0.f : x;
    case UnaryOp::kLeakyRelu:
      return x < 0.f ? alpha * x : x;
    case UnaryOp::kSigmoid:
      return 1.f / (1.f + expf(-x));
    case UnaryOp::kHardSigmoid:
      return fmaxf(0.f, fminf(1.f, alpha * x + beta));
    case UnaryOp::kHardSwish:
      return x * fmaxf(0.f, fminf(1.f, x / 6.f + 0.5f));
    case UnaryOp::kExp:
      return expf(x);
    case UnaryOp::kLog:
      return logf(x);
    case UnaryOp::kSqrt:
      return sqrtf(x);
    case UnaryOp::kNeg:
      return -x;
    case UnaryOp::kAbs:
      return fabsf(x);
    case UnaryOp::kFloor:
      return floorf(x);
    case UnaryOp::kCeil:
      return ceilf(x);
    case UnaryOp::kRound:
      return rintf(x);  // halves to even, like ONNX
  }
  return x;
}

__device__ __forceinline__ float apply_binary(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::kAdd:
      return a + b;
    case BinaryOp::kSub:
      return a - b;
    case BinaryOp::kMul:
      return a * b;
    case BinaryOp::kDiv:
      return a / b;
    case BinaryOp::kPow:
      return powf(a, b);
    // NaN propagates, as on the CPU (numpy.minimum/maximum).
    case BinaryOp::kMin:
      return (isnan(a) || isnan(b)) ? NAN : fminf(a, b);
    case BinaryOp::kMax:
      return (isnan(a) || isnan(b)) ? NAN : fmaxf(a, b);
  }
  return a;
}

template <typename T>
__global__ void unary_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, UnaryOp op,
                             float alpha, float beta) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    y[i] = from_float<T>(apply_unary(op, to_float(x[i]), alpha, beta));
  }
}

template <typename T>
__global__ void clip_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                            const T* __restrict__ lo, const T* __restrict__ hi) {
  const float l = lo ? to_float(*lo) : -INFINITY;
  const float h = hi ? to_float(*hi) : INFINITY;
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    const float v = to_float(x[i]);
    // min(max(x, lo), hi) with NaN passing through, as on the CPU.
    const float r = l > h ? h : (v < l ? l : (v > h ? h : v));
    y[i] = from_float<T>(r);
  }
}

template <typename T>
__global__ void binary_same_shape(const T* __restrict__ a, const T* __restrict__ b,
                                  T* __restrict__ y, int64_t n, BinaryOp op) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    y[i] = from_float<T>(apply_binary(op, to_float(a[i]), to_float(b[i])));
  }
}

template <typename T>
__global__ void binary_broadcast(const T* __restrict__ a, const T* __restrict__ b,
                                 T* __restrict__ y, int64_t n, StridedShape s, BinaryOp op) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) {
    y[i] = from_float<T>(apply_binary(op, to_float(a[strided_offset(s, 0, i)]),
                                      to_float(b[strided_offset(s, 1, i)])));
  }
}

// Float to integer saturates and maps NaN to 0, as the CPU kernel does.
template <typename To, typename From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<From, __half>) {
    return convert<To>(__half2float(v));
  } else if constexpr (std::is_same_v<To, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    if (isnan(v)) return To(0);
    const double d = static_cast<double>(v);
    if (d <= static_cast<double>(std::numeric_limits<To>::lowest())) {
      return std::numeric_limits<To>::lowest();
    }
    if (d >= static_cast<double>(std::numeric_limits<To>::max())) {
      return std::numeric_limits<To>::max();
    }
    return static_cast<To>(v);
  } else {
    return static_cast<To>(v);
  }
}

template <typename To, typename From>
__global__ void cast_kernel(const From* __restrict__ x, To* __restrict__ y, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_stride()) y[i] = convert<To>(x[i]);
}

template <typename From>
cudaError_t cast_from(CastType to, const From* x, void* y, int64_t n, cudaStream_t stream) {
  const unsigned blocks = blocks_for(n);
  switch (to) {
    case CastType::kFloat32:
      cast_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<float*>(y), n);
      break;
    case CastType::kFloat16:
      cast_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<__half*>(y), n);
      break;
    case CastType::kInt32:
      cast_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<int32_t*>(y), n);
      break;
    case CastType::kInt64:
      cast_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<int64_t*>(y), n);
      break;
    case CastType::kInt8:
      cast_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<int8_t*>(y), n);
      break;
    case CastType::kUInt8:
      cast_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<uint8_t*>(y), n);
      break;
    case CastType::kBool:
      cast_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<bool*>(y), n);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_unary(FloatType t, const void* x, void* y, int64_t n, UnaryOp op, float alpha,
                         float beta, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  KS_FLOAT_DISPATCH(t, (unary_kernel<T><<<blocks_for(n), 256, 0, stream>>>(
                           static_cast<const T*>(x), static_cast<T*>(y), n, op, alpha, beta)));
  return cudaGetLastError();
}

cudaError_t launch_clip(FloatType t, const void* x, void* y, int64_t n, const void* lo,
                        const void* hi, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  KS_FLOAT_DISPATCH(t, (clip_kernel<T><<<blocks_for(n), 256, 0, stream>>>(
                           static_cast<const T*>(x), static_cast<T*>(y), n,
                           static_cast<const T*>(lo), static_cast<const T*>(hi))));
  return cudaGetLastError();
}

cudaError_t launch_binary(FloatType t, const void* a, const void* b, void* y, int64_t n,
                          const StridedShape* layout, BinaryOp op, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (layout == nullptr) {
    KS_FLOAT_DISPATCH(
        t, (binary_same_shape<T><<<blocks_for(n), 256, 0, stream>>>(
               static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), n, op)));
  } else {
    KS_FLOAT_DISPATCH(t, (binary_broadcast<T><<<blocks_for(n), 256, 0, stream>>>(
                             static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y),
                             n, *layout, op)));
  }
  return cudaGetLastError();
}

cudaError_t launch_cast(CastType from, CastType to, const void* x, void* y, int64_t n,
                        cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  switch (from) {
    case CastType::kFloat32:
      return cast_from(to, static_cast<const float*>(x), y, n, stream);
    case CastType::kFloat16:
      return cast_from(to, static_cast<const __half*>(x), y, n, stream);
    case CastType::kInt32:
      return cast_from(to, static_cast<const int32_t*>(x), y, n, stream);
    case CastType::kInt64:
      return cast_from(to, static_cast<const int64_t*>(x), y, n, stream);
    case CastType::kInt8:
      return cast_from(to, static_cast<const int8_t*>(x), y, n, stream);
    case CastType::kUInt8:
      return cast_from(to, static_cast<const uint8_t*>(x), y, n, stream);
    case CastType::kBool:
      return cast_from(to, static_cast<const bool*>(x), y, n, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace kestrel::runtime::cuda
