// YOLO output decoding: a detector's raw output tensor to scored candidate boxes (before NMS).
//
// Two layouts exist in the wild:
//   YOLOv5 (and v7): [N, anchors, 5 + classes], each row cx, cy, w, h, objectness, class scores.
//                    A candidate needs obj > threshold; its score is obj * cls (float32, as
//                    YOLOv5's non_max_suppression computes it) and must also exceed the threshold.
//   YOLOv8 / YOLO11: [N, 4 + classes, anchors] (channels first), cx, cy, w, h, class scores; no
//                    objectness, the score is the class score.
// Boxes are in model-input pixels and become corners in float32: x1 = cx - w / 2, x2 = cx + w / 2.
// Thresholds are strict (score > threshold), like YOLOv5's. float16 outputs are widened to float32
// first; all arithmetic is float32.
//
// Best-class mode keeps, per anchor, the first class with the highest score; multi-label mode keeps
// every class over the threshold (YOLOv5's val.py uses it for mAP). Candidates come out in
// (anchor, class) order, which is the order NMS breaks score ties with.
#pragma once

#include <cstdint>
#include <vector>

#include "kestrel/base/shape.h"
#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"

namespace kestrel::vision {

enum class YoloLayout {
  kAuto,  // from the output shape (see resolve_yolo_layout)
  kV5,    // [N, anchors, 5 + classes]
  kV8,    // [N, 4 + classes, anchors]
};

// Everything that turns a raw output into final detections: the decoder uses the first four
// fields, NMS the rest (and score_threshold again). The defaults are YOLOv5's detect.py settings.
struct DetectionOptions {
  YoloLayout layout = YoloLayout::kAuto;
  // Number of classes; -1 takes it from the output shape.
  int64_t num_classes = -1;
  // Candidates need score > score_threshold (and, for YOLOv5, objectness > score_threshold).
  float score_threshold = 0.25f;
  bool multi_label = false;
  // NMS: a box is suppressed by a kept box (of the same class unless class_agnostic) when their
  // IoU > iou_threshold.
  float iou_threshold = 0.45f;
  bool class_agnostic = false;
  // Per image, only the top_k highest-scoring candidates enter NMS (YOLOv5's max_nms = 30000).
  int64_t top_k = 30000;
  // At most this many detections per image are kept (the padded output size of batched NMS).
  int64_t max_detections = 300;
};

// A scored box before NMS, in model-input pixels.
struct Candidate {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float score = 0;
  int32_t class_id = 0;
  // Row of the output (the anchor) the box came from.
  int64_t anchor = 0;
};

// The layout of an output of shape `shape` (must be rank 3). kAuto decides: with num_classes known,
// the layout whose size matches (v5: dim 2 == 5 + classes; v8: dim 1 == 4 + classes); otherwise v8
// when dim 1 < dim 2 (fewer channels than anchors, e.g. [1, 84, 8400]), else v5 ([1, 25200, 85]).
// INVALID_ARGUMENT when the shape fits no layout or the requested one.
StatusOr<YoloLayout> resolve_yolo_layout(const Shape& shape, YoloLayout requested,
                                         int64_t num_classes = -1);

// Number of classes of an output of `shape` in `layout` (kV5 or kV8).
int64_t yolo_num_classes(const Shape& shape, YoloLayout layout);

// Candidates of image `image` of a float32 or float16 host output [N, ...].
StatusOr<std::vector<Candidate>> decode_yolo(const Tensor& output, int64_t image,
                                             const DetectionOptions& options);

}  // namespace kestrel::vision
