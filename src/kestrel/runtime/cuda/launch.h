// Launchers of the CUDA kernels: plain C++ signatures (no Kestrel headers) so that the .cu files
// that define them compile without the host-side headers, which nvcc cannot digest (fmt). The .cc
// files build kernels for the engine on top of these. Each launcher queues work on `stream` and
// returns the launch's error (cudaSuccess when queued).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kestrel::runtime::cuda {

// Up to this many dimensions in the generic strided kernels.
inline constexpr int kMaxRank = 8;

// Dimensions and per-operand strides of a broadcast or permutation, passed by value to kernels.
struct StridedShape {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t strides[3][kMaxRank] = {};  // up to three operands
};

// Storage types of the floating kernels.
enum class FloatType : int { kFloat32, kFloat16 };

enum class UnaryOp : int {
  kRelu,
  kLeakyRelu,
  kSigmoid,
  kHardSigmoid,
  kHardSwish,
  kExp,
  kLog,
  kSqrt,
  kNeg,
  kAbs,
  kFloor,
  kCeil,
  kRound
};
enum class BinaryOp : int { kAdd, kSub, kMul, kDiv, kPow, kMin, kMax };
enum class Activation : int {
  kNone,
  kRelu,
  kLeakyRelu,
  kSigmoid,
  kHardSigmoid,
  kHardSwish,
  kClip,
  kSilu
};
// Element types Cast handles on the GPU.
enum class CastType : int { kFloat32, kFloat16, kInt32, kInt64, kInt8, kUInt8, kBool };

cudaError_t launch_unary(FloatType t, const void* x, void* y, int64_t n, UnaryOp op, float alpha,
                         float beta, cudaStream_t stream);
// lo and hi are device scalars of type t, or null for no bound.
cudaError_t launch_clip(FloatType t, const void* x, void* y, int64_t n, const void* lo,
                        const void* hi, cudaStream_t stream);
// `layout` null: a, b and y have the same shape.
cudaError_t launch_binary(FloatType t, const void* a, const void* b, void* y, int64_t n,
                          const StridedShape* layout, BinaryOp op, cudaStream_t stream);
cudaError_t launch_cast(CastType from, CastType to, const void* x, void* y, int64_t n,
                        cudaStream_t stream);

// out[i] = in[offset of i in operand 0 of `layout`]; elements of `element_size` bytes.
cudaError_t launch_gather_strided(int element_size, const void* in, void* out, int64_t n,
                                  const StridedShape& layout, cudaStream_t stream);
// `outer` blocks of `block` elements, `in_stride` / `out_stride` elements apart.
cudaError_t launch_copy_blocks(int element_size, const void* in, void* out, int64_t outer,
                               int64_t block, int64_t in_stride, int64_t out_stride,
                               cudaStream_t stream);

struct PoolWindow {
  int kh, kw, sh, sw, dh, dw, ph, pw;  // kernel, stride, dilation, leading pads
  int pad_bottom, pad_right;           // trailing pads
  bool average, count_include_pad;
};
// NCHW: `planes` = N*C planes of h x w. NHWC (channels > 0): `planes` = N images of h x w x
// channels.
cudaError_t launch_pool2d(FloatType t, const void* x, void* y, int64_t planes, int h, int w, int oh,
                          int ow, int channels_last, const PoolWindow& window, cudaStream_t stream);
cudaError_t launch_global_average(FloatType t, const void* x, void* y, int64_t planes, int64_t size,
                                  cudaStream_t stream);

enum class ResizeCoordinates : int {
  kHalfPixel,
  kHalfPixelSymmetric,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric
};
enum class NearestRounding : int { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };
struct ResizeAxis {
  int64_t in, out;
  double scale;
};
// NCHW: `planes` = N*C planes; NHWC (channels > 0): `planes` = N images with `channels` innermost.
cudaError_t launch_resize_nearest(int element_size, const void* x, void* y, int64_t planes,
                                  int64_t channels_last, ResizeAxis h, ResizeAxis w,
                                  ResizeCoordinates coordinates, NearestRounding rounding,
                                  cudaStream_t stream);

// y = activation(y + bias[channel]) + residual, over [N, channels, plane] (NCHW) or, with
// channels_last, [N, plane, channels] (NHWC); bias and residual may be null.
cudaError_t launch_conv_epilogue(FloatType t, void* y, const void* bias, const void* residual,
                                 int64_t count, int64_t channels, int64_t plane, bool channels_last,
                                 Activation activation, float alpha, float beta,
                                 cudaStream_t stream);

// A direct convolution for layers with few input channels (the 6x6 stride-2 stem of YOLOv5 has 3),
// where cuDNN's tensor-core kernels have nothing to multiply: each thread computes every output
// channel of one output pixel from weights staged in shared memory, with the epilogue (bias,
// activation, residual) fused. Layout NCHW, or NHWC with `channels_last` (weights then
// [K, kh, kw, C]). REQUIRES: direct_conv_supported(...).
struct DirectConvShape {
  int n, c, h, w, k, kh, kw, sh, sw, ph, pw, oh, ow;
  bool channels_last;
};
bool direct_conv_supported(const DirectConvShape& s);
cudaError_t launch_direct_conv(FloatType t, const void* x, const void* weights, const void* bias,
                               const void* residual, void* y, const DirectConvShape& s,
                               Activation activation, float alpha, float beta, cudaStream_t stream);

}  // namespace kestrel::runtime::cuda
