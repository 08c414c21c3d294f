// Batched NMS on the CPU (see nms.h for the exact semantics the CUDA version reproduces).
#include "kestrel/vision/nms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>

#include "kestrel/runtime/kernel.h"
#ifdef KESTREL_WITH_CUDA
#include "kestrel/vision/nms_cuda.h"
#endif

namespace kestrel::vision {
namespace {

float area(const Candidate& b) {
  return std::fmax(b.x2 - b.x1, 0.0f) * std::fmax(b.y2 - b.y1, 0.0f);
}

}  // namespace

float nms_iou(const Candidate& a, const Candidate& b) {
  const float iw = std::fmax(std::fmin(a.x2, b.x2) - std::fmax(a.x1, b.x1), 0.0f);
  const float ih = std::fmax(std::fmin(a.y2, b.y2) - std::fmax(a.y1, b.y1), 0.0f);
  const float inter = iw * ih;
  const float sum = area(a) + area(b);
  const float uni = sum - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

std::vector<Detection> nms(std::span<const Candidate> candidates, const DetectionOptions& options) {
  // Indices of the candidates over the threshold, in score order; stable_sort keeps the given
  // (anchor, class) order among equal scores.
  std::vector<size_t> order;
  order.reserve(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].score > options.score_threshold) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return candidates[a].score > candidates[b].score; });
  if (options.top_k >= 0 && order.size() > static_cast<size_t>(options.top_k)) {
    order.resize(static_cast<size_t>(options.top_k));
  }

  const size_t max_kept = static_cast<size_t>(std::max<int64_t>(options.max_detections, 0));
  std::vector<const Candidate*> kept;
  for (size_t i : order) {
    if (kept.size() >= max_kept) break;
    const Candidate& c = candidates[i];
    bool suppressed = false;
    for (const Candidate* k : kept) {
      if ((options.class_agnostic || k->class_id == c.class_id) &&
          nms_iou(*k, c) > options.iou_threshold) {
        suppressed = true;
        break;
      }
    }
    if (!suppressed) kept.push_back(&c);
  }
  std::vector<Detection> out;
  out.reserve(kept.size());
  for (const Candidate* k : kept)
    out.push_back({k->x1, k->y1, k->x2, k->y2, k->score, k->class_id});
  return out;
}

Detection map_to_source(const Detection& d, const LetterboxParams& p) {
  const float left = static_cast<float>(p.pad_left), top = static_cast<float>(p.pad_top);
  const float ratio = static_cast<float>(p.ratio);
  const float w = static_cast<float>(p.source_width), h = static_cast<float>(p.source_height);
  auto x = [&](float v) { return std::fmin(std::fmax((v - left) / ratio, 0.0f), w); };
  auto y = [&](float v) { return std::fmin(std::fmax((v - top) / ratio, 0.0f), h); };
  return {x(d.x1), y(d.y1), x(d.x2), y(d.y2), d.score, d.class_id};
}

StatusOr<NmsOutput> batched_nms(const Tensor& output, const DetectionOptions& options,
                                std::span<const LetterboxParams> letterbox) {
  if (!output.defined() || output.rank() < 1) {
    return invalid_argument("batched NMS needs a YOLO output [N, ...]");
  }
  const int64_t batch = output.shape()[0];
  const int64_t max_det = std::max<int64_t>(options.max_detections, 1);
  NmsOutput out;
  KS_ASSIGN_OR_RETURN(out.boxes, Tensor::allocate(DType::kFloat32, Shape{batch, max_det, 4}));
  KS_ASSIGN_OR_RETURN(out.scores, Tensor::allocate(DType::kFloat32, Shape{batch, max_det}));
  KS_ASSIGN_OR_RETURN(out.classes, Tensor::allocate(DType::kInt32, Shape{batch, max_det}));
  KS_ASSIGN_OR_RETURN(out.num_dets, Tensor::allocate(DType::kInt32, Shape{batch}));
  KS_RETURN_IF_ERROR(batched_nms_into(output, options, letterbox, out));
  return out;
}

