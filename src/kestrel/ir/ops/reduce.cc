// Shape rules of the reductions (ReduceSum, ReduceMean, ... in their opset-18 form, with `axes` as
// an optional input), ArgMax/ArgMin, TopK and NonMaxSuppression.
//
// Element types follow ONNX: the Reduce* operators take the float types and 32/64-bit integers,
// ReduceMax/ReduceMin also 8-bit integers and bool (opset 20); ArgMax, ArgMin and TopK take every
// numeric type; NonMaxSuppression takes float32 boxes and scores.
//
// YoloNms is Kestrel's own operator (not ONNX): decode + batched NMS of a raw YOLO output, with
// fixed-size outputs. `kestrel build --nms` appends it to a detector's graph
// (optimize/append_nms.h) and vision/ provides its kernels (vision/nms.h describes the exact
// semantics).
#include <algorithm>

#include "kestrel/ir/op_families.h"
#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {
namespace {

using ReduceTypes = TypeList<float, double, Half, BFloat16, int32_t, int64_t, uint32_t, uint64_t>;
using ReduceMinMaxTypes = TypeList<float, double, Half, BFloat16, int32_t, int64_t, uint32_t,
                                   uint64_t, int8_t, uint8_t, bool>;

// Every input element is read once.
int64_t input_flops(const InferContext& ctx) { return ctx.input_shape(0).num_elements(); }

// The `axes` input (value input 1) as a mask over input 0's dimensions. An absent or empty `axes`
// reduces every dimension, or none with noop_with_empty_axes=1.
StatusOr<std::vector<bool>> reduced_axes(const InferContext& ctx) {
  const auto rank = static_cast<int64_t>(ctx.input_rank(0));
  std::vector<int64_t> axes;
  if (ctx.has_input(1)) {
    if (ctx.input_dtype(1) != DType::kInt64) {
      return ctx.error("input 1 (axes) has element type {}, expected int64", ctx.input_dtype(1));
    }
    if (ctx.input_rank(1) > 1) {
      return ctx.error("input 1 (axes) must be 1-D, got shape {}", ctx.input_shape(1));
    }
    KS_ASSIGN_OR_RETURN(axes, ctx.input_ints(1));
  }
  const bool noop = ctx.attrs().get_int("noop_with_empty_axes", 0) != 0;
  std::vector<bool> reduced(static_cast<size_t>(rank), axes.empty() && !noop);
  for (int64_t a : axes) {
    StatusOr<int64_t> n = normalize_axis(a, rank);
    if (!n.ok()) return ctx.error("axes: {}", n.status().message());
    if (reduced[static_cast<size_t>(*n)]) return ctx.error("axes: axis {} is given twice", a);
    reduced[static_cast<size_t>(*n)] = true;
  }
  return reduced;
}

// Input 0's shape with the `reduced` dimensions set to 1 (keepdims=1) or dropped (keepdims=0).
Shape reduced_shape(const InferContext& ctx, const std::vector<bool>& reduced) {
  const bool keepdims = ctx.attrs().get_int("keepdims", 1) != 0;
  const Shape& in = ctx.input_shape(0);
  std::vector<int64_t> dims;
  for (size_t d = 0; d < in.rank(); ++d) {
    if (!reduced[d] || keepdims) dims.push_back(reduced[d] ? 1 : in[d]);
  }
  return Shape(std::move(dims));
}

template <typename List>
Status reduce_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<List>(ctx, 0));
  KS_ASSIGN_OR_RETURN(std::vector<bool> reduced, reduced_axes(ctx));
  ctx.set_output(0, ctx.input_dtype(0), reduced_shape(ctx, reduced));
  return Status();
}

Status arg_reduce_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<NumericTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  const int64_t axis_attr = ctx.attrs().get_int("axis", 0);
  // Rank 0 has no axis to reduce; ONNX requires axis in [-r, r-1].
  StatusOr<int64_t> axis = normalize_axis(axis_attr, static_cast<int64_t>(in.rank()));
  if (!axis.ok()) return ctx.error("{}", axis.status().message());
  std::vector<bool> reduced(in.rank(), false);
  reduced[static_cast<size_t>(*axis)] = true;
  const Shape out = reduced_shape(ctx, reduced);
  if (in[static_cast<size_t>(*axis)] == 0 && out.num_elements() > 0) {
    return ctx.error("axis {} of shape {} is empty: there is no element to take the index of",
                     axis_attr, in);
  }
  ctx.set_output(0, DType::kInt64, out);
  return Status();
}

