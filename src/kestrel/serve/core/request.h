// Inference requests and responses as the server core sees them, independent of the wire protocol.
//
// A frontend (HTTP, gRPC) decodes a request into an InferRequest, hands it to
// InferenceServer::infer with a callback, and encodes the InferResponse the callback receives.
// Tensors are host tensors. A request may be cancelled at any time through its CancelToken (a
// client that went away): a queued request is then dropped without running and its callback gets
// CANCELLED.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"

namespace kestrel::serve {

// Shared between a frontend and the scheduler; set once, never cleared.
class CancelToken {
 public:
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

struct InferRequest {
  std::string model_name;
  std::string model_version;  // empty: the newest version being served
  std::string id;             // echoed in the response
  std::vector<NamedTensor> inputs;
  // Instead of `inputs` (the detect endpoint): decoded uint8 [H, W, 3] images, one batch row each,
  // which the batcher's image executor letterboxes into the model's input.
  std::vector<Tensor> images;
  std::vector<std::string> outputs;     // requested outputs; empty: every output
  uint64_t priority = 0;                // 1 is the highest level; 0: the model's default
  uint64_t timeout_us = 0;              // 0: the model's default queue timeout
  std::shared_ptr<CancelToken> cancel;  // optional
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::vector<NamedTensor> outputs;
};

// Called exactly once per request, on a scheduler or frontend thread; must not block for long.
using InferCallback = std::function<void(StatusOr<InferResponse>)>;

}  // namespace kestrel::serve