Status batched_nms_into(const Tensor& output, const DetectionOptions& options,
                        std::span<const LetterboxParams> letterbox, NmsOutput& out) {
  if (options.max_detections < 1 || options.top_k < 1) {
    return invalid_argument("NMS needs max_detections >= 1 and top_k >= 1 (got {} and {})",
                            options.max_detections, options.top_k);
  }
  if (!output.defined() || output.rank() < 1) {
    return invalid_argument("batched NMS needs a YOLO output [N, ...]");
  }
  const int64_t batch = output.shape()[0];
  if (!letterbox.empty() && static_cast<int64_t>(letterbox.size()) != batch) {
    return invalid_argument("{} letterbox placements for a batch of {}", letterbox.size(), batch);
  }
  const int64_t max_det = options.max_detections;
  const auto fits = [&](const Tensor& t, DType dtype, const Shape& shape) {
    return t.defined() && t.is_cpu() && t.dtype() == dtype && t.shape() == shape;
  };
  if (!fits(out.boxes, DType::kFloat32, Shape{batch, max_det, 4}) ||
      !fits(out.scores, DType::kFloat32, Shape{batch, max_det}) ||
      !fits(out.classes, DType::kInt32, Shape{batch, max_det}) ||
      !fits(out.num_dets, DType::kInt32, Shape{batch})) {
    return invalid_argument("NMS outputs do not match a batch of {} with {} detections", batch,
                            max_det);
  }
  std::fill_n(out.boxes.data<float>(), batch * max_det * 4, 0.0f);
  std::fill_n(out.scores.data<float>(), batch * max_det, 0.0f);
  std::fill_n(out.classes.data<int32_t>(), batch * max_det, -1);
  for (int64_t b = 0; b < batch; ++b) {
    KS_ASSIGN_OR_RETURN(const std::vector<Candidate> candidates, decode_yolo(output, b, options));
    const std::vector<Detection> dets = nms(candidates, options);
    float* boxes = out.boxes.data<float>() + b * max_det * 4;
    float* scores = out.scores.data<float>() + b * max_det;
    int32_t* classes = out.classes.data<int32_t>() + b * max_det;
    for (size_t i = 0; i < dets.size(); ++i) {
      const Detection d = letterbox.empty() ? dets[i] : map_to_source(dets[i], letterbox[b]);
      boxes[4 * i + 0] = d.x1;
      boxes[4 * i + 1] = d.y1;
      boxes[4 * i + 2] = d.x2;
      boxes[4 * i + 3] = d.y2;
      scores[i] = d.score;
      classes[i] = d.class_id;
    }
    out.num_dets.data<int32_t>()[b] = static_cast<int32_t>(dets.size());
  }
  return Status();
}

Attributes yolo_nms_attributes(const DetectionOptions& o) {
  Attributes a;
  a.set("layout", std::string(o.layout == YoloLayout::kV5   ? "v5"
                              : o.layout == YoloLayout::kV8 ? "v8"
                                                            : "auto"));
  a.set("num_classes", o.num_classes);
  a.set("score_threshold", o.score_threshold);
  a.set("iou_threshold", o.iou_threshold);
  a.set("multi_label", int64_t{o.multi_label});
  a.set("class_agnostic", int64_t{o.class_agnostic});
  a.set("top_k", o.top_k);
  a.set("max_detections", o.max_detections);
  return a;
}

StatusOr<DetectionOptions> detection_options_from(const Attributes& a) {
  DetectionOptions o;
  const std::string layout = a.get_string("layout", "auto");
  if (layout == "v5") {
    o.layout = YoloLayout::kV5;
  } else if (layout == "v8") {
    o.layout = YoloLayout::kV8;
  } else if (layout != "auto") {
    return invalid_argument("YoloNms layout must be auto, v5 or v8, not '{}'", layout);
  }
  o.num_classes = a.get_int("num_classes", -1);
  o.score_threshold = a.get_float("score_threshold", o.score_threshold);
  o.iou_threshold = a.get_float("iou_threshold", o.iou_threshold);
  o.multi_label = a.get_int("multi_label", 0) != 0;
  o.class_agnostic = a.get_int("class_agnostic", 0) != 0;
  o.top_k = a.get_int("top_k", o.top_k);
  o.max_detections = a.get_int("max_detections", o.max_detections);
  if (o.top_k < 1 || o.max_detections < 1 || o.max_detections > (int64_t{1} << 24)) {
    return invalid_argument("YoloNms needs top_k >= 1 and 1 <= max_detections <= 2^24 (got {}, {})",
                            o.top_k, o.max_detections);
  }
  return o;
}

namespace {

// YoloNms on the CPU: the outputs are pre-allocated by the engine (their shapes are static).
class CpuYoloNmsKernel final : public runtime::Kernel {
 public:
  explicit CpuYoloNmsKernel(DetectionOptions options) : options_(options) {}
  Status run(runtime::KernelContext& ctx) override {
    NmsOutput out{ctx.output(0), ctx.output(1), ctx.output(2), ctx.output(3)};
    KS_RETURN_IF_ERROR(batched_nms_into(ctx.input(0), options_, {}, out));
    return Status();
  }

 private:
  DetectionOptions options_;
};

}  // namespace

void register_detection_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    runtime::register_extension_kernel(
        "cpu", "YoloNms",
        [](const runtime::KernelDef& def) -> StatusOr<std::unique_ptr<runtime::Kernel>> {
          KS_ASSIGN_OR_RETURN(const DetectionOptions options, detection_options_from(def.attrs));
          return std::unique_ptr<runtime::Kernel>(std::make_unique<CpuYoloNmsKernel>(options));
        });
#ifdef KESTREL_WITH_CUDA
    runtime::register_extension_kernel("cuda", "YoloNms", create_cuda_yolo_nms_kernel);
#endif
  });
}

std::vector<Detection> unpack_detections(const NmsOutput& output, int64_t image) {
  const int64_t max_det = output.scores.shape()[1];
  const int32_t n = output.num_dets.data<int32_t>()[image];
  const float* boxes = output.boxes.data<float>() + image * max_det * 4;
  const float* scores = output.scores.data<float>() + image * max_det;
  const int32_t* classes = output.classes.data<int32_t>() + image * max_det;
  std::vector<Detection> dets;
  for (int32_t i = 0; i < n; ++i) {
    dets.push_back({boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3], scores[i],
                    classes[i]});
  }
  return dets;
}

}  // namespace kestrel::vision
