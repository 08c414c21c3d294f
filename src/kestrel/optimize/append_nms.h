// append_yolo_nms: makes a YOLO detector's graph end in final detections.
//
// The raw output of a YOLO model is large (yolov5s at 640x640: 25,200 x 85 floats, 8.6 MB per
// image) and needs decoding and NMS before anyone can use it. This pass appends Kestrel's YoloNms
// operator (ir/ops/reduce.cc; kernels and exact semantics in vision/nms.h) to the graph's first
// output and makes its four results the graph's only outputs:
//
//   boxes    float32 [N, max_detections, 4]   x1, y1, x2, y2 in model-input pixels
//   scores   float32 [N, max_detections]
//   classes  int32   [N, max_detections]      -1 past num_dets
//   num_dets int32   [N]
//
// so an engine built with it returns a few kilobytes per image, in shapes a dynamic batcher can
// split by rows. When the raw output is a float16 result cast to float32 (an FP16 engine), NMS
// reads the float16 tensor directly, and the cast goes away.
#pragma once

#include "kestrel/base/attributes.h"
#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

// The names of the outputs, in order.
inline constexpr const char* kNmsOutputNames[4] = {"boxes", "scores", "classes", "num_dets"};

// `nms` holds YoloNms's attributes (vision::yolo_nms_attributes() makes them from detection
// options). The graph's metadata gets "kestrel_nms" describing them. INVALID_ARGUMENT when the
// graph has no output, its first output is not rank 3, or it already ends in YoloNms.
Status append_yolo_nms(ir::Graph& graph, const Attributes& nms);

}  // namespace kestrel::optimize
