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

  // Letterboxes uint8 [H, W, 3] RGB images into one model input [N, 3, H, W]; `params` receives
  // each image's placement.
  StatusOr<Tensor> preprocess(std::span<const Tensor> images,
                              std::vector<LetterboxParams>* params) const;
  // Runs the model on a preprocessed batch; returns its raw (first) output on the host.
  StatusOr<Tensor> infer(const Tensor& input) const;
  // Decode + NMS + mapping back to each source image, one list per image (score descending).
  StatusOr<std::vector<std::vector<Detection>>> postprocess(const Tensor& output,
                                                            std::span<const LetterboxParams> params,
                                                            const DetectionOptions& options) const;

  // All three for one batch of images.
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
};

}  // namespace kestrel::vision
