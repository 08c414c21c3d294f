// Batched non-maximum suppression on the CPU: the oracle of the CUDA NMS, which must reproduce it
// exactly (same detections, same order, same float bits).
//
// Per image, independently (nothing of one image ever reaches another's output):
//   1. candidates with score <= score_threshold are dropped;
//   2. the rest are ordered by score, descending; ties keep the decoder's order, which is anchor
//      ascending, then class ascending (a stable sort of the (anchor, class)-ordered candidates; on
//      the GPU: sort by the key (score descending, anchor * num_classes + class ascending));
//   3. only the first top_k enter NMS;
//   4. greedy: walking that order, a candidate is kept unless a box kept before it (of the same
//      class, unless class_agnostic) overlaps it with IoU > iou_threshold; it stops at
//      max_detections kept boxes.
//
// IoU, in float32 with every operation rounded separately (no fused multiply-add: CUDA code must
// use __fmul_rn/__fadd_rn/__fsub_rn or --fmad=false), fminf/fmaxf semantics for min/max:
//   area(b) = fmaxf(b.x2 - b.x1, 0) * fmaxf(b.y2 - b.y1, 0)
//   iw      = fmaxf(fminf(a.x2, b.x2) - fmaxf(a.x1, b.x1), 0)
//   ih      = fmaxf(fminf(a.y2, b.y2) - fmaxf(a.y1, b.y1), 0)
//   inter   = iw * ih
//   union   = (area(a) + area(b)) - inter
//   iou     = union > 0 ? inter / union : 0
// (a is the kept box, b the candidate). Non-finite coordinates give well-defined results (fminf and
// fmaxf drop a NaN operand), as meaningless as the boxes themselves.
//
// Boxes are then optionally mapped back to source-image pixels with the image's letterbox
// placement, in float32: x = fminf(fmaxf((x - pad_left) / ratio, 0), source_width), likewise y with
// pad_top and source_height, where pad_left, source_width and ratio are converted to float first.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kestrel/base/attributes.h"
#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/vision/letterbox.h"
#include "kestrel/vision/yolo_decode.h"

namespace kestrel::vision {

// A final detection.
struct Detection {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float score = 0;
  int32_t class_id = 0;
};

// The IoU of two boxes exactly as NMS computes it (see above).
float nms_iou(const Candidate& kept, const Candidate& candidate);

// NMS of one image's candidates (boxes stay where they are). Uses score_threshold, iou_threshold,
// class_agnostic, top_k and max_detections of `options`.
std::vector<Detection> nms(std::span<const Candidate> candidates, const DetectionOptions& options);

// Maps a detection from model-input pixels to source-image pixels and clips it to the image.
Detection map_to_source(const Detection& d, const LetterboxParams& params);

// Fixed-size padded outputs, what a dynamic batcher can scatter back to requests:
struct NmsOutput {
  Tensor boxes;     // float32 [B, max_det, 4]: x1, y1, x2, y2; rows past num_dets are 0
  Tensor scores;    // float32 [B, max_det]; 0 past num_dets
  Tensor classes;   // int32 [B, max_det]; -1 past num_dets
  Tensor num_dets;  // int32 [B]
};

// Decode + NMS of every image of a raw YOLO output [B, ...] (float32 or float16, host), padded to
// options.max_detections. `letterbox` is empty (boxes stay in model-input pixels) or holds one
// entry per image (boxes mapped back to each source image).
StatusOr<NmsOutput> batched_nms(const Tensor& output, const DetectionOptions& options,
                                std::span<const LetterboxParams> letterbox = {});
// The same into `out`, whose four host tensors are already allocated with the shapes above.
Status batched_nms_into(const Tensor& output, const DetectionOptions& options,
                        std::span<const LetterboxParams> letterbox, NmsOutput& out);

// Batched NMS inside an engine: the YoloNms operator (ir/ops/reduce.cc, appended by
// `kestrel build --nms`, optimize/append_nms.h) computes batched_nms() without the letterbox
// mapping, on the CPU with the code above and on the GPU with the kernels of nms_cuda.cu, which
// give the same results bit for bit.
//
// YoloNms's attributes for `options`, and back (INVALID_ARGUMENT for values out of range).
Attributes yolo_nms_attributes(const DetectionOptions& options);
StatusOr<DetectionOptions> detection_options_from(const Attributes& attrs);
// Registers YoloNms's kernels with the runtime (runtime::register_extension_kernel): the CPU one,
// and the CUDA one in builds with CUDA. Idempotent and thread-safe; a program calls it before it
// builds or loads an engine that contains YoloNms.
void register_detection_kernels();

// The detections of image `image` of a padded output.
std::vector<Detection> unpack_detections(const NmsOutput& output, int64_t image);

}  // namespace kestrel::vision
