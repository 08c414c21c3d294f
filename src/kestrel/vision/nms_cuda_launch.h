// The launcher of the GPU NMS kernels (nms_cuda.cu): a plain C++ signature without Kestrel
// headers, which nvcc cannot digest; nms_cuda.cc checks tensors and options and calls it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kestrel::vision::cuda_nms {

struct YoloNmsArgs {
  const void* data = nullptr;  // raw output, device
  bool half = false;           // float16 (else float32)
  bool v5 = true;              // [B, anchors, 5 + classes] (else [B, 4 + classes, anchors])
  int64_t batch = 0, anchors = 0, classes = 0;
  float score_threshold = 0;
  bool multi_label = false;
  float iou_threshold = 0;
  bool agnostic = false;
  int64_t top_k = 0;
  int max_det = 0;
  float* boxes = nullptr;          // [B, max_det, 4]
  float* scores = nullptr;         // [B, max_det]
  int32_t* classes_out = nullptr;  // [B, max_det]
  int32_t* num_dets = nullptr;     // [B]
};

// REQUIRES: batch in 1..65535, anchors * classes and batch * anchors * (multi_label ? classes : 1)
// below 2^31, max_det >= 1, top_k >= 1. Queues the work on `stream`; returns the first error.
cudaError_t launch_yolo_nms(const YoloNmsArgs& args, cudaStream_t stream);

}  // namespace kestrel::vision::cuda_nms
