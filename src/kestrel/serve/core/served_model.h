// ServedModel: one loaded, warmed-up version of a model: its configuration, engine, optional YOLO
// detector, request scheduler (DynamicBatcher over `count` instances) and statistics.
//
// Lifecycle: ServedModel::load() imports the ONNX file, builds the engine, completes the
// configuration, runs the warm-up samples and only then returns: a ServedModel that exists is
// READY. Its destructor drains the scheduler (queued requests still run).
//
// Thread safety: const methods and infer()/detect() may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/engine/engine.h"
#include "kestrel/protocol/grpc_service.pb.h"
#include "kestrel/protocol/model_config.pb.h"
#include "kestrel/serve/core/dynamic_batcher.h"
#include "kestrel/serve/core/model_config.h"
#include "kestrel/serve/core/model_statistics.h"
#include "kestrel/serve/core/request.h"
#include "kestrel/vision/detector.h"
#include "kestrel/vision/image.h"

namespace kestrel::serve {

struct LoadOptions {
  std::string backend = "auto";  // engine backend: auto, cpu, cuda
  // Engines built from ONNX files are saved here as .kplan files named by the model's SHA-256,
  // precision, max batch and backend, and loaded instead of rebuilt next time (a file built for
  // another GPU or Kestrel version fails its checks and is rebuilt). Empty: no cache.
  std::string engine_cache_dir;
  // /detect refuses images whose header declares more pixels than this (checked before any
  // pixel memory is allocated: decompression bombs cost nothing).
  int64_t max_image_pixels = int64_t{64} << 20;
};

// One image's detections for the detect endpoint.
struct DetectResult {
  int64_t width = 0, height = 0;  // of the decoded image
  std::vector<vision::Detection> detections;
};
using DetectCallback = std::function<void(StatusOr<std::vector<DetectResult>>)>;

class ServedModel : public std::enable_shared_from_this<ServedModel> {
 public:
  // `config` has been parsed and validated (or is default_model_config()); its name is the model's.
  // `model_path` is an ONNX file (built, through the engine cache) or a .kplan engine file.
  static StatusOr<std::unique_ptr<ServedModel>> load(inference::ModelConfig config, int64_t version,
                                                     const std::string& model_path,
                                                     const LoadOptions& options);
  ~ServedModel();

  const std::string& name() const { return config_.name(); }
  int64_t version() const { return version_; }
  const inference::ModelConfig& config() const { return config_; }
  const engine::Engine& engine() const { return *engine_; }
  // Null when the model is not a YOLO detector.
  const vision::Detector* detector() const { return detector_.get(); }

  // Checks `request` against the configuration (names, datatypes, shapes, sizes) and queues it.
  // On error `done` is called with it (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, ...).
  void infer(InferRequest request, InferCallback done);

  // Decodes and letterboxes the images, runs them through the same scheduler as one request, and
  // applies decode + NMS (or reads the detections of an engine with NMS). The decoding runs on the
  // server's pre-processing pool (one thread per core), not on the caller's thread, when the model
  // is owned by a shared_ptr (as the server owns it); the bytes `images` point to must stay valid
  // until `done` is called. FAILED_PRECONDITION when the model is no detector.
  void detect(std::span<const std::string_view> images, const vision::DetectionOptions& options,
              std::shared_ptr<CancelToken> cancel, DetectCallback done);
  // Kestrel's detection defaults from the configuration's parameters.
  const vision::DetectionOptions& detection_defaults() const { return detection_defaults_; }

  inference::ModelMetadataResponse metadata() const;
  inference::ModelStatistics statistics() const;
  ModelStatistics::Snapshot statistics_snapshot() const { return stats_.snapshot(); }
  size_t pending() const { return batcher_ ? batcher_->pending() : 0; }
  // Drains: refuses new requests and finishes the queued ones.
  void stop();

 private:
  ServedModel() = default;
  Status warm_up();
  // detect() after its checks, on the calling thread.
  void decode_and_detect(const std::vector<std::string_view>& images,
                         const vision::DetectionOptions& options,
                         std::shared_ptr<CancelToken> cancel, DetectCallback done);

  inference::ModelConfig config_;
  int64_t version_ = 0;
  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<vision::Detector> detector_;
  vision::DetectionOptions detection_defaults_;
  vision::DecodeOptions decode_options_;
  ModelStatistics stats_;
  std::unique_ptr<DynamicBatcher> batcher_;
};

}  // namespace kestrel::serve
