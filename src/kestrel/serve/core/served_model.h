// ServedModel: one loaded, warmed-up version of a model: its configuration, engines, optional
// YOLO detector, request scheduler (DynamicBatcher over the instances) and statistics.
//
// Lifecycle: ServedModel::load() places the instances on their devices (instance_placement.h),
// imports the ONNX file and builds one engine per device the instances use (instances on one
// device share its engine, each run on an execution context of its own), completes the
// configuration, warms every engine up and only then returns: a ServedModel that exists is READY.
// Its destructor drains the scheduler (queued requests still run).
//
// Warm-up: the model_warmup samples (or, without any, one zero batch of one when every dim is
// fixed) run on every engine; engines on a GPU also run a zero batch at every preferred_batch_size
// and at max_batch_size, as many at once as the device has instances, so that the CUDA graphs of
// those sizes are recorded before the first client. The sizes the engines are then warm for
// (Engine::warm_batch_sizes()) are what the batcher prefers when no preferred_batch_size is
// configured (dynamic_batcher.h).
//
// Thread safety: const methods and infer()/detect() may be called concurrently.
#pragma once

#include <chrono>
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
#include "kestrel/serve/core/instance_placement.h"
#include "kestrel/serve/core/model_config.h"
#include "kestrel/serve/core/model_statistics.h"
#include "kestrel/serve/core/request.h"
#include "kestrel/vision/detector.h"
#include "kestrel/vision/image.h"

namespace kestrel::serve {

struct LoadOptions {
  // The server's engine backend: auto, cpu or cuda; with the instance groups it decides where each
  // instance runs (instance_placement.h). A .kplan model file runs on the backend it was built for.
  std::string backend = "auto";
  // Engines built from ONNX files are saved here (after their warm-up, with the autotuner's
  // choices) as .kplan files named by the model's SHA-256, precision, max batch, backend and, on
  // the GPU, the GPU model and architecture (not its index: identical GPUs share a file), NMS and
  // graph-kernel settings and the builder's revision (engine::kBuilderRevision), and loaded
  // instead of rebuilt next time (a file that fails its checks, built for another GPU say, is
  // rebuilt). Empty: no cache.
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
  // The configuration as served: completed from the engine, instance groups as placed.
  const inference::ModelConfig& config() const { return config_; }
  // The engine of the first instance (every engine runs the same model).
  const engine::Engine& engine() const { return *engine_; }
  // Where each instance runs; instance i is the batcher's instance i.
  const std::vector<InstancePlacement>& instances() const { return instances_; }
  // The batch sizes every engine was warm for after the warm-up (BatcherOptions).
  const std::vector<int>& warm_batch_sizes() const { return warm_batch_sizes_; }
  // Null when the model is not a YOLO detector.
  const vision::Detector* detector() const { return detector_.get(); }

  // Checks `request` against the configuration (names, datatypes, shapes, sizes) and queues it.
  // On error `done` is called with it (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, ...).
  void infer(InferRequest request, InferCallback done);

  // Decodes the images and runs them through the same scheduler as other requests (chunks of at
  // most max_batch_size images), then applies decode + NMS (or reads the detections of an engine
  // with NMS). The decoded uint8 images themselves are queued: the batcher's image preparer
  // letterboxes a whole batch of them at once, on the GPU when the engine runs there, so only
  // uint8 pixels cross PCIe. (A model without a batch axis letterboxes on the CPU, one image per
  // request.) The decoding runs on the server's pre-processing pool (one thread per core), not on
  // the caller's thread, when the model is owned by a shared_ptr (as the server owns it); the
  // bytes `images` point to must stay valid until `done` is called. FAILED_PRECONDITION when the
  // model is no detector.
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
  // Runs the warm-up on `engine`, which serves `instances` instances.
  Status warm_up(const engine::Engine& engine, int instances) const;
  // Queues a request that passed its checks.
  void submit(InferRequest request, InferCallback done);
  // Runs a batch of the detect endpoint's images on an instance (null when the model is no
  // detector or has no batch axis).
  ImageBatchPreparer image_preparer() const;
  // detect() after its checks, on the calling thread.
  void decode_and_detect(const std::vector<std::string_view>& images,
                         const vision::DetectionOptions& options,
                         std::shared_ptr<CancelToken> cancel, DetectCallback done,
                         std::chrono::steady_clock::time_point posted);

  inference::ModelConfig config_;
  int64_t version_ = 0;
  std::shared_ptr<engine::Engine> engine_;
  std::vector<std::shared_ptr<engine::Engine>> engines_;  // one per device, in placement order
  std::vector<InstancePlacement> instances_;
  std::vector<size_t> engine_of_instance_;  // index into engines_
  std::vector<int> warm_batch_sizes_;
  std::shared_ptr<vision::Detector> detector_;
  std::vector<std::shared_ptr<vision::Detector>> detectors_;  // one per engine
  vision::DetectionOptions detection_defaults_;
  vision::DecodeOptions decode_options_;
  ModelStatistics stats_;
  std::unique_ptr<DynamicBatcher> batcher_;
};

}  // namespace kestrel::serve
