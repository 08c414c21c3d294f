// InferenceServer: the model repository, the models' lifecycle and the one interface the HTTP and
// gRPC frontends talk to.
//
// Repository layout (Triton's): <repository>/<model>/config.pbtxt (optional; without it the model
// is configured from its ONNX file) and <repository>/<model>/<version>/model.onnx (or model.kplan,
// a prebuilt engine), versions being positive integers chosen by the version_policy (latest 1).
//
// Control modes: kNone loads every model at start and never changes them; kExplicit loads only the
// models named at start (or "*" for all) and then load()/unload() on request. A load of a model
// that is being served is a reload: the new versions are built and warmed up while the old ones
// keep answering, then swapped in; if the reload fails the old versions keep serving. Unloading
// drains (queued requests still complete).
//
// Thread safety: every method may be called concurrently. Loads are serialized.
#pragma once

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/protocol/grpc_service.pb.h"
#include "kestrel/serve/core/gpu_metrics.h"
#include "kestrel/serve/core/served_model.h"
#include "kestrel/serve/core/shared_memory.h"

namespace kestrel::serve {

enum class ControlMode { kNone, kExplicit };

struct ServerOptions {
  std::string model_repository;          // may be empty when model_files is not
  std::vector<std::string> model_files;  // ONNX files served as <stem>, version 1
  ControlMode control_mode = ControlMode::kNone;
  std::vector<std::string> startup_models;  // kExplicit: loaded at start ("*": all)
  LoadOptions load;
  // The system shared-memory extension (shared_memory.h); off by default, as in tritonserver.
  bool allow_client_shm = false;
};

// Model names are directory names: [A-Za-z0-9_.-], 1..200 characters, not "." or "..".
bool valid_model_name(std::string_view name);

class InferenceServer {
 public:
  // Loads the startup models; fails when one of them does not load (like tritonserver's default
  // --exit-on-error) or the repository is unreadable.
  static StatusOr<std::unique_ptr<InferenceServer>> create(const ServerOptions& options);
  ~InferenceServer();

  bool live() const { return true; }
  // Not shutting down and every loaded model READY.
  bool ready() const;
  // Marks the server not ready (health checks turn negative) before a shutdown.
  void begin_shutdown() { shutting_down_ = true; }
  // Drains every model: queued requests complete, new ones are refused.
  void shutdown();

  inference::ServerMetadataResponse metadata() const;

  // The served version `version` ("" or "-1": the newest) of `name`: NOT_FOUND for unknown models,
  // UNAVAILABLE for models that are not ready.
  StatusOr<std::shared_ptr<ServedModel>> model(std::string_view name,
                                               std::string_view version) const;

  // Resolves the model and queues the request; `done` gets the result (always called once).
  void infer(InferRequest request, InferCallback done);

  inference::RepositoryIndexResponse index(bool ready_only) const;
  // kExplicit only (FAILED_PRECONDITION otherwise).
  Status load(std::string_view name);
  Status unload(std::string_view name);

  // Every model ("" name) or one; every version ("") or one.
  StatusOr<inference::ModelStatisticsResponse> statistics(std::string_view name,
                                                          std::string_view version) const;
  // Prometheus text (metrics.h).
  std::string metrics_text() const;

  // Registered shared-memory regions (disabled unless options.allow_client_shm).
  SharedMemoryManager& shared_memory() { return shared_memory_; }

 private:
  static std::shared_future<std::shared_ptr<GpuMonitor>> open_gpu_monitor();
  struct Slot {
    std::map<int64_t, std::shared_ptr<ServedModel>> versions;
    std::string state = "UNAVAILABLE";  // READY, LOADING, UNAVAILABLE, UNLOADING
    std::string reason;
  };
  explicit InferenceServer(ServerOptions options)
      : options_(std::move(options)), shared_memory_(options_.allow_client_shm) {}
  // Names of the models the repository (and model_files) holds.
  std::vector<std::string> list_models() const;
  Status load_locked(const std::string& name);
  // The model's config and the ONNX files of the versions its policy selects.
  Status read_model(const std::string& name, inference::ModelConfig* config,
                    std::map<int64_t, std::string>* files) const;

  ServerOptions options_;
  std::atomic<bool> shutting_down_{false};
  std::mutex load_mutex_;     // serializes load/unload
  mutable std::mutex mutex_;  // guards models_
  std::map<std::string, Slot> models_;
  // GPU utilization and memory for the metrics; null without an NVIDIA driver. Opened on a thread
  // of its own: NVML's initialization takes tens of milliseconds that the models' loading need not
  // wait for.
  std::shared_future<std::shared_ptr<GpuMonitor>> gpus_ = open_gpu_monitor();
  SharedMemoryManager shared_memory_;
};

}  // namespace kestrel::serve
