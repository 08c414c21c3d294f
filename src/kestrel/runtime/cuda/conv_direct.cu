// Direct convolution for few input channels (launch.h: launch_direct_conv). One thread per output
// pixel keeps every output channel's sum in registers; the weights (float) sit in shared memory,
// read by a whole warp at once (a broadcast). Sums are in float, like cuDNN's FP16 path.
#include "kestrel/runtime/cuda/device_math.cuh"

namespace kestrel::runtime::cuda {
namespace {

constexpr int kMaxInputChannels = 4;
constexpr int kMaxWeights = 8192;  // floats: 32 KB of shared memory
constexpr int kThreads = 128;

template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    direct_conv(const T* __restrict__ x, const T* __restrict__ weights, const T* __restrict__ bias,
                const T* __restrict__ residual, T* __restrict__ y, DirectConvShape s, Activation a,
                float alpha, float beta) {
  __shared__ float w[kMaxWeights];
  const int taps = s.kh * s.kw * s.c;
  // Staged as [kh, kw, c, K]: the inner loop over output channels reads consecutive words.
  for (int i = threadIdx.x; i < K * taps; i += blockDim.x) {
    const int k = i / taps,
              r = i % taps;  // r: position in this filter's [kh, kw, c] or [c, kh, kw]
    int ky, kx, c;
    if (s.channels_last) {
      c = r % s.c;
      kx = (r / s.c) % s.kw;
      ky = r / (s.c * s.kw);
    } else {
      kx = r % s.kw;
      ky = (r / s.kw) % s.kh;
      c = r / (s.kw * s.kh);
    }
    w[((ky * s.kw + kx) * s.c + c) * K + k] = k < s.k ? to_float(weights[i]) : 0.f;
  }
  __syncthreads();
  const int64_t pixels = static_cast<int64_t>(s.n) * s.oh * s.ow;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= pixels) return;
  const int ox = static_cast<int>(p % s.ow);
  const int oy = static_cast<int>((p / s.ow) % s.oh);
  const int n = static_cast<int>(p / (static_cast<int64_t>(s.ow) * s.oh));
  float acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.f;
  const int64_t plane = static_cast<int64_t>(s.h) * s.w;
  for (int ky = 0; ky < s.kh; ++ky) {
    const int iy = oy * s.sh - s.ph + ky;
    if (iy < 0 || iy >= s.h) continue;
    for (int kx = 0; kx < s.kw; ++kx) {
      const int ix = ox * s.sw - s.pw + kx;
      if (ix < 0 || ix >= s.w) continue;
      float v[kMaxInputChannels];
      for (int c = 0; c < s.c; ++c) {
        const int64_t at = s.channels_last
                               ? ((static_cast<int64_t>(n) * s.h + iy) * s.w + ix) * s.c + c
                               : (static_cast<int64_t>(n) * s.c + c) * plane + iy * s.w + ix;
        v[c] = to_float(x[at]);
      }
      const float* wt = w + (ky * s.kw + kx) * s.c * K;
      for (int c = 0; c < s.c; ++c) {
#pragma unroll
        for (int k = 0; k < K; ++k) acc[k] = fmaf(v[c], wt[c * K + k], acc[k]);
      }
    }
  }
  const int64_t out_plane = static_cast<int64_t>(s.oh) * s.ow;
  for (int k = 0; k < s.k && k < K; ++k) {
    const int64_t at = s.channels_last ? p * s.k + k
                                       : (static_cast<int64_t>(n) * s.k + k) * out_plane +
                                             static_cast<int64_t>(oy) * s.ow + ox;
    float r = acc[k];
    if (bias) r += to_float(bias[k]);
    r = activate(a, r, alpha, beta);
    if (residual) r += to_float(residual[at]);
    y[at] = from_float<T>(r);
  }
}

template <typename T, int K>
cudaError_t launch(const void* x, const void* weights, const void* bias, const void* residual,
                   void* y, const DirectConvShape& s, Activation a, float alpha, float beta,
                   cudaStream_t stream) {
  const int64_t pixels = static_cast<int64_t>(s.n) * s.oh * s.ow;
  const int64_t blocks = (pixels + kThreads - 1) / kThreads;
  direct_conv<T, K><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(weights), static_cast<const T*>(bias),
      static_cast<const T*>(residual), static_cast<T*>(y), s, a, alpha, beta);
  return cudaGetLastError();
}

}  // namespace

bool direct_conv_supported(const DirectConvShape& s) {
  const int64_t pixels = static_cast<int64_t>(s.n) * s.oh * s.ow;
  const int padded_k = s.k <= 16 ? 16 : (s.k <= 32 ? 32 : 64);
  return s.c >= 1 && s.c <= kMaxInputChannels && s.k >= 1 && s.k <= 64 && s.kh >= 1 && s.kw >= 1 &&
         padded_k * s.kh * s.kw * s.c <= kMaxWeights && pixels > 0 &&
         (pixels + kThreads - 1) / kThreads <= 0x7fffffff;
}

cudaError_t launch_direct_conv(FloatType t, const void* x, const void* weights, const void* bias,
                               const void* residual, void* y, const DirectConvShape& s,
                               Activation activation, float alpha, float beta,
                               cudaStream_t stream) {
  if (!direct_conv_supported(s)) return cudaErrorInvalidValue;
  if (t == FloatType::kFloat32) {
    if (s.k <= 16)
      return launch<float, 16>(x, weights, bias, residual, y, s, activation, alpha, beta, stream);
    if (s.k <= 32)
      return launch<float, 32>(x, weights, bias, residual, y, s, activation, alpha, beta, stream);
    return launch<float, 64>(x, weights, bias, residual, y, s, activation, alpha, beta, stream);
  }
  if (s.k <= 16)
    return launch<__half, 16>(x, weights, bias, residual, y, s, activation, alpha, beta, stream);
  if (s.k <= 32)
    return launch<__half, 32>(x, weights, bias, residual, y, s, activation, alpha, beta, stream);
  return launch<__half, 64>(x, weights, bias, residual, y, s, activation, alpha, beta, stream);
}

}  // namespace kestrel::runtime::cuda
