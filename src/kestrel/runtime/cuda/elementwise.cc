// Engine kernels for the elementwise operators on the GPU (the device code is in elementwise.cu).
// float32 and float16; other element types are left to the CPU (UNIMPLEMENTED).
#include <optional>

#include "kestrel/runtime/cuda/cuda_kernels.h"
#include "kestrel/runtime/cuda/launch.h"
#include "kestrel/runtime/cuda/strided.h"

namespace kestrel::runtime::cuda {
namespace {

StatusOr<std::unique_ptr<Kernel>> unary(const KernelDef& def, UnaryOp op, float alpha, float beta) {
  KS_ASSIGN_OR_RETURN(FloatType t, float_type(def, def.input_dtypes[0]));
  return make_kernel([t, op, alpha, beta](KernelContext& ctx) -> Status {
    return check_launch("unary",
                        launch_unary(t, ctx.input(0).raw_data(), ctx.output(0).raw_data(),
                                     ctx.input(0).num_elements(), op, alpha, beta, stream_of(ctx)));
  });
}

StatusOr<std::unique_ptr<Kernel>> binary(const KernelDef& def, BinaryOp op) {
  if (def.input_dtypes.size() != 2 || def.input_dtypes[1] != def.input_dtypes[0]) {
    return unimplemented("{}: no CUDA kernel for these operands", def.describe());
  }
  KS_ASSIGN_OR_RETURN(FloatType t, float_type(def, def.input_dtypes[0]));
  return make_kernel([t, op](KernelContext& ctx) -> Status {
    const Tensor& a = ctx.input(0);
    const Tensor& b = ctx.input(1);
    Tensor& y = ctx.output(0);
    if (a.shape() == y.shape() && b.shape() == y.shape()) {
      return check_launch("binary", launch_binary(t, a.raw_data(), b.raw_data(), y.raw_data(),
                                                  y.num_elements(), nullptr, op, stream_of(ctx)));
    }
    const Shape operands[2] = {a.shape(), b.shape()};
    KS_ASSIGN_OR_RETURN(StridedShape layout, broadcast_layout(y.shape(), operands));
    return check_launch("binary", launch_binary(t, a.raw_data(), b.raw_data(), y.raw_data(),
                                                y.num_elements(), &layout, op, stream_of(ctx)));
  });
}

StatusOr<std::unique_ptr<Kernel>> create_clip(const KernelDef& def) {
  KS_ASSIGN_OR_RETURN(FloatType t, float_type(def, def.input_dtypes[0]));
  return make_kernel([t](KernelContext& ctx) -> Status {
    auto bound = [&](size_t i) { return ctx.has_input(i) ? ctx.input(i).raw_data() : nullptr; };
    return check_launch(
        "clip", launch_clip(t, ctx.input(0).raw_data(), ctx.output(0).raw_data(),
                            ctx.input(0).num_elements(), bound(1), bound(2), stream_of(ctx)));
  });
}

std::optional<CastType> cast_type(DType d) {
  switch (d) {
    case DType::kFloat32:
      return CastType::kFloat32;
    case DType::kFloat16:
      return CastType::kFloat16;
    case DType::kInt32:
      return CastType::kInt32;
    case DType::kInt64:
      return CastType::kInt64;
    case DType::kInt8:
      return CastType::kInt8;
    case DType::kUInt8:
      return CastType::kUInt8;
    case DType::kBool:
      return CastType::kBool;
    default:
      return std::nullopt;
  }
}

StatusOr<std::unique_ptr<Kernel>> create_cast(const KernelDef& def) {
  const std::optional<CastType> from = cast_type(def.input_dtypes[0]);
  const std::optional<CastType> to = cast_type(def.output_dtypes[0]);
  if (!from || !to) {
    return unimplemented("{}: no CUDA Cast from {} to {}", def.describe(), def.input_dtypes[0],
                         def.output_dtypes[0]);
  }
  return make_kernel([from = *from, to = *to](KernelContext& ctx) -> Status {
    return check_launch("cast",
                        launch_cast(from, to, ctx.input(0).raw_data(), ctx.output(0).raw_data(),
                                    ctx.input(0).num_elements(), stream_of(ctx)));
  });
}

#define KS_CUDA_UNARY(Name, Op, alpha, beta)                               \
  KernelEntry {                                                            \
    Name, +[](const KernelDef& def) -> StatusOr<std::unique_ptr<Kernel>> { \
      const Attributes& attrs = def.attrs;                                 \
      (void)attrs;                                                         \
      return unary(def, UnaryOp::Op, alpha, beta);                         \
    }                                                                      \
  }
#define KS_CUDA_BINARY(Name, Op)                                           \
  KernelEntry {                                                            \
    Name, +[](const KernelDef& def) -> StatusOr<std::unique_ptr<Kernel>> { \
      return binary(def, BinaryOp::Op);                                    \
    }                                                                      \
  }

}  // namespace

std::vector<KernelEntry> elementwise_kernels() {
  return {
      KS_CUDA_UNARY("Relu", kRelu, 0.f, 0.f),
      KS_CUDA_UNARY("LeakyRelu", kLeakyRelu, attrs.get_float("alpha", 0.01f), 0.f),
      KS_CUDA_UNARY("Sigmoid", kSigmoid, 0.f, 0.f),
      KS_CUDA_UNARY("HardSigmoid", kHardSigmoid, attrs.get_float("alpha", 0.2f),
                    attrs.get_float("beta", 0.5f)),
      KS_CUDA_UNARY("HardSwish", kHardSwish, 0.f, 0.f),
      KS_CUDA_UNARY("Exp", kExp, 0.f, 0.f),
      KS_CUDA_UNARY("Log", kLog, 0.f, 0.f),
      KS_CUDA_UNARY("Sqrt", kSqrt, 0.f, 0.f),
      KS_CUDA_UNARY("Neg", kNeg, 0.f, 0.f),
      KS_CUDA_UNARY("Abs", kAbs, 0.f, 0.f),
      KS_CUDA_UNARY("Floor", kFloor, 0.f, 0.f),
      KS_CUDA_UNARY("Ceil", kCeil, 0.f, 0.f),
      KS_CUDA_UNARY("Round", kRound, 0.f, 0.f),
      KS_CUDA_BINARY("Add", kAdd),
      KS_CUDA_BINARY("Sub", kSub),
      KS_CUDA_BINARY("Mul", kMul),
      KS_CUDA_BINARY("Div", kDiv),
      KS_CUDA_BINARY("Pow", kPow),
      KS_CUDA_BINARY("Min", kMin),
      KS_CUDA_BINARY("Max", kMax),
      KernelEntry{"Clip", create_clip},
      KernelEntry{"Cast", create_cast},
  };
}

}  // namespace kestrel::runtime::cuda
