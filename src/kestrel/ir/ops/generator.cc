// Shape rules of the generator operators: Constant, ConstantOfShape, Range, Shape and Size. Their
// outputs are made from attributes, from the values of their (value) inputs, or from input shapes
// alone.
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kestrel/ir/op_families.h"
#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {
namespace {

// ONNX allows int16..int64, float and double; float16 and bfloat16 are accepted too, because
// exporters that convert a whole model to half precision produce them (yolov5s exported with
// --half has a float16 Range building its grid).
using RangeTypes = TypeList<int16_t, int32_t, int64_t, float, double, Half, BFloat16>;

int64_t no_flops(const InferContext&) { return 0; }

Status constant_rule(InferContext& ctx) {
  const Attributes& a = ctx.attrs();
  if (a.all().size() != 1) {
    return ctx.error("exactly one value attribute must be given, got {}", a.all().size());
  }
  if (a.has("value_string") || a.has("value_strings")) {
    return ctx.unsupported("string constants are not supported");
  }
  if (a.has("sparse_value")) return ctx.unsupported("sparse constants are not supported");
  if (const Tensor* t = a.get_tensor("value")) {
    if (!dtype_in<AllTypes>(t->dtype())) {
      return ctx.unsupported("constant of element type {} is not supported", t->dtype());
    }
    ctx.set_output(0, t->dtype(), t->shape());
  } else if (a.has("value_float")) {
    ctx.set_output(0, DType::kFloat32, Shape{});
  } else if (a.has("value_floats")) {
    ctx.set_output(0, DType::kFloat32,
                   Shape{static_cast<int64_t>(a.get_floats("value_floats").size())});
  } else if (a.has("value_int")) {
    ctx.set_output(0, DType::kInt64, Shape{});
  } else {
    ctx.set_output(0, DType::kInt64, Shape{static_cast<int64_t>(a.get_ints("value_ints").size())});
  }
  return Status();
}

Status constant_of_shape_rule(InferContext& ctx) {
  if (ctx.input_dtype(0) != DType::kInt64) {
    return ctx.error("input 0 (shape) must be int64, got {}", ctx.input_dtype(0));
  }
  KS_RETURN_IF_ERROR(require_rank(ctx, 0, 1));
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> dims, ctx.input_ints(0));
  for (int64_t d : dims) {
    if (d < 0) return ctx.error("shape [{}] has a negative dimension", fmt::join(dims, ","));
  }
  DType dtype = DType::kFloat32;
  if (const Tensor* value = ctx.attrs().get_tensor("value")) {
    if (value->num_elements() != 1) {
      return ctx.error("value must hold one element, got shape {}", value->shape());
    }
    if (!dtype_in<AllTypes>(value->dtype())) {
      return ctx.unsupported("value of element type {} is not supported", value->dtype());
    }
    dtype = value->dtype();
  }
  ctx.set_output(0, dtype, Shape(std::move(dims)));
  return Status();
}

// The element count of Range(start, limit, delta): max(ceil((limit - start) / delta), 0).
// Integers are computed exactly (in 128 bits); floats as onnxruntime does, the difference in T
// and the division in double.
template <typename T>
StatusOr<int64_t> range_count(const InferContext& ctx, T start, T limit, T delta) {
  if (delta == T(0)) return ctx.error("delta is 0");
  if constexpr (std::is_integral_v<T>) {
    const __int128 diff = static_cast<__int128>(limit) - start;
    __int128 n = diff / delta;
    if (n * delta != diff) ++n;  // the quotient truncates; the ceiling is one more when positive
    if (n < 0) n = 0;
    if (n > std::numeric_limits<int64_t>::max()) return ctx.error("the range is too long");
    return static_cast<int64_t>(n);
  } else {
    const double n = std::ceil(static_cast<double>(T(limit - start)) / static_cast<double>(delta));
    if (std::isnan(n)) return ctx.error("the range's size is not a number");
    if (n <= 0) return int64_t{0};
    // 2^62 is far past any tensor the allocator accepts, and converts exactly.
    if (n >= 0x1p62) return ctx.error("the range has {} elements, too many", n);
    return static_cast<int64_t>(n);
  }
}

Status range_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<RangeTypes>(ctx, 0));
  for (size_t i = 0; i < 3; ++i) {
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, i));
    if (ctx.input_shape(i).num_elements() != 1) {
      return ctx.error("input {} must be a scalar, got shape {}", i, ctx.input_shape(i));
    }
  }
  int64_t count = 0;
  KS_RETURN_IF_ERROR(dispatch_dtype<RangeTypes>(ctx.input_dtype(0), [&]<typename T>(TypeTag<T>) {
    StatusOr<int64_t> n =
        range_count<T>(ctx, ctx.input_value(0).data<T>()[0], ctx.input_value(1).data<T>()[0],
                       ctx.input_value(2).data<T>()[0]);
    if (!n.ok()) return n.status();
    count = *n;
    return Status();
  }));
  ctx.set_output(0, ctx.input_dtype(0), Shape{count});
  return Status();
}

// Shape's output length under opset 15's start/end: negative values count from the end, then
// both are clamped to [0, rank].
Status shape_rule(InferContext& ctx) {
  const auto rank = static_cast<int64_t>(ctx.input_rank(0));
  auto clamp = [rank](int64_t v) {
    if (v < 0) v += rank;
    return std::clamp<int64_t>(v, 0, rank);
  };
  const int64_t start = clamp(ctx.attrs().get_int("start", 0));
  const int64_t end = clamp(ctx.attrs().get_int("end", rank));
  ctx.set_output(0, DType::kInt64, Shape{std::max<int64_t>(end - start, 0)});
  return Status();
}

Status size_rule(InferContext& ctx) {
  ctx.set_output(0, DType::kInt64, Shape{});
  return Status();
}

OpSchema generator(std::string_view name, InferFn infer, int inputs,
                   std::vector<AttrSpec> attrs = {}, std::vector<int> value_inputs = {}) {
  OpSchema s;
  s.op_type = name;
  s.min_inputs = s.max_inputs = inputs;
  s.attributes = std::move(attrs);
  s.value_inputs = std::move(value_inputs);
  s.infer = infer;
  s.flops = no_flops;
  return s;
}

}  // namespace

std::vector<OpSchema> generator_op_schemas() {
  using AT = AttributeType;
  // Shape and Size read only their input's shape, so constant propagation evaluates them as soon
  // as that shape is known: what resolves the Shape -> Gather -> Range chains of dynamic exports.
  OpSchema shape = generator("Shape", shape_rule, 1, {{"start", AT::kInt}, {"end", AT::kInt}});
  shape.shape_only_inputs = {0};
  OpSchema size = generator("Size", size_rule, 1);
  size.shape_only_inputs = {0};
  return {
      // sparse_value cannot arrive as a dense tensor (the importer refuses sparse attributes);
      // it is listed so that the rule can name it.
      generator("Constant", constant_rule, 0,
                {{"value", AT::kTensor},
                 {"value_float", AT::kFloat},
                 {"value_floats", AT::kFloats},
                 {"value_int", AT::kInt},
                 {"value_ints", AT::kInts},
                 {"value_string", AT::kString},
                 {"value_strings", AT::kStrings},
                 {"sparse_value", AT::kTensor}}),
      generator("ConstantOfShape", constant_of_shape_rule, 1, {{"value", AT::kTensor}}, {0}),
      generator("Range", range_rule, 3, {}, {0, 1, 2}),
      std::move(shape),
      std::move(size),
  };
}

}  // namespace kestrel::ir
