// Detection accuracy: mAP@0.5 and mAP@0.5:0.95 against YOLO-format labels, computed the way
// YOLOv5's val.py computes it (../shared/README.md's reference figures come from that method):
//
//   - IoU thresholds 0.50, 0.55, ..., 0.95.
//   - Matching, per image and threshold: among the pairs (label, detection) of the same class with
//     IoU >= threshold, each detection takes its highest-IoU label; each label then goes to the
//     first detection (in score order) that took it; that detection is a true positive, every other
//     detection a false positive.
//   - Per class present in the labels: all detections of that class, over all images, sorted by
//     score (descending; ties by image, then detection order); recall = TP / labels,
//     precision = TP / (TP + FP); the precision envelope (running maximum from the right, with the
//     sentinels recall 0 -> precision 1 and recall 1 -> precision 0); AP = trapezoidal integral of
//     the envelope linearly interpolated at the 101 recall points 0, 0.01, ..., 1 (COCO's points;
//     numpy.interp + numpy.trapz in YOLOv5). A class with labels and no detections has AP 0.
//   - mAP = mean over the classes present in the labels; mAP@0.5:0.95 also over the 10 thresholds.
//
// Detections of classes that have no label count nowhere (as in YOLOv5).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/vision/nms.h"

namespace kestrel::vision {

// A labelled object, in source-image pixels.
struct GroundTruthBox {
  int32_t class_id = 0;
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

// Parses a YOLO label file: one object per line, "class cx cy w h" normalized to 0..1, or a polygon
// "class x1 y1 x2 y2 ..." (YOLO's segment labels; the box is the polygon's extent). Blank lines are
// skipped. Coordinates are scaled by the image's width and height. INVALID_ARGUMENT, with the line
// number, for anything else (non-numbers, a negative or fractional class, an odd polygon).
StatusOr<std::vector<GroundTruthBox>> parse_yolo_labels(std::string_view text, int64_t image_width,
                                                        int64_t image_height);

// Reads a label file. A missing file means "no objects" in YOLO datasets: it yields an empty list.
StatusOr<std::vector<GroundTruthBox>> read_yolo_labels(const std::string& path, int64_t image_width,
                                                       int64_t image_height);

// One image's detections (source-image pixels) and labels.
struct EvalImage {
  std::vector<Detection> detections;
  std::vector<GroundTruthBox> labels;
};

struct ClassEval {
  int32_t class_id = 0;
  int64_t num_labels = 0;
  int64_t num_detections = 0;
  double ap50 = 0;
  double ap50_95 = 0;
  // At IoU 0.5, at the score cut-off that maximizes this class's F1 (0 when it has no detection).
  double precision = 0;
  double recall = 0;
};

struct EvalResult {
  double map50 = 0;
  double map50_95 = 0;
  int64_t num_images = 0;
  int64_t num_labels = 0;
  int64_t num_detections = 0;
  // One entry per class present in the labels, by class id.
  std::vector<ClassEval> classes;
};

EvalResult evaluate_detections(std::span<const EvalImage> images);

// COCO's category id (1..90, with gaps) of a class index of the usual 80-class YOLO order, as
// COCO-format results files need it; -1 outside 0..79.
int32_t coco80_to_coco91(int32_t class_id);

// The IoU used for matching (double precision; 0 for boxes without area).
double box_iou(const Detection& d, const GroundTruthBox& g);

}  // namespace kestrel::vision
