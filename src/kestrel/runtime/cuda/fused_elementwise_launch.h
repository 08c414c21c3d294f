// Launcher of FusedElementwise's CUDA kernel (fused_elementwise.cu), in plain C++ for the .cc side
// (see launch.h for why the launchers keep Kestrel's headers out). fused_elementwise.cc turns the
// operator's program into register code once per kernel, and the shapes into FusedLaunch per run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kestrel/runtime/cuda/launch.h"
#include "kestrel/runtime/fused_elementwise_ops.h"

namespace kestrel::runtime::cuda {

inline constexpr int kMaxFusedInputs = 8;
inline constexpr int kMaxFusedCode = 48;  // instructions, Consts included
// The register file is a template parameter of the kernel: 8 registers, or this many.
inline constexpr int kMaxFusedRegisters = 32;

// One instruction on registers: r[dst] = op(r[a], r[b]) (a, b: -1 for no operand).
struct FusedRegInstr {
  FusedOp op = FusedOp::kConst;
  int8_t dst = 0;
  int8_t a = -1;
  int8_t b = -1;
  float alpha = 0;
  float beta = 0;
};

// One launch. Input k is loaded into register k; the output is register `result` after the code.
// The output's dimensions are merged where every input allows (fewer divisions per element);
// strides are in elements, 0 along broadcast dimensions.
struct FusedLaunch {
  int num_inputs = 0;
  int num_code = 0;
  int num_registers = 0;
  int result = 0;
  int rank = 0;
  int64_t count = 0;  // output elements
  // Four consecutive elements per thread, with 8- or 16-byte accesses: the innermost dimension
  // is a multiple of 4, every input's innermost stride is 0 or 1, and the pointers are aligned.
  bool vectorized = false;
  const void* inputs[kMaxFusedInputs] = {};
  void* output = nullptr;
  int64_t dims[kMaxRank] = {};
  int64_t strides[kMaxFusedInputs][kMaxRank] = {};
  FusedRegInstr code[kMaxFusedCode] = {};
};

cudaError_t launch_fused_elementwise(FloatType t, const FusedLaunch& launch, cudaStream_t stream);

}  // namespace kestrel::runtime::cuda
