// Building an engine from an imported graph: optimize, choose the precision, bind the kernels.
//
//   KS_ASSIGN_OR_RETURN(auto graph, onnx::import_model_file(path));
//   KS_ASSIGN_OR_RETURN(auto engine, build_engine(std::move(graph), {.precision = "fp16"}));
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "kestrel/engine/engine.h"
#include "kestrel/optimize/optimizer.h"

namespace kestrel::engine {

// The revision of what build_engine() makes from a model. Raise it with every change to the
// optimizer or the builder that changes what an engine computes or how it runs: caches of built
// engines (the server's engine cache) key on it, so that an engine an older Kestrel built is
// rebuilt instead of loaded. 2: float16 models built for "fp32" compute in float32.
inline constexpr int kBuilderRevision = 2;

struct BuildOptions {
  EngineOptions engine;
  // The precision of the computation, whatever the model's: "fp32" or "fp16" (float16 storage,
  // float32 accumulation). Inputs and outputs keep the model's types: a float32 model built for
  // "fp16" still exchanges float32 tensors, and a model exported in float16 built for "fp32"
  // (optimize/convert_precision.h) still exchanges float16 ones.
  std::string precision = "fp32";
  // Layers (node names) kept in float32 under "fp16".
  std::set<std::string> keep_float32;
  // float32 convolutions may use TF32 tensor cores (10-bit mantissa products, float32
  // accumulation) on the GPU: every Conv and FusedConv gets kestrel_tf32=1. Opt-in, as by default
  // float32 means full float32; only with precision "fp32" (INVALID_ARGUMENT with "fp16"). The
  // CPU kernels ignore it.
  bool tf32 = false;
  // Convolutions may run as cuDNN graph kernels with their epilogue fused (runtime/cuda/conv.cc):
  // the fastest, but cuDNN compiles those kernels at run time, about a second for each new
  // batch size an engine meets (and again after loading an engine file). Off: the other
  // candidates only, ready in milliseconds; the server's default (a dynamic batcher meets many
  // batch sizes).
  bool cudnn_graph = true;
  // Batches 1..max_batch are accepted; constant folding is exact over that range.
  int64_t max_batch = 32;
  // Off: run the imported graph as it is (for debugging the optimizer).
  bool optimize = true;
  // Layout of the convolutional part: "nhwc" runs it channels-last inside while the graph's
  // inputs and outputs stay NCHW (optimize/to_channels_last.h; needs `optimize`), "nchw" keeps
  // the model's layout, "auto" picks NHWC for float16 on the GPU, and for TF32 with `cudnn_graph`
  // (cuDNN's tensor-core kernels and its fused graph kernels want it; yolov5s TF32 at batch 32:
  // 4,382 img/s NHWC against 1,854 NCHW) and NCHW otherwise (cuDNN's plain float32 NHWC kernels are
  // slower than its NCHW ones, docs/benchmarks; on the CPU oneDNN chooses its own blocked layout
  // inside each convolution).
  std::string layout = "auto";
  // When set: YoloNms with these attributes is appended to the first output, so the engine returns
  // final detections (optimize/append_nms.h; vision::yolo_nms_attributes() makes the attributes,
  // and the program must have called vision::register_detection_kernels()).
  std::optional<Attributes> nms;
};

struct BuildReport {
  optimize::OptimizeReport optimizer;
  int converted_to_float16 = 0;
  int converted_to_float32 = 0;
  int tf32_convolutions = 0;
  std::string to_string() const;
};

// What an engine built with `options` calls its precision (engine files record it, `kestrel
// inspect` shows it): "fp16", "tf32" (fp32 with BuildOptions::tf32) or "fp32".
std::string precision_name(const BuildOptions& options);

// Marks every Conv and FusedConv of `graph` with kestrel_tf32=1 (runtime/cuda/conv.cc then lets
// cuDNN use TF32 tensor cores for float32); returns how many were marked. build_engine does this
// for BuildOptions::tf32; `kestrel run` uses it on the graph as imported.
int allow_tf32(ir::Graph& graph);

// Returns the engine; `report`, when given, receives what the optimizer did.
StatusOr<std::unique_ptr<Engine>> build_engine(std::unique_ptr<ir::Graph> graph,
                                               const BuildOptions& options,
                                               BuildReport* report = nullptr);

}  // namespace kestrel::engine
