// --accuracy: mAP@0.5 and mAP@0.5:0.95 of a server's /detect answers against YOLO label files.
//
// The evaluator follows YOLOv5's val.py (and vision/coco_eval.h, which the bench may not include:
// DESIGN.md keeps bench on base and protocol only, so this is a small copy of the same method):
// greedy matching per IoU threshold 0.50:0.05:0.95, the precision envelope integrated at COCO's
// 101 recall points, the mean over the classes present in the labels.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/status.h"

namespace kestrel::bench {

struct Box {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  double score = 0;  // 1 for labels
  int32_t class_id = 0;
};

struct ImageBoxes {
  std::vector<Box> detections;  // source-image pixels
  std::vector<Box> labels;
};

struct MapResult {
  double map50 = 0, map50_95 = 0;
  int64_t labels = 0, detections = 0;
};

MapResult mean_average_precision(std::span<const ImageBoxes> images);

// A YOLO label file's text ("class cx cy w h" normalized; blank lines skipped) in pixels.
StatusOr<std::vector<Box>> parse_yolo_label_text(std::string_view text, int64_t width,
                                                 int64_t height);

// The detections of a /detect answer. Accepted layouts: {"detections": [...]}, or the first
// image's entry of {"images"|"results": [{"detections": [...]}]}; each detection has a box as
// "box"/"bbox" [x1, y1, x2, y2] or as members x1, y1, x2, y2, a "score"/"confidence" and a
// "class_id"/"class"/"category_id".
StatusOr<std::vector<Box>> parse_detect_answer(std::string_view json);

// The pixel size of a JPEG or PNG from its header (the bench does not decode images).
StatusOr<std::pair<int64_t, int64_t>> image_size(std::string_view bytes);

}  // namespace kestrel::bench
