// HttpApi: the KServe v2 REST protocol (with Triton's extensions) on top of InferenceServer.
//
// Endpoints: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{m}[/versions/{v}] (metadata),
// .../ready, .../config, .../stats, GET /v2/models/stats; POST .../infer (JSON tensors, and the
// binary tensor extension with Inference-Header-Content-Length), POST .../detect (Kestrel: a raw
// JPEG/PNG body or multipart/form-data with several images -> detections JSON), POST
// /v2/repository/index, POST /v2/repository/models/{m}/load|unload, and the system shared-memory
// extension (core/shared_memory.h): GET /v2/systemsharedmemory[/region/{r}]/status, POST
// /v2/systemsharedmemory/region/{r}/register ({"key", "offset", "byte_size"}), POST
// /v2/systemsharedmemory[/region/{r}]/unregister. handle_metrics() serves GET /metrics
// (Prometheus text) for the metrics port.
//
// Errors are Triton's {"error": "..."} with the HTTP status of the Status code (base/status.h's
// http_status(), the one mapping). With an auth token every endpoint except /v2/health/* requires
// "Authorization: Bearer <token>" (compared in constant time, never logged).
//
// An inference's answer is built on the thread that finished its batch when it is small, and on a
// small pool of responders when it is large (raw outputs of MBs) or is copied into shared memory,
// so that the copies do not hold up the instance's next batch (as the gRPC frontend does).
//
// Thread safety: handle() may be called concurrently. finish_responses() once, after the last
// inference finished and before the HTTP server stops.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <string>

#include "kestrel/serve/core/inference_server.h"
#include "kestrel/serve/http/http_server.h"

namespace kestrel::serve {

struct HttpApiOptions {
  std::string auth_token;  // empty: no authentication
  int max_json_depth = 32;
};

class HttpApi {
 public:
  HttpApi(InferenceServer& server, HttpApiOptions options);
  ~HttpApi();

  // `cancel` (optional) is set when the client disconnects; queued inference is then dropped.
  void handle(HttpRequest&& request, Responder respond,
              std::shared_ptr<CancelToken> cancel = nullptr);
  void handle_metrics(HttpRequest&& request, Responder respond);
  // Waits until every answer handed to the responders was given to its Responder.
  void finish_responses();

 private:
  // v2/systemsharedmemory/... and v2/cudasharedmemory/... (`kind`).
  void shared_memory_endpoint(const HttpRequest& request, const std::vector<std::string>& path,
                              SharedMemoryManager::Kind kind, Responder respond);
  void model_endpoint(HttpRequest&& request, const std::vector<std::string>& path,
                      Responder respond, std::shared_ptr<CancelToken> cancel);
  void infer(HttpRequest&& request, std::shared_ptr<ServedModel> model, Responder respond,
             std::shared_ptr<CancelToken> cancel);
  void detect(HttpRequest&& request, std::shared_ptr<ServedModel> model, Responder respond,
              std::shared_ptr<CancelToken> cancel);

  InferenceServer& server_;
  HttpApiOptions options_;
  boost::asio::thread_pool responders_;
};

// True when a and b are equal; the time taken depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace kestrel::serve
