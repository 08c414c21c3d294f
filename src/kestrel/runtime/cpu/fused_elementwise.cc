// Reference kernel of FusedElementwise (ir/ops/fused.cc): for each output element, the elements of
// the inputs that broadcast to it are read into float registers, the program runs on them, and its
// last result is rounded once to the storage type.
//
// Every instruction computes what the unfused reference kernel of its operator computes in float
// (unary.cc, binary.cc), expression for expression, so a fused float32 chain equals the unfused
// one bit for bit.
#include "kestrel/runtime/fused_elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

float apply(const FusedInstr& in, float a, float b) {
  switch (in.op) {
    case FusedOp::kAdd:
      return a + b;
    case FusedOp::kSub:
      return a - b;
    case FusedOp::kMul:
      return a * b;
    case FusedOp::kDiv:
      return a / b;
    case FusedOp::kPow:  // in double, as the Pow kernel computes it
      return static_cast<float>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case FusedOp::kMin:
      if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
      return b < a ? b : a;
    case FusedOp::kMax:
      if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
      return a < b ? b : a;
    case FusedOp::kSigmoid:
      return 1.0f / (1.0f + std::exp(-a));
    case FusedOp::kRelu:
      return a < 0.0f ? 0.0f : a;
    case FusedOp::kTanh:
      return std::tanh(a);
    case FusedOp::kExp:
      return std::exp(a);
    case FusedOp::kLog:
      return std::log(a);
    case FusedOp::kNeg:
      return -a;
    case FusedOp::kAbs:
      return a < 0.0f ? -a : a;
    case FusedOp::kSqrt:
      return std::sqrt(a);
    case FusedOp::kReciprocal:
      return 1.0f / a;
    case FusedOp::kFloor:
      return std::floor(a);
    case FusedOp::kCeil:
      return std::ceil(a);
    case FusedOp::kRound:  // halves to even, as ONNX requires
      return std::nearbyint(a);
    case FusedOp::kHardSwish:
      return a * std::max(0.0f, std::min(1.0f, a / 6.0f + 0.5f));
    case FusedOp::kLeakyRelu:
      return a < 0.0f ? in.alpha * a : a;
    case FusedOp::kHardSigmoid:
      return std::max(0.0f, std::min(1.0f, in.alpha * a + in.beta));
    case FusedOp::kClip: {
      // NaN passes through; min is applied before max, as ONNX specifies.
      const float lo = in.alpha, hi = in.beta;
      return lo > hi ? hi : (a < lo ? lo : (a > hi ? hi : a));
    }
    case FusedOp::kConst:
      return in.alpha;
  }
  return a;
}

template <typename T>
void run_program(const std::vector<FusedInstr>& code, KernelContext& ctx) {
  const size_t n = ctx.num_inputs();
  Tensor& y = ctx.output(0);
  const Shape& out = y.shape();
  const int64_t total = out.num_elements();
  if (total == 0) return;
  std::vector<const T*> in(n);
  std::vector<std::vector<int64_t>> strides(n);
  for (size_t k = 0; k < n; ++k) {
    in[k] = ctx.input(k).data<T>();
    strides[k] = broadcast_strides(ctx.input(k).shape(), out);
  }
  // Registers: the inputs, then one per instruction (the program is straight-line).
  std::vector<float> regs(n + code.size());
  std::vector<int64_t> offsets(n, 0), index(out.rank(), 0);
  T* o = y.data<T>();
  for (int64_t i = 0; i < total; ++i) {
    for (size_t k = 0; k < n; ++k) regs[k] = ComputeType<T>(in[k][offsets[k]]);
    for (size_t j = 0; j < code.size(); ++j) {
      const FusedInstr& c = code[j];
      regs[n + j] = apply(c, c.a >= 0 ? regs[c.a] : 0.0f, c.b >= 0 ? regs[c.b] : 0.0f);
    }
    o[i] = to_storage<T>(regs.back());
    // The next output element's multi-index, and the offsets of the input elements it reads.
    for (size_t d = out.rank(); d-- > 0;) {
      ++index[d];
      for (size_t k = 0; k < n; ++k) offsets[k] += strides[k][d];
      if (index[d] < out[d]) break;
      for (size_t k = 0; k < n; ++k) offsets[k] -= strides[k][d] * out[d];
      index[d] = 0;
    }
  }
}

using FusedTypes = TypeList<float, Half, BFloat16>;

StatusOr<std::unique_ptr<Kernel>> create_fused_elementwise(const KernelDef& def) {
  for (DType t : def.input_dtypes) {
    if (t != def.input_dtypes[0] || !dtype_in<FusedTypes>(t)) {
      return unimplemented("{}: no CPU kernel for inputs of type {}", def.describe(), t);
    }
  }
  KS_ASSIGN_OR_RETURN(std::vector<FusedInstr> code, parse_fused_program(def));
  return make_kernel([code = std::move(code)](KernelContext& ctx) -> Status {
    return dispatch_dtype<FusedTypes>(ctx.output(0).dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      run_program<T>(code, ctx);
      return Status();
    });
  });
}

}  // namespace

std::vector<KernelEntry> fused_elementwise_kernels() {
  return {KernelEntry{"FusedElementwise", create_fused_elementwise}};
}

}  // namespace kestrel::runtime::cpu
