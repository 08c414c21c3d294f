// The transport-neutral face of a KServe v2 server, as the load generator sees it.
//
// A Client talks to one model on one server. It learns the model's inputs (model_metadata), reads
// the server-side statistics (model_stats), and turns the bench's samples into wire requests once
// (prepare), so the timed loop only sends prepared bytes. Each concurrent worker gets its own
// Connection (one keep-alive HTTP connection, or one gRPC stub on a shared channel).
//
// Thread safety: connect() may be called from several threads once prepare() returned; the other
// methods of a Client are called from one thread (the load generator's coordinator). A Connection
// has one call in flight at a time: call() from one thread, or a chain of start()s each begun
// after the previous one's `done`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kestrel/base/status.h"

namespace kestrel::bench {

// One tensor of a model's signature, in KServe's terms ("FP32", [-1, 3, 640, 640]).
struct TensorSpec {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
};

struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
};

// The bytes of one element of a KServe datatype ("FP32" -> 4); 0 for BYTES and unknown names.
int64_t datatype_size(std::string_view datatype);

// One input tensor of a request: its bytes in row-major order, little-endian.
struct InputTensor {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::string data;
};

// What one request sends: input tensors to /infer (ModelInfer), or, when `image` is set, the
// encoded image to /detect. `id` names the sample (an image's file stem) for accuracy checks.
struct Sample {
  std::vector<InputTensor> inputs;
  std::string image;
  std::string id;
};

// The cumulative counters of the server's model statistics (Triton's and KServe's
// inference_stats): request counts and total nanoseconds per phase.
struct ServerStats {
  int64_t success_count = 0, success_ns = 0;
  int64_t fail_count = 0, fail_ns = 0;
  int64_t queue_count = 0, queue_ns = 0;
  int64_t compute_input_count = 0, compute_input_ns = 0;
  int64_t compute_infer_count = 0, compute_infer_ns = 0;
  int64_t compute_output_count = 0, compute_output_ns = 0;
  int64_t inference_count = 0;
  int64_t execution_count = 0;
};

// `after - before`, field by field.
ServerStats stats_delta(const ServerStats& before, const ServerStats& after);

// The outcome of one request. The times are the client's own work: building and writing the
// request (send_ns) and reading and checking the answer once it arrived (recv_ns).
struct CallResult {
  Status status;
  int64_t send_ns = 0;
  int64_t recv_ns = 0;
  // The answer's body, kept only when the connection was asked to (accuracy checks).
  std::string body;
};

class Connection {
 public:
  using CallDone = std::function<void(CallResult)>;
  virtual ~Connection() = default;
  // Sends prepared sample `index` (modulo the number prepared) and waits for the answer.
  virtual CallResult call(size_t index) = 0;
  // Whether start() returns before the answer (gRPC): the load generator then chains each
  // concurrent slot's requests from the answers' callbacks instead of running a thread per slot.
  virtual bool asynchronous() const { return false; }
  // Sends sample `index` and calls `done` once with the result: on one of the transport's threads
  // when asynchronous(), which may start the connection's next call from there; else here, before
  // returning. One call at a time per Connection.
  virtual void start(size_t index, CallDone done) { done(call(index)); }
};

enum class TensorFormat { kBinary, kJson };

struct ClientOptions {
  std::string url = "localhost:8000";  // host:port, with or without http://
  std::string model;
  std::string version;  // empty: the server's choice
  // How input tensors travel over HTTP: the binary-data extension or JSON numbers.
  TensorFormat tensor_format = TensorFormat::kBinary;
  // Keep the answers' bodies in CallResult (for --accuracy).
  bool keep_bodies = false;
  // Per-request timeout; 0 for none.
  int64_t timeout_ms = 0;
  // The query string of /detect requests (Kestrel's "score_threshold=0.001&iou_threshold=0.65").
  std::string detect_query;
  // gRPC: how many channels (HTTP/2 connections) the workers share, round robin; 0: one each.
  int grpc_channels = 0;
  // Extra headers of every request (gRPC: metadata, names lower-cased), e.g.
  // {"Authorization", "Bearer ..."}.
  std::vector<std::pair<std::string, std::string>> headers;
  // Tensors travel through shared memory instead of in the messages: system shared memory (the
  // server's system_shared_memory extension, perf_analyzer's --shared-memory system) or GPU memory
  // on GPU `shared_memory_device` (cuda_shared_memory, --shared-memory cuda). Inputs are written
  // once into one region; each connection gets its own region for the outputs.
  enum class SharedMemory { kNone, kSystem, kCuda };
  SharedMemory shared_memory = SharedMemory::kNone;
  int shared_memory_device = 0;
  // Bytes reserved per output in shared memory; 0: computed from the model's metadata, which
  // works when only the batch dimension is variable.
  int64_t output_shared_memory_size = 0;
};

class Client {
 public:
  virtual ~Client() = default;
  virtual Status server_ready() = 0;
  virtual StatusOr<ModelMetadata> model_metadata() = 0;
  virtual StatusOr<ServerStats> model_stats() = 0;
  // Builds the wire form of every sample. REQUIRES: before connect(); at least one sample.
  virtual Status prepare(std::span<const Sample> samples) = 0;
  virtual StatusOr<std::unique_ptr<Connection>> connect() = 0;
};

// An HTTP/1.1 client (Boost.Beast); `-i http`.
StatusOr<std::unique_ptr<Client>> make_http_client(const ClientOptions& options);

// A gRPC client (inference.GRPCInferenceService); `-i grpc`. UNIMPLEMENTED when Kestrel was built
// without the protocol layer.
StatusOr<std::unique_ptr<Client>> make_grpc_client(const ClientOptions& options);

}  // namespace kestrel::bench
