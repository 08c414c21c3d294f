// GrpcFrontend: the KServe v2 gRPC protocol (service inference.GRPCInferenceService, Triton's
// protos in protocol/) and grpc.health.v1 on top of InferenceServer.
//
// Every RPC of the service is served: ServerLive, ServerReady, ModelReady, ServerMetadata,
// ModelMetadata, ModelConfig, ModelStatistics, ModelInfer (typed contents or
// raw_input_contents; answers with raw_output_contents), ModelStreamInfer (one response per
// request, in order, errors in error_message), RepositoryIndex, RepositoryModelLoad,
// RepositoryModelUnload, and the shared-memory extensions' SystemSharedMemoryStatus/Register/
// Unregister and CudaSharedMemoryStatus/Register/Unregister (core/shared_memory.h; inputs and
// requested outputs name a region in their parameters). Status codes are Kestrel's, which are
// gRPC's (base/status.h), unchanged. Messages up to `max_message_bytes` (256 MB by default: gRPC's
// default of 4 MB is less than one 640x640 FP32 image). A client that cancels or disconnects while
// its request is queued frees its slot.
//
// ModelInfer runs on gRPC's callback API: it queues the request and returns, and the thread that
// finishes the batch writes the response (small ones) or hands it to a small pool (large ones and
// those copied into shared memory), so no thread waits for a batch. The other RPCs are
// synchronous.
//
// Thread safety: start() and shutdown() from one thread; the RPCs run on gRPC's threads.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "kestrel/base/status.h"
#include "kestrel/serve/core/inference_server.h"

namespace kestrel::serve {

struct GrpcOptions {
  std::string address = "127.0.0.1";
  int port = 8001;  // 0: any free port (see port())
  int max_message_bytes = 256 << 20;
  std::string auth_token;  // empty: none; else "authorization: Bearer <token>" metadata
  // Threads that wait for the synchronous RPCs (all but ModelInfer, which runs on gRPC's callback
  // API), at most; 0: the default, 64. Such an RPC runs on the thread that took it, and a thread
  // that finds this many others waiting exits, so a low value (gRPC's own default is 2) makes
  // bursts of requests create and destroy threads.
  int max_pollers = 0;
};

class GrpcFrontend {
 public:
  static StatusOr<std::unique_ptr<GrpcFrontend>> start(InferenceServer& server,
                                                       const GrpcOptions& options);
  ~GrpcFrontend();
  int port() const;
  // Stops accepting RPCs and waits for the running ones until `deadline`, then cancels the rest.
  void shutdown(std::chrono::system_clock::time_point deadline);

  struct Impl;

 private:
  explicit GrpcFrontend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kestrel::serve
