// Shape rules of the one-input elementwise operators and Cast.
#include "kestrel/ir/op_families.h"
#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {
namespace {

Status clip_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<NumericTypes>(ctx, 0));
  for (size_t i = 1; i < 3; ++i) {
    if (!ctx.has_input(i)) continue;
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, i));
    if (ctx.input_shape(i).num_elements() != 1) {
      return ctx.error("input {} (min/max) must be a scalar, got shape {}", i, ctx.input_shape(i));
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  return Status();
}

Status cast_rule(InferContext& ctx) {
  const int64_t to = ctx.attrs().get_int("to", 0);
  if (to < INT32_MIN || to > INT32_MAX || !is_valid_dtype(static_cast<int32_t>(to))) {
    return ctx.unsupported("cannot cast to element type {} (not supported by Kestrel)", to);
  }
  ctx.set_output(0, static_cast<DType>(to), ctx.input_shape(0));
  return Status();
}

// CastLike: input 0 converted to the element type of input 1.
Status cast_like_rule(InferContext& ctx) {
  ctx.set_output(0, ctx.input_dtype(1), ctx.input_shape(0));
  return Status();
}

OpSchema unary(std::string_view name, InferFn infer, std::vector<AttrSpec> attrs = {}) {
  OpSchema s;
  s.op_type = name;
  s.attributes = std::move(attrs);
  s.infer = infer;
  return s;
}

}  // namespace

std::vector<OpSchema> unary_op_schemas() {
  constexpr auto floats = same_as_input_rule<FloatTypes>;
  constexpr auto signed_numbers = same_as_input_rule<SignedNumericTypes>;
  constexpr auto numbers = same_as_input_rule<NumericTypes>;
  std::vector<OpSchema> s = {
      unary("Abs", numbers),
      unary("Ceil", floats),
      unary("Exp", floats),
      unary("Floor", floats),
      unary("HardSigmoid", floats,
            {{"alpha", AttributeType::kFloat}, {"beta", AttributeType::kFloat}}),
      unary("HardSwish", floats),
      unary("Identity", same_as_input_rule<AllTypes>),
      unary("LeakyRelu", floats, {{"alpha", AttributeType::kFloat}}),
      unary("Log", floats),
      unary("Neg", signed_numbers),
      unary("Not", same_as_input_rule<TypeList<bool>>),
      unary("Relu", signed_numbers),
      unary("Round", floats),
      unary("Sigmoid", floats),
      unary("Sqrt", floats),
      unary("Cast", cast_rule,
            {{"to", AttributeType::kInt, true}, {"saturate", AttributeType::kInt}}),
  };
  OpSchema cast_like = unary("CastLike", cast_like_rule, {{"saturate", AttributeType::kInt}});
  cast_like.min_inputs = cast_like.max_inputs = 2;
  s.push_back(std::move(cast_like));
  OpSchema clip = unary("Clip", clip_rule);
  clip.max_inputs = 3;
  s.push_back(std::move(clip));
  return s;
}

}  // namespace kestrel::ir
