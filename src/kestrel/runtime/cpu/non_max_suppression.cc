// Reference kernel of NonMaxSuppression, as ONNX specifies it (and onnxruntime implements it).
//
// For every image and class on its own: the boxes whose score is strictly above score_threshold
// (all boxes when it is absent), taken by descending score (equal scores: lower box index first),
// are kept unless their IoU with a box already kept exceeds iou_threshold, until
// max_output_boxes_per_class are kept (absent or 0: none). The output lists [image, class, box]
// in that order. Corners may come in either order (center_point_box=0); boxes with no area
// overlap nothing (IoU 0). IoU is computed in float, like onnxruntime, so that boxes on the
// threshold fall the same way. A NaN score ranks below every number.
#include <algorithm>
#include <cmath>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

struct Box {
  float x_min, y_min, x_max, y_max;
};

// Box j of one image: [y1, x1, y2, x2] with the corners in any order, or [x_center, y_center,
// width, height].
Box read_box(const float* b, bool center) {
  if (center) {
    const float half_w = b[2] / 2, half_h = b[3] / 2;
    return {b[0] - half_w, b[1] - half_h, b[0] + half_w, b[1] + half_h};
  }
  return {std::min(b[1], b[3]), std::min(b[0], b[2]), std::max(b[1], b[3]), std::max(b[0], b[2])};
}

// Intersection over union; 0 when the boxes do not overlap or one has no area (or NaN).
float iou(const Box& a, const Box& b) {
  const float x_min = std::max(a.x_min, b.x_min), x_max = std::min(a.x_max, b.x_max);
  const float y_min = std::max(a.y_min, b.y_min), y_max = std::min(a.y_max, b.y_max);
  if (!(x_max > x_min) || !(y_max > y_min)) return 0;
  const float intersection = (x_max - x_min) * (y_max - y_min);
  const float area_a = (a.x_max - a.x_min) * (a.y_max - a.y_min);
  const float area_b = (b.x_max - b.x_min) * (b.y_max - b.y_min);
  const float union_area = area_a + area_b - intersection;
  if (!(area_a > 0) || !(area_b > 0) || !(union_area > 0)) return 0;
  return intersection / union_area;
}

// Scalar input i of type T, or `fallback` when it is omitted.
template <typename T>
StatusOr<T> scalar_input(const KernelContext& ctx, size_t i, T fallback, std::string_view what) {
  if (!ctx.has_input(i)) return fallback;
  const Tensor& t = ctx.input(i);
  if (t.dtype() != dtype_of<T>() || t.num_elements() != 1) {
    return invalid_argument("{} must be one {} value, got {}", what, dtype_of<T>(),
                            t.debug_string(0));
  }
  return t.data<T>()[0];
}

Status run_nms(KernelContext& ctx, bool center) {
  const Tensor& boxes = ctx.input(0);
  const Tensor& scores = ctx.input(1);
  if (boxes.dtype() != DType::kFloat32 || scores.dtype() != DType::kFloat32 || boxes.rank() != 3 ||
      scores.rank() != 3 || boxes.shape()[2] != 4 || scores.shape()[0] != boxes.shape()[0] ||
      scores.shape()[2] != boxes.shape()[1]) {
    return invalid_argument("boxes {} and scores {} do not fit", boxes.debug_string(0),
                            scores.debug_string(0));
  }
  KS_ASSIGN_OR_RETURN(const int64_t max_per_class,
                      scalar_input<int64_t>(ctx, 2, 0, "max_output_boxes_per_class"));
  KS_ASSIGN_OR_RETURN(const float iou_threshold,
                      scalar_input<float>(ctx, 3, 0.0f, "iou_threshold"));
  KS_ASSIGN_OR_RETURN(const float score_threshold,
                      scalar_input<float>(ctx, 4, 0.0f, "score_threshold"));
  const bool filter_scores = ctx.has_input(4);
  if (!(iou_threshold >= 0 && iou_threshold <= 1)) {
    return invalid_argument("iou_threshold must be in [0, 1], got {}", iou_threshold);
  }
  const int64_t batches = boxes.shape()[0], num_boxes = boxes.shape()[1];
  const int64_t classes = scores.shape()[1];
  const float* box_data = boxes.data<float>();
  const float* score_data = scores.data<float>();

  std::vector<int64_t> selected;  // [image, class, box] triples, flattened
  std::vector<int64_t> candidates;
  std::vector<Box> kept;
  for (int64_t b = 0; b < batches && max_per_class > 0; ++b) {
    const float* image_boxes = box_data + b * num_boxes * 4;
    for (int64_t c = 0; c < classes; ++c) {
      const float* s = score_data + (b * classes + c) * num_boxes;
      candidates.clear();
      for (int64_t j = 0; j < num_boxes; ++j) {
        if (!filter_scores || s[j] > score_threshold) candidates.push_back(j);
      }
      // Descending score, NaN last, then ascending index: a strict total order.
      std::sort(candidates.begin(), candidates.end(), [s](int64_t l, int64_t r) {
        const bool nan_l = std::isnan(s[l]), nan_r = std::isnan(s[r]);
        if (nan_l != nan_r) return nan_r;
        if (!nan_l && s[l] != s[r]) return s[l] > s[r];
        return l < r;
      });
      kept.clear();
      for (int64_t j : candidates) {
        if (static_cast<int64_t>(kept.size()) >= max_per_class) break;
        const Box box = read_box(image_boxes + j * 4, center);
        const bool suppressed = std::any_of(
            kept.begin(), kept.end(), [&](const Box& k) { return iou(box, k) > iou_threshold; });
        if (suppressed) continue;
        kept.push_back(box);
        selected.insert(selected.end(), {b, c, j});
      }
    }
  }
  const auto count = static_cast<int64_t>(selected.size() / 3);
  KS_RETURN_IF_ERROR(ctx.allocate_output(0, DType::kInt64, Shape{count, 3}));
  std::copy(selected.begin(), selected.end(), ctx.output(0).data<int64_t>());
  return Status();
}

StatusOr<std::unique_ptr<Kernel>> create_nms(const KernelDef& def) {
  if (def.input_dtypes[0] != DType::kFloat32) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  const bool center = def.attrs.get_int("center_point_box", 0) != 0;
  return make_kernel([center](KernelContext& ctx) { return run_nms(ctx, center); });
}

}  // namespace

std::vector<KernelEntry> nms_kernels() { return {KernelEntry{"NonMaxSuppression", create_nms}}; }

}  // namespace kestrel::runtime::cpu
