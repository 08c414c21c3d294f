// The convolution epilogue: y = activation(y + bias[channel]) + residual, in place, in one pass
// over NCHW data.
#include <cmath>

#include "kestrel/runtime/cuda/device_math.cuh"

namespace kestrel::runtime::cuda {
namespace {

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
