// Shape rules of the broadcasting elementwise operators: arithmetic, comparison, logic, Where,
// and the variadic Min/Max/Sum/Mean.
#include "kestrel/ir/op_families.h"
#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {
namespace {

// All inputs share an element type in `List`; the output broadcasts their shapes and has element
// type `out` (kUndefined: the inputs' type).
template <typename List, DType out = DType::kUndefined>
Status broadcast_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<List>(ctx, 0));
  Shape shape = ctx.input_shape(0);
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, i));
    StatusOr<Shape> s = broadcast_shapes(shape, ctx.input_shape(i));
    if (!s.ok()) return ctx.error("{}", s.status().message());
    shape = *s;
  }
  ctx.set_output(0, out == DType::kUndefined ? ctx.input_dtype(0) : out, std::move(shape));
  return Status();
}

// Pow's exponent may have another numeric type than its base; the output has the base's.
Status pow_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<NumericTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_dtype<NumericTypes>(ctx, 1));
  StatusOr<Shape> s = broadcast_shapes(ctx.input_shape(0), ctx.input_shape(1));
  if (!s.ok()) return ctx.error("{}", s.status().message());
  ctx.set_output(0, ctx.input_dtype(0), *s);
  return Status();
}

Status where_rule(InferContext& ctx) {
  if (ctx.input_dtype(0) != DType::kBool) return ctx.error("condition must be bool");
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 1, 2));
  StatusOr<Shape> s = broadcast_shapes(ctx.input_shape(0), ctx.input_shape(1));
  if (s.ok()) s = broadcast_shapes(*s, ctx.input_shape(2));
  if (!s.ok()) return ctx.error("{}", s.status().message());
  ctx.set_output(0, ctx.input_dtype(1), *s);
  return Status();
}

OpSchema binary(std::string_view name, InferFn infer) {
  OpSchema s;
  s.op_type = name;
  s.min_inputs = s.max_inputs = 2;
  s.infer = infer;
  return s;
}

OpSchema variadic(std::string_view name, InferFn infer) {
  OpSchema s;
  s.op_type = name;
  s.min_inputs = 1;
  s.max_inputs = kVariadic;
  s.infer = infer;
  return s;
}

}  // namespace

std::vector<OpSchema> binary_op_schemas() {
  constexpr auto arithmetic = broadcast_rule<NumericTypes>;
  constexpr auto compare = broadcast_rule<NumericTypes, DType::kBool>;
  constexpr auto logic = broadcast_rule<TypeList<bool>, DType::kBool>;
  OpSchema where = binary("Where", where_rule);
  where.min_inputs = where.max_inputs = 3;
  return {
      binary("Add", arithmetic),
      binary("Sub", arithmetic),
      binary("Mul", arithmetic),
      binary("Div", arithmetic),
      binary("Pow", pow_rule),
      binary("Equal", broadcast_rule<AllTypes, DType::kBool>),
      binary("Less", compare),
      binary("LessOrEqual", compare),
      binary("Greater", compare),
      binary("GreaterOrEqual", compare),
      binary("And", logic),
      binary("Or", logic),
      binary("Xor", logic),
      variadic("Min", arithmetic),
      variadic("Max", arithmetic),
      variadic("Sum", broadcast_rule<FloatTypes>),
      variadic("Mean", broadcast_rule<FloatTypes>),
      std::move(where),
  };
}

}  // namespace kestrel::ir
