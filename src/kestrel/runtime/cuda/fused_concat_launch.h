// Launcher of FusedConcat's CUDA kernel (fused_concat.cu), in plain C++ for the .cc side (see
// launch.h for why the launchers keep Kestrel's headers out).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kestrel/runtime/cuda/launch.h"

namespace kestrel::runtime::cuda {

// Parts one launch writes; a FusedConcat with more parts takes several launches.
inline constexpr int kMaxConcatParts = 8;

// One part of a FusedConcat: X_k, its optional bias (one value per index along the concatenated
// axis) and residual (X_k's shape), and its activation.
struct ConcatPart {
  const void* x = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  int64_t width = 0;  // X_k's elements per outer index: its size along the axis times `inner`
  Activation activation = Activation::kNone;
  float alpha = 0, beta = 0;
};

// The output seen as [outer, row]; the launch's parts fill columns [offset, offset + sum of their
// widths) of every row, one after another.
struct FusedConcatShape {
  int parts = 0;
  ConcatPart part[kMaxConcatParts];
  int64_t outer = 0;   // product of the dimensions before the axis
  int64_t row = 0;     // output elements per outer index
  int64_t offset = 0;  // first column of this launch's parts
  int64_t inner = 1;   // product of the dimensions after the axis (bias index = column / inner)
};

// y[o, offset + ...] = activation_k(x_k[o, j] + bias_k[j / inner]) + residual_k[o, j].
cudaError_t launch_fused_concat(FloatType t, const FusedConcatShape& shape, void* y,
                                cudaStream_t stream);

}  // namespace kestrel::runtime::cuda