Status top_k_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<NumericTypes>(ctx, 0));
  if (ctx.input_dtype(1) != DType::kInt64) {
    return ctx.error("input 1 (k) has element type {}, expected int64", ctx.input_dtype(1));
  }
  KS_ASSIGN_OR_RETURN(const int64_t k, scalar_int_input(ctx, 1));
  const Shape& in = ctx.input_shape(0);
  const int64_t axis_attr = ctx.attrs().get_int("axis", -1);
  StatusOr<int64_t> axis = normalize_axis(axis_attr, static_cast<int64_t>(in.rank()));
  if (!axis.ok()) return ctx.error("{}", axis.status().message());
  const auto a = static_cast<size_t>(*axis);
  if (k < 0 || k > in[a]) {
    return ctx.error("k = {} is out of range for axis {} of shape {} (0..{})", k, axis_attr, in,
                     in[a]);
  }
  Shape out = in;
  out[a] = k;
  ctx.set_output(0, ctx.input_dtype(0), out);
  ctx.set_output(1, DType::kInt64, out);
  return Status();
}

// A scalar or one-element input of element type `dtype` (NonMaxSuppression's limits).
Status require_scalar(const InferContext& ctx, size_t i, DType dtype, std::string_view what) {
  if (!ctx.has_input(i)) return Status();
  if (ctx.input_dtype(i) != dtype) {
    return ctx.error("input {} ({}) has element type {}, expected {}", i, what, ctx.input_dtype(i),
                     dtype);
  }
  if (ctx.input_rank(i) > 1 || ctx.input_shape(i).num_elements() != 1) {
    return ctx.error("input {} ({}) must be a scalar, got shape {}", i, what, ctx.input_shape(i));
  }
  return Status();
}

Status nms_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<TypeList<float>>(ctx, 0));
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 1));
  KS_RETURN_IF_ERROR(require_rank(ctx, 0, 3));
  KS_RETURN_IF_ERROR(require_rank(ctx, 1, 3));
  const Shape& boxes = ctx.input_shape(0);
  const Shape& scores = ctx.input_shape(1);
  if (boxes[2] != 4) return ctx.error("boxes must have shape [batch, boxes, 4], got {}", boxes);
  if (scores[0] != boxes[0] || scores[2] != boxes[1]) {
    return ctx.error("scores {} do not match boxes {}: expected [{}, classes, {}]", scores, boxes,
                     boxes[0], boxes[1]);
  }
  KS_RETURN_IF_ERROR(require_scalar(ctx, 2, DType::kInt64, "max_output_boxes_per_class"));
  KS_RETURN_IF_ERROR(require_scalar(ctx, 3, DType::kFloat32, "iou_threshold"));
  KS_RETURN_IF_ERROR(require_scalar(ctx, 4, DType::kFloat32, "score_threshold"));
  const int64_t center = ctx.attrs().get_int("center_point_box", 0);
  if (center != 0 && center != 1)
    return ctx.error("center_point_box must be 0 or 1, got {}", center);
  // How many boxes survive depends on the data: the kernel allocates the output.
  ctx.set_output_dynamic(0, DType::kInt64, {-1, 3});
  return Status();
}

