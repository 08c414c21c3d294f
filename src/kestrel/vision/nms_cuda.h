// YoloNms on the GPU: decode + batched NMS of a raw YOLO output in device memory, with results
// identical bit for bit to the CPU's batched_nms() (nms.h specifies the arithmetic both follow).
// No CUDA types here: plain C++ code includes this header; streams travel as void*.
#pragma once

#include <memory>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/runtime/kernel.h"
#include "kestrel/vision/nms.h"
#include "kestrel/vision/yolo_decode.h"

namespace kestrel::vision {

// Decode + NMS of `output` (float32 or float16 [B, ...] on a CUDA device) into `out`, four device
// tensors on the same device with NmsOutput's shapes for B and options.max_detections (boxes stay
// in model-input pixels). Queued on `stream` (a cudaStream_t; null: the per-thread default
// stream), not waited for; safe to record into a CUDA graph. Scratch memory comes from the
// stream-ordered pool: 16 bytes per possible candidate (anchors per image, times classes with
// multi_label), per image.
Status cuda_batched_nms(const Tensor& output, const DetectionOptions& options, NmsOutput& out,
                        void* stream);

// YoloNms's CUDA kernel (register_detection_kernels() registers it for the "cuda" backend).
StatusOr<std::unique_ptr<runtime::Kernel>> create_cuda_yolo_nms_kernel(
    const runtime::KernelDef& def);

}  // namespace kestrel::vision
