// The instruction set of FusedElementwise programs (ir/ops/fused.cc documents the operator and its
// encoding), shared by the CPU and CUDA backends. Plain C++ without Kestrel's host headers, so
// that nvcc compiles it into the device code too.
#pragma once

#include <cstdint>

namespace kestrel::runtime {

enum class FusedOp : int8_t {
  kAdd,
  kSub,
  kMul,
  kDiv,
  kPow,
  kMin,
  kMax,
  kSigmoid,
  kRelu,
  kTanh,
  kExp,
  kLog,
  kNeg,
  kAbs,
  kSqrt,
  kReciprocal,
  kFloor,
  kCeil,
  kRound,
  kHardSwish,
  kLeakyRelu,    // alpha: the slope below 0
  kHardSigmoid,  // alpha, beta
  kClip,         // alpha: min, beta: max
  kConst,        // alpha: the value
};

struct FusedOpInfo {
  const char* name;  // the spelling in the `ops` attribute
  FusedOp op;
  int operands;
};

inline constexpr FusedOpInfo kFusedOps[] = {
    {"Add", FusedOp::kAdd, 2},
    {"Sub", FusedOp::kSub, 2},
    {"Mul", FusedOp::kMul, 2},
    {"Div", FusedOp::kDiv, 2},
    {"Pow", FusedOp::kPow, 2},
    {"Min", FusedOp::kMin, 2},
    {"Max", FusedOp::kMax, 2},
    {"Sigmoid", FusedOp::kSigmoid, 1},
    {"Relu", FusedOp::kRelu, 1},
    {"Tanh", FusedOp::kTanh, 1},
    {"Exp", FusedOp::kExp, 1},
    {"Log", FusedOp::kLog, 1},
    {"Neg", FusedOp::kNeg, 1},
    {"Abs", FusedOp::kAbs, 1},
    {"Sqrt", FusedOp::kSqrt, 1},
    {"Reciprocal", FusedOp::kReciprocal, 1},
    {"Floor", FusedOp::kFloor, 1},
    {"Ceil", FusedOp::kCeil, 1},
    {"Round", FusedOp::kRound, 1},
    {"HardSwish", FusedOp::kHardSwish, 1},
    {"LeakyRelu", FusedOp::kLeakyRelu, 1},
    {"HardSigmoid", FusedOp::kHardSigmoid, 1},
    {"Clip", FusedOp::kClip, 1},
    {"Const", FusedOp::kConst, 0},
};

// One instruction: `a` and `b` name its operands (inputs 0..N-1, then the results of the
// instructions before it; -1 where it has fewer operands), alpha and beta are its constants.
struct FusedInstr {
  FusedOp op = FusedOp::kConst;
  int32_t a = -1;
  int32_t b = -1;
  float alpha = 0;
  float beta = 0;
};

}  // namespace kestrel::runtime
