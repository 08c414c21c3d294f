// The convolution epilogue: y = activation(y + bias[channel]) + residual, in place, in one pass
// over NCHW data.
#include <cmath>

#include "kestrel/runtime/cuda/device_math.cuh"

namespace kestrel::runtime::cuda {
namespace {

__device__ __forceinline__ float activate(Activation a, float x, float alpha, float beta) {
  switch (a) {
    case Activation::kNone:
      return x;
    case Activation::kRelu:
      return x < 0.f ? 0.f : x;
    case Activation::kLeakyRelu:
      return x < 0.f ? alpha * x : x;
    case Activation::kSigmoid:
      return 1.f / (1.f + expf(-x));
    case Activation::kHardSigmoid:
      return fmaxf(0.f, fminf(1.f, alpha * x + beta));
    case Activation::kHardSwish:
      return x * fmaxf(0.f, fminf(1.f, x / 6.f + 0.5f));
    case Activation::kClip:
      return alpha > beta ? beta : (x < alpha ? alpha : (x > beta ? beta : x));
    case Activation::kSilu:
      return x / (1.f + expf(-x));
  }
  return x;
}

template <typename T>
__global__ void epilogue(T* __restrict__ y, const T* __restrict__ bias,
                         const T* __restrict__ residual, int64_t count, int64_t channels,
                         int64_t plane, bool channels_last, Activation a, float alpha, float beta) {
  for (int64_t i = grid_start(); i < count; i += grid_stride()) {
    float v = to_float(y[i]);
    if (bias) v += to_float(bias[channels_last ? i % channels : (i / plane) % channels]);
    v = activate(a, v, alpha, beta);
    if (residual) v += to_float(residual[i]);
    y[i] = from_float<T>(v);
  }
}

}  // namespace

cudaError_t launch_conv_epilogue(FloatType t, void* y, const void* bias, const void* residual,
                                 int64_t count, int64_t channels, int64_t plane, bool channels_last,
                                 Activation activation, float alpha, float beta,
                                 cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  KS_FLOAT_DISPATCH(
      t, (epilogue<T><<<blocks_for(count), 256, 0, stream>>>(
             static_cast<T*>(y), static_cast<const T*>(bias), static_cast<const T*>(residual),
             count, channels, plane, channels_last, activation, alpha, beta)));
  return cudaGetLastError();
}

}  // namespace kestrel::runtime::cuda
