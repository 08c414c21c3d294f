// Model configuration: config.pbtxt (Triton's protobuf text format, the subset in
// protocol/model_config.proto) parsed, validated and completed from the engine.
//
//   KS_ASSIGN_OR_RETURN(inference::ModelConfig config, parse_model_config(text, "m/config.pbtxt"));
//   KS_RETURN_IF_ERROR(complete_model_config(engine, &config));   // fill in and check tensors
//
// Unknown fields and bad values are errors that name the file, line and column (for syntax) or the
// field (for values), never silently ignored.
#pragma once

#include <string>
#include <string_view>

#include "kestrel/base/status.h"
#include "kestrel/engine/engine.h"
#include "kestrel/protocol/model_config.pb.h"
#include "kestrel/vision/yolo_decode.h"

namespace kestrel::serve {

// Parses config.pbtxt text; INVALID_ARGUMENT "path:line:column: message" for syntax errors and
// unknown fields, then validate_model_config().
StatusOr<inference::ModelConfig> parse_model_config(std::string_view text, std::string_view path);

// Checks values that do not depend on the model: max_batch_size >= 0, preferred sizes in
// [1, max_batch_size], priority levels, instance counts, dims >= -1, no reshape, numeric types
// only, known Kestrel parameters with valid values.
Status validate_model_config(const inference::ModelConfig& config);

// Fills what the configuration leaves out from the engine (inputs, outputs, data types, dims;
// platform and backend) and checks what it gives against the engine: names, data types, ranks and
// fixed dims. `config.max_batch_size` > 0 means the engine's first axis is the batch.
Status complete_model_config(const engine::Engine& engine, inference::ModelConfig* config);

// The configuration of a model that has no config.pbtxt: max_batch_size `max_batch` when the
// engine's inputs have a variable first axis, else 0; one CPU/GPU instance; dynamic batching.
inference::ModelConfig default_model_config(std::string name, int max_batch);

// Kestrel's own parameters ("precision", "score_threshold", "iou_threshold", "max_detections",
// "class_agnostic", "nms", "cudnn_graph") with their defaults. With nms "true" the engine ends in
// YoloNms built with the detection settings (optimize/append_nms.h): its outputs are boxes, scores,
// classes and num_dets instead of the raw YOLO output.
struct KestrelParameters {
  std::string precision = "fp32";  // "fp32", "tf32" or "fp16"
  vision::DetectionOptions detection;
  bool nms = false;
  // "cudnn_graph": convolutions may run as cuDNN's fused graph kernels (engine::BuildOptions::
  // cudnn_graph): on the H100, yolov5s FP16 runs 2.8x faster at batch 32 (4.3 instead of 12 ms)
  // and 4.8x at batch 1. cuDNN compiles those kernels per batch size: the first start builds for
  // 40-60 s, and the cached engine keeps the compiled kernels, so later starts reach READY in
  // 1.0-1.2 s (0.9 s without). Batches run padded to the warm sizes (preferred_batch_size and
  // max_batch_size), so no request waits for a compilation. Off by default, for the cold start and
  // for mid-size batches, which run padded; docs/benchmarks/ has the figures.
  bool cudnn_graph = false;
};
StatusOr<KestrelParameters> kestrel_parameters(const inference::ModelConfig& config);

}  // namespace kestrel::serve
