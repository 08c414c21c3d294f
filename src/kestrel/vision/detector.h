// Detector: images in, detections out, on top of an Engine that runs a YOLO model.
//
// This is what `kestrel detect` and `kestrel eval` are thin wrappers of:
//
//   KS_ASSIGN_OR_RETURN(auto engine, engine::build_engine(std::move(graph), {}));
//   KS_ASSIGN_OR_RETURN(auto detector, vision::Detector::create(*engine));
//   KS_ASSIGN_OR_RETURN(Tensor image, vision::read_image("bus.jpg"));
//   KS_ASSIGN_OR_RETURN(auto results, detector->detect({&image, 1}, {.score_threshold = 0.25f}));
//   // results[0]: detections in bus.jpg's pixels; detector->class_names()[d.class_id]
//
// The steps are public too (preprocess, infer, postprocess), so a caller can run the network once
// and post-process its output several ways, or pipeline decoding with inference.
//
// Thread safety: const methods may be called concurrently (Engine::run is thread-safe).
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/engine/engine.h"
#include "kestrel/vision/letterbox.h"
#include "kestrel/vision/nms.h"
#include "kestrel/vision/yolo_decode.h"

namespace kestrel::vision {

// Class names from a model's "names" metadata: a JSON object {"0": "person", ...}, a Python dict
// literal {0: 'person', ...} (how Ultralytics exports write it), or a list ["person", ...]. The
// result is indexed by class id; ids missing from an object get "class<N>". INVALID_ARGUMENT when
// the text is none of these.
StatusOr<std::vector<std::string>> parse_class_names(std::string_view metadata);

class Detector {
 public:
  // Checks that the engine's first input is [N, 3, H, W] (float32 or float16, H and W fixed) and
  // that its first output can be a YOLO output (rank 3; when its sizes are declared, one of the
  // layouts, consistent with the number of class names). `engine` must outlive the detector.
  static StatusOr<std::unique_ptr<Detector>> create(const engine::Engine& engine,
                                                    YoloLayout layout = YoloLayout::kAuto);

  int64_t input_width() const { return input_width_; }
  int64_t input_height() const { return input_height_; }
  DType input_dtype() const { return input_dtype_; }
  // From the model's metadata; empty when it has none.
  const std::vector<std::string>& class_names() const { return class_names_; }

  // True when the engine ends in YoloNms (built with `kestrel build --nms`): its outputs are the
  // final detections, and nms_options() says how they were made.
  bool has_nms() const { return has_nms_; }
  const DetectionOptions& nms_options() const { return nms_options_; }
  // The engine outputs postprocess() takes, in order: the raw YOLO output, or NMS's boxes,
  // scores, classes and num_dets.
  const std::vector<std::string>& output_names() const { return output_names_; }

  // Letterboxes uint8 [H, W, 3] RGB images into one model input [N, 3, H, W]; `params` receives
  // each image's placement.
  StatusOr<Tensor> preprocess(std::span<const Tensor> images,
                              std::vector<LetterboxParams>* params) const;
  // preprocess() on the engine's GPU (GpuLetterbox, letterbox_cuda.h): the uint8 pixels go over
  // PCIe and the model input comes back as a device tensor, bit for bit what preprocess() makes.
  // UNIMPLEMENTED for engines on the CPU or builds without CUDA.
  StatusOr<Tensor> preprocess_on_device(std::span<const Tensor> images,
                                        std::vector<LetterboxParams>* params) const;
  // Runs the model on a preprocessed batch; returns output_names()'s tensors on the host.
  StatusOr<std::vector<Tensor>> infer(const Tensor& input) const;
  // The detections of every image of the batch, mapped back to each source image, one list per
  // image (score descending). From a raw output: decode + NMS with `options`. From an engine with
  // NMS: its results, of which only those with score > options.score_threshold and at most
  // options.max_detections are kept (the IoU threshold, class mode and top-k are the ones the
  // engine was built with).
  StatusOr<std::vector<std::vector<Detection>>> postprocess(std::span<const Tensor> outputs,
                                                            std::span<const LetterboxParams> params,
                                                            const DetectionOptions& options) const;

  // All three for one batch of images; the letterbox runs on the GPU when the engine does.
  StatusOr<std::vector<std::vector<Detection>>> detect(std::span<const Tensor> images,
                                                       const DetectionOptions& options) const;

 private:
  Detector() = default;

  const engine::Engine* engine_ = nullptr;
  std::string input_name_;
  int64_t input_width_ = 0, input_height_ = 0;
  DType input_dtype_ = DType::kFloat32;
  YoloLayout layout_ = YoloLayout::kAuto;
  std::vector<std::string> class_names_;
  bool has_nms_ = false;
  DetectionOptions nms_options_;
  std::vector<std::string> output_names_;
  // Idle GPU letterboxes (one is taken per call, so calls may run concurrently).
  struct GpuLetterboxes;
  std::shared_ptr<GpuLetterboxes> gpu_letterboxes_;
};

}  // namespace kestrel::vision
