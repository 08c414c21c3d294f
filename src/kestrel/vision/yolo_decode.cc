// YOLO output decoders (see yolo_decode.h).
#include "kestrel/vision/yolo_decode.h"

#include <limits>

namespace kestrel::vision {
namespace {

// Reads element i of a float32 or float16 tensor as float.
template <typename T>
float at(const T* data, int64_t i) {
  return static_cast<float>(data[i]);
}

// Appends the candidates of one anchor. `score_of(c)` is the class-c score before the objectness
// product; `obj` is 1 for layouts without objectness (the product then is exact).
template <typename ScoreOf>
void add_anchor(float cx, float cy, float w, float h, float obj, bool has_obj, int64_t num_classes,
                int64_t anchor, const DetectionOptions& o, const ScoreOf& score_of,
                std::vector<Candidate>& out) {
  const float t = o.score_threshold;
  if (has_obj && !(obj > t)) return;
  const float x1 = cx - w / 2, y1 = cy - h / 2, x2 = cx + w / 2, y2 = cy + h / 2;
  auto score = [&](int64_t c) { return has_obj ? score_of(c) * obj : score_of(c); };
  if (o.multi_label) {
    for (int64_t c = 0; c < num_classes; ++c) {
      const float s = score(c);
      if (s > t) out.push_back({x1, y1, x2, y2, s, static_cast<int32_t>(c), anchor});
    }
    return;
  }
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_class = -1;
  for (int64_t c = 0; c < num_classes; ++c) {
    const float s = score(c);
    if (s > best) best = s, best_class = c;  // the first maximum wins
  }
  if (best_class >= 0 && best > t) {
    out.push_back({x1, y1, x2, y2, best, static_cast<int32_t>(best_class), anchor});
  }
}

template <typename T>
void decode(const T* data, const Shape& shape, YoloLayout layout, int64_t image,
            const DetectionOptions& o, std::vector<Candidate>& out) {
  if (layout == YoloLayout::kV5) {
    const int64_t anchors = shape[1], row = shape[2], classes = row - 5;
    const T* base = data + image * anchors * row;
    for (int64_t a = 0; a < anchors; ++a) {
      const T* r = base + a * row;
      add_anchor(
          at(r, 0), at(r, 1), at(r, 2), at(r, 3), at(r, 4), /*has_obj=*/true, classes, a, o,
          [&](int64_t c) { return at(r, 5 + c); }, out);
    }
  } else {
    const int64_t channels = shape[1], anchors = shape[2], classes = channels - 4;
    const T* base = data + image * channels * anchors;
    for (int64_t a = 0; a < anchors; ++a) {
      auto ch = [&](int64_t k) { return at(base, k * anchors + a); };
      add_anchor(
          ch(0), ch(1), ch(2), ch(3), 1.0f, /*has_obj=*/false, classes, a, o,
          [&](int64_t c) { return ch(4 + c); }, out);
    }
  }
}

}  // namespace

int64_t yolo_num_classes(const Shape& shape, YoloLayout layout) {
  return layout == YoloLayout::kV5 ? shape[2] - 5 : shape[1] - 4;
}

StatusOr<YoloLayout> resolve_yolo_layout(const Shape& shape, YoloLayout requested,
                                         int64_t num_classes) {
  if (shape.rank() != 3) {
    return invalid_argument(
        "a YOLO output has rank 3 ([N, anchors, 5+classes] or "
        "[N, 4+classes, anchors]), not shape {}",
        shape.to_string());
  }
  const bool v5_fits = shape[2] >= 6 && (num_classes < 0 || shape[2] == num_classes + 5);
  const bool v8_fits = shape[1] >= 5 && (num_classes < 0 || shape[1] == num_classes + 4);
  YoloLayout layout = requested;
  if (layout == YoloLayout::kAuto) {
    if (v5_fits && v8_fits) {
      if (num_classes >= 0) {
        return invalid_argument("YOLO output {} fits both layouts for {} classes: give the layout",
                                shape.to_string(), num_classes);
      }
      // Models have far more anchors than channels.
      layout = shape[1] < shape[2] ? YoloLayout::kV8 : YoloLayout::kV5;
    } else {
      layout = v5_fits ? YoloLayout::kV5 : YoloLayout::kV8;
    }
  }
  if (layout == YoloLayout::kV5 && v5_fits) return layout;
  if (layout == YoloLayout::kV8 && v8_fits) return layout;
  const std::string classes =
      num_classes >= 0 ? fmt::format(" with {} classes", num_classes) : std::string();
  return invalid_argument(
      "output {} is not a {} output{} (YOLOv5: [N, anchors, 5+classes], YOLOv8: "
      "[N, 4+classes, anchors])",
      shape.to_string(),
      requested == YoloLayout::kV5   ? "YOLOv5"
      : requested == YoloLayout::kV8 ? "YOLOv8"
                                     : "YOLO",
      classes);
}

StatusOr<std::vector<Candidate>> decode_yolo(const Tensor& output, int64_t image,
                                             const DetectionOptions& options) {
  if (!output.defined() || !output.is_cpu() ||
      (output.dtype() != DType::kFloat32 && output.dtype() != DType::kFloat16)) {
    return invalid_argument("YOLO decoding needs a float32 or float16 host tensor");
  }
  KS_ASSIGN_OR_RETURN(const YoloLayout layout,
                      resolve_yolo_layout(output.shape(), options.layout, options.num_classes));
  if (image < 0 || image >= output.shape()[0]) {
    return invalid_argument("image {} is outside the output's batch of {}", image,
                            output.shape()[0]);
  }
  std::vector<Candidate> out;
  if (output.dtype() == DType::kFloat32) {
    decode(output.data<float>(), output.shape(), layout, image, options, out);
  } else {
    decode(output.data<Half>(), output.shape(), layout, image, options, out);
  }
  return out;
}

}  // namespace kestrel::vision