// YoloNms: input 0 is a raw YOLO output [N, anchors, 5 + classes] or [N, 4 + classes, anchors]
// (float32 or float16); outputs boxes [N, max_detections, 4] float32, scores [N, max_detections]
// float32, classes [N, max_detections] int32, num_dets [N] int32.
Status yolo_nms_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR((require_dtype<TypeList<float, Half>>(ctx, 0)));
  KS_RETURN_IF_ERROR(require_rank(ctx, 0, 3));
  const Attributes& a = ctx.attrs();
  const int64_t max_det = a.get_int("max_detections", 300);
  const int64_t top_k = a.get_int("top_k", 30000);
  if (max_det < 1 || top_k < 1) {
    return ctx.error("max_detections and top_k must be at least 1, got {} and {}", max_det, top_k);
  }
  const std::string layout = a.get_string("layout", "auto");
  if (layout != "auto" && layout != "v5" && layout != "v8") {
    return ctx.error("layout must be auto, v5 or v8, got '{}'", layout);
  }
  const float iou = a.get_float("iou_threshold", 0.45f);
  if (!(iou >= 0 && iou <= 1)) return ctx.error("iou_threshold must be in [0, 1], got {}", iou);
  const int64_t n = ctx.input_shape(0)[0];
  ctx.set_output(0, DType::kFloat32, Shape{n, max_det, 4});
  ctx.set_output(1, DType::kFloat32, Shape{n, max_det});
  ctx.set_output(2, DType::kInt32, Shape{n, max_det});
  ctx.set_output(3, DType::kInt32, Shape{n});
  return Status();
}

OpSchema reduce(std::string_view name, InferFn infer) {
  OpSchema s;
  s.op_type = name;
  s.max_inputs = 2;
  s.attributes = {{"keepdims", AttributeType::kInt}, {"noop_with_empty_axes", AttributeType::kInt}};
  s.value_inputs = {1};
  s.infer = infer;
  s.flops = input_flops;
  return s;
}

OpSchema arg_reduce(std::string_view name) {
  OpSchema s;
  s.op_type = name;
  s.attributes = {{"axis", AttributeType::kInt},
                  {"keepdims", AttributeType::kInt},
                  {"select_last_index", AttributeType::kInt}};
  s.infer = arg_reduce_rule;
  s.flops = input_flops;
  return s;
}

}  // namespace

std::vector<OpSchema> reduce_op_schemas() {
  constexpr auto numbers = reduce_rule<ReduceTypes>;
  constexpr auto min_max = reduce_rule<ReduceMinMaxTypes>;
  std::vector<OpSchema> s = {
      reduce("ReduceL1", numbers),
      reduce("ReduceL2", numbers),
      reduce("ReduceLogSum", numbers),
      reduce("ReduceLogSumExp", numbers),
      reduce("ReduceMax", min_max),
      reduce("ReduceMean", numbers),
      reduce("ReduceMin", min_max),
      reduce("ReduceProd", numbers),
      reduce("ReduceSum", numbers),
      reduce("ReduceSumSquare", numbers),
      arg_reduce("ArgMax"),
      arg_reduce("ArgMin"),
  };

  OpSchema top_k;
  top_k.op_type = "TopK";
  top_k.min_inputs = top_k.max_inputs = 2;
  top_k.min_outputs = top_k.max_outputs = 2;
  top_k.attributes = {{"axis", AttributeType::kInt},
                      {"largest", AttributeType::kInt},
                      {"sorted", AttributeType::kInt}};
  top_k.value_inputs = {1};
  top_k.infer = top_k_rule;
  top_k.flops = input_flops;
  s.push_back(std::move(top_k));

  OpSchema nms;
  nms.op_type = "NonMaxSuppression";
  nms.min_inputs = 2;
  nms.max_inputs = 5;
  nms.attributes = {{"center_point_box", AttributeType::kInt}};
  nms.infer = nms_rule;
  // The IoUs computed depend on how many boxes survive; counted as one operation per score.
  nms.flops = [](const InferContext& ctx) { return ctx.input_shape(1).num_elements(); };
  s.push_back(std::move(nms));

  OpSchema yolo_nms;
  yolo_nms.op_type = "YoloNms";
  yolo_nms.min_outputs = yolo_nms.max_outputs = 4;
  yolo_nms.attributes = {{"layout", AttributeType::kString},
                         {"num_classes", AttributeType::kInt},
                         {"score_threshold", AttributeType::kFloat},
                         {"iou_threshold", AttributeType::kFloat},
                         {"multi_label", AttributeType::kInt},
                         {"class_agnostic", AttributeType::kInt},
                         {"top_k", AttributeType::kInt},
                         {"max_detections", AttributeType::kInt}};
  yolo_nms.infer = yolo_nms_rule;
  yolo_nms.flops = [](const InferContext& ctx) { return ctx.input_shape(0).num_elements(); };
  s.push_back(std::move(yolo_nms));
  return s;
}

}  // namespace kestrel::ir
