// The gRPC frontend (see grpc_frontend.h).
#include "kestrel/serve/grpc/grpc_frontend.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "kestrel/base/logging.h"
#include "kestrel/protocol/datatypes.h"
#include "kestrel/protocol/grpc_service.grpc.pb.h"
#include "kestrel/protocol/health.grpc.pb.h"

namespace kestrel::serve {
namespace {

grpc::Status to_grpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// Typed contents of one input into `t` (already allocated with its shape and dtype).
Status fill_typed(const inference::InferTensorContents& c, Tensor& t, const std::string& name) {
  return dispatch_dtype<AllTypes>(t.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
    auto copy = [&](const auto& list) -> Status {
      if (list.size() != t.num_elements())
        return invalid_argument("input '{}': {} values for shape {}", name, list.size(),
                                t.shape().to_string());
      T* p = t.data<T>();
      for (int i = 0; i < list.size(); ++i) {
        if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
          p[i] = T(static_cast<float>(list[i]));
        else
          p[i] = static_cast<T>(list[i]);
      }
      return Status();
    };
    if constexpr (std::is_same_v<T, bool>)
      return copy(c.bool_contents());
    else if constexpr (std::is_same_v<T, float>)
      return copy(c.fp32_contents());
    else if constexpr (std::is_same_v<T, double>)
      return copy(c.fp64_contents());
    else if constexpr (std::is_same_v<T, int64_t>)
      return copy(c.int64_contents());
    else if constexpr (std::is_same_v<T, uint64_t>)
      return copy(c.uint64_contents());
    else if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, int16_t> ||
                       std::is_same_v<T, int32_t>)
      return copy(c.int_contents());
    else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t> ||
                       std::is_same_v<T, uint32_t>)
      return copy(c.uint_contents());
    else
      return invalid_argument("input '{}': {} data must be sent as raw_input_contents", name,
                              protocol::kserve_datatype(t.dtype()));
  });
}

using ProtoParameters = google::protobuf::Map<std::string, inference::InferParameter>;

// The shared-memory reference in a tensor's parameters, if any.
StatusOr<std::optional<SharedMemoryRef>> shared_memory_param(const ProtoParameters& params,
                                                             std::string_view what) {
  SharedMemoryParams p;
  if (auto it = params.find("shared_memory_region"); it != params.end()) {
    if (!it->second.has_string_param())
      return invalid_argument("{}: shared_memory_region must be a string parameter", what);
    p.region = it->second.string_param();
  }
  auto integer = [&](const char* key, std::optional<int64_t>* out) -> Status {
    auto it = params.find(key);
    if (it == params.end()) return Status();
    if (it->second.has_int64_param()) {
      *out = it->second.int64_param();
    } else if (it->second.has_uint64_param() &&
               it->second.uint64_param() <= static_cast<uint64_t>(INT64_MAX)) {
      *out = static_cast<int64_t>(it->second.uint64_param());
    } else {
      return invalid_argument("{}: {} must be an integer parameter", what, key);
    }
    return Status();
  };
  KS_RETURN_IF_ERROR(integer("shared_memory_byte_size", &p.byte_size));
  KS_RETURN_IF_ERROR(integer("shared_memory_offset", &p.offset));
  return shared_memory_ref(p, what);
}

// A decoded request, and where its outputs go that the client wants in shared memory.
struct DecodedRequest {
  InferRequest request;
  std::map<std::string, SharedMemoryRef> shm_outputs;
};

StatusOr<DecodedRequest> from_proto(const inference::ModelInferRequest& req,
                                    const SharedMemoryManager& shm) {
  DecodedRequest decoded;
  InferRequest& r = decoded.request;
  r.model_name = req.model_name();
  r.model_version = req.model_version();
  r.id = req.id();
  for (const auto& [key, p] : req.parameters()) {
    if (key == "priority")
      r.priority = p.has_uint64_param() ? p.uint64_param() : static_cast<uint64_t>(p.int64_param());
    if (key == "timeout")
      r.timeout_us =
          p.has_uint64_param() ? p.uint64_param() : static_cast<uint64_t>(p.int64_param());
  }
  // raw_input_contents hold the inputs that are not in shared memory, in order.
  const int raw_count = req.raw_input_contents_size();
  int raw_used = 0;
  for (int i = 0; i < req.inputs_size(); ++i) {
    const auto& in = req.inputs(i);
    DType dtype = protocol::dtype_from_kserve(in.datatype());
    if (dtype == DType::kUndefined)
      return invalid_argument("input '{}': unsupported datatype '{}'", in.name(), in.datatype());
    std::vector<int64_t> shape(in.shape().begin(), in.shape().end());
    KS_ASSIGN_OR_RETURN(int64_t count, checked_num_elements(shape));
    if (static_cast<uint64_t>(count) > (uint64_t{1} << 32) / dtype_size(dtype))
      return invalid_argument("input '{}': shape {} is too large", in.name(),
                              Shape(shape).to_string());
    size_t bytes = static_cast<size_t>(count) * dtype_size(dtype);
    const std::string what = fmt::format("input '{}'", in.name());
    KS_ASSIGN_OR_RETURN(std::optional<SharedMemoryRef> ref,
                        shared_memory_param(in.parameters(), what));
    if (ref) {
      if (in.has_contents())
        return invalid_argument("{} is in shared memory and has contents too", what);
      KS_ASSIGN_OR_RETURN(Tensor t, shm.input(*ref, dtype, Shape(shape), in.name()));
      r.inputs.push_back({in.name(), std::move(t)});
      continue;
    }
    KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(dtype, Shape(shape)));
    if (raw_count > 0) {
      if (raw_used >= raw_count)
        return invalid_argument("{} raw_input_contents for more inputs (not in shared memory)",
                                raw_count);
      const std::string& data = req.raw_input_contents(raw_used++);
      if (data.size() != bytes)
        return invalid_argument("input '{}': raw content has {} bytes, shape {} of {} needs {}",
                                in.name(), data.size(), Shape(shape).to_string(), in.datatype(),
                                bytes);
      std::memcpy(t.raw_data(), data.data(), bytes);
    } else {
      KS_RETURN_IF_ERROR(fill_typed(in.contents(), t, in.name()));
    }
    r.inputs.push_back({in.name(), std::move(t)});
  }
  if (raw_used != raw_count)
    return invalid_argument("{} raw_input_contents for {} inputs not in shared memory", raw_count,
                            raw_used);
  for (const auto& out : req.outputs()) {
    r.outputs.push_back(out.name());
    KS_ASSIGN_OR_RETURN(std::optional<SharedMemoryRef> ref,
                        shared_memory_param(out.parameters(), "output '" + out.name() + "'"));
    if (ref) decoded.shm_outputs[out.name()] = std::move(*ref);
  }
  return decoded;
}

// Writes the response; outputs the client asked for in shared memory are copied there and get
// an empty raw entry (trailing empty entries are dropped).
Status to_proto(const InferResponse& r, const std::map<std::string, SharedMemoryRef>& shm_outputs,
                const SharedMemoryManager& shm, inference::ModelInferResponse* out) {
  out->set_model_name(r.model_name);
  out->set_model_version(r.model_version);
  out->set_id(r.id);
  int raw_entries = 0;
  for (const NamedTensor& t : r.outputs) {
    auto* o = out->add_outputs();
    o->set_name(t.name);
    o->set_datatype(std::string(protocol::kserve_datatype(t.tensor.dtype())));
    for (int64_t d : t.tensor.shape()) o->add_shape(d);
    auto ref = shm_outputs.find(t.name);
    if (ref != shm_outputs.end()) {
      KS_RETURN_IF_ERROR(shm.write_output(ref->second, t.tensor, t.name));
      out->add_raw_output_contents();
    } else {
      out->add_raw_output_contents(static_cast<const char*>(t.tensor.raw_data()),
                                   t.tensor.nbytes());
      raw_entries = out->raw_output_contents_size();
    }
  }
  while (out->raw_output_contents_size() > raw_entries)
    out->mutable_raw_output_contents()->RemoveLast();
  return Status();
}

}  // namespace

// ModelInfer's reactor: a client that cancels (or goes away) cancels the queued request.
class InferReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit InferReactor(std::shared_ptr<CancelToken> cancel) : cancel_(std::move(cancel)) {}
  void OnCancel() override { cancel_->cancel(); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<CancelToken> cancel_;
};

// ModelInfer runs on gRPC's callback API: no thread waits for a request's batch. The other RPCs
// are synchronous (each runs on a thread of the server's pool until it returns).
using InferenceServiceBase = inference::GRPCInferenceService::WithCallbackMethod_ModelInfer<
    inference::GRPCInferenceService::Service>;

class InferenceService final : public InferenceServiceBase {
 public:
  InferenceService(InferenceServer& server, std::string token)
      : server_(server),
        token_(std::move(token)),
        responders_(std::clamp(std::thread::hardware_concurrency() / 2, 2u, 16u)) {}
  ~InferenceService() override { responders_.join(); }

  grpc::Status ServerLive(grpc::ServerContext* ctx, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    res->set_live(server_.live());
    return grpc::Status::OK;
  }
  grpc::Status ServerReady(grpc::ServerContext* ctx, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    res->set_ready(server_.ready());
    return grpc::Status::OK;
  }
  grpc::Status ModelReady(grpc::ServerContext* ctx, const inference::ModelReadyRequest* req,
                          inference::ModelReadyResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    res->set_ready(server_.ready() && server_.model(req->name(), req->version()).ok());
    return grpc::Status::OK;
  }
  grpc::Status ServerMetadata(grpc::ServerContext* ctx, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    *res = server_.metadata();
    return grpc::Status::OK;
  }
  grpc::Status ModelMetadata(grpc::ServerContext* ctx, const inference::ModelMetadataRequest* req,
                             inference::ModelMetadataResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    auto m = server_.model(req->name(), req->version());
    if (!m.ok()) return to_grpc(m.status());
    *res = (*m)->metadata();
    return grpc::Status::OK;
  }
  grpc::Status ModelConfig(grpc::ServerContext* ctx, const inference::ModelConfigRequest* req,
                           inference::ModelConfigResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    auto m = server_.model(req->name(), req->version());
    if (!m.ok()) return to_grpc(m.status());
    *res->mutable_config() = (*m)->config();
    return grpc::Status::OK;
  }
  grpc::Status ModelStatistics(grpc::ServerContext* ctx,
                               const inference::ModelStatisticsRequest* req,
                               inference::ModelStatisticsResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    auto s = server_.statistics(req->name(), req->version());
    if (!s.ok()) return to_grpc(s.status());
    *res = std::move(*s);
    return grpc::Status::OK;
  }
  grpc::Status RepositoryIndex(grpc::ServerContext* ctx,
                               const inference::RepositoryIndexRequest* req,
                               inference::RepositoryIndexResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    *res = server_.index(req->ready());
    return grpc::Status::OK;
  }
  grpc::Status RepositoryModelLoad(grpc::ServerContext* ctx,
                                   const inference::RepositoryModelLoadRequest* req,
                                   inference::RepositoryModelLoadResponse*) override {
    if (!authorized(ctx)) return unauthenticated();
    return to_grpc(server_.load(req->model_name()));
  }
  grpc::Status RepositoryModelUnload(grpc::ServerContext* ctx,
                                     const inference::RepositoryModelUnloadRequest* req,
                                     inference::RepositoryModelUnloadResponse*) override {
    if (!authorized(ctx)) return unauthenticated();
    return to_grpc(server_.unload(req->model_name()));
  }

  grpc::Status SystemSharedMemoryStatus(grpc::ServerContext* ctx,
                                        const inference::SystemSharedMemoryStatusRequest* req,
                                        inference::SystemSharedMemoryStatusResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    auto regions = server_.shared_memory().status(req->name());
    if (!regions.ok()) return to_grpc(regions.status());
    for (const SharedMemoryRegion& region : *regions) {
      auto& s = (*res->mutable_regions())[region.name];
      s.set_name(region.name);
      s.set_key(region.key);
      s.set_offset(region.offset);
      s.set_byte_size(region.byte_size);
    }
    return grpc::Status::OK;
  }
  grpc::Status SystemSharedMemoryRegister(grpc::ServerContext* ctx,
                                          const inference::SystemSharedMemoryRegisterRequest* req,
                                          inference::SystemSharedMemoryRegisterResponse*) override {
    if (!authorized(ctx)) return unauthenticated();
    return to_grpc(server_.shared_memory().register_region(
        {req->name(), req->key(), req->offset(), req->byte_size()}));
  }
  grpc::Status SystemSharedMemoryUnregister(
      grpc::ServerContext* ctx, const inference::SystemSharedMemoryUnregisterRequest* req,
      inference::SystemSharedMemoryUnregisterResponse*) override {
    if (!authorized(ctx)) return unauthenticated();
    return to_grpc(
        server_.shared_memory().unregister(req->name(), SharedMemoryManager::Kind::kSystem));
  }

  grpc::Status CudaSharedMemoryStatus(grpc::ServerContext* ctx,
                                      const inference::CudaSharedMemoryStatusRequest* req,
                                      inference::CudaSharedMemoryStatusResponse* res) override {
    if (!authorized(ctx)) return unauthenticated();
    auto regions = server_.shared_memory().cuda_status(req->name());
    if (!regions.ok()) return to_grpc(regions.status());
    for (const CudaSharedMemoryRegion& region : *regions) {
      auto& s = (*res->mutable_regions())[region.name];
      s.set_name(region.name);
      s.set_device_id(static_cast<uint64_t>(region.device_id));
      s.set_byte_size(region.byte_size);
    }
    return grpc::Status::OK;
  }
  grpc::Status CudaSharedMemoryRegister(grpc::ServerContext* ctx,
                                        const inference::CudaSharedMemoryRegisterRequest* req,
                                        inference::CudaSharedMemoryRegisterResponse*) override {
    if (!authorized(ctx)) return unauthenticated();
    return to_grpc(server_.shared_memory().register_cuda_region(
        {req->name(), req->raw_handle(), req->device_id(), req->byte_size()}));
  }
  grpc::Status CudaSharedMemoryUnregister(grpc::ServerContext* ctx,
                                          const inference::CudaSharedMemoryUnregisterRequest* req,
                                          inference::CudaSharedMemoryUnregisterResponse*) override {
    if (!authorized(ctx)) return unauthenticated();
    return to_grpc(
        server_.shared_memory().unregister(req->name(), SharedMemoryManager::Kind::kCuda));
  }

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* res) override {
    auto cancel = std::make_shared<CancelToken>();
    auto* reactor = new InferReactor(cancel);
    if (!authorized(ctx)) {
      reactor->Finish(unauthenticated());
      return reactor;
    }
    StatusOr<DecodedRequest> decoded = from_proto(*req, server_.shared_memory());
    if (!decoded.ok()) {
      reactor->Finish(to_grpc(decoded.status()));
      return reactor;
    }
    auto shm_outputs =
        std::make_shared<std::map<std::string, SharedMemoryRef>>(std::move(decoded->shm_outputs));
    InferRequest r = std::move(decoded->request);
    r.cancel = cancel;
    // Small responses are written on the thread that finished the batch (one thread hand-off
    // less per request); large ones and those that copy into shared memory on the responders'
    // pool, so that the copies (MBs for raw outputs) do not hold up the instance's next batch.
    server_.infer(std::move(r), [this, reactor, res, shm_outputs](StatusOr<InferResponse> out) {
      size_t bytes = 0;
      if (out.ok())
        for (const NamedTensor& t : out->outputs) bytes += t.tensor.nbytes();
      const bool inline_response = shm_outputs->empty() && bytes <= kInlineResponseBytes;
      auto respond = [this, reactor, res, shm_outputs, out = std::move(out)] {
        reactor->Finish(out.ok()
                            ? to_grpc(to_proto(*out, *shm_outputs, server_.shared_memory(), res))
                            : to_grpc(out.status()));
      };
      if (inline_response) {
        respond();
      } else {
        boost::asio::post(responders_, std::move(respond));
      }
    });
    return reactor;
  }

  grpc::Status ModelStreamInfer(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<inference::ModelStreamInferResponse, inference::ModelInferRequest>*
          stream) override {
    if (!authorized(ctx)) return unauthenticated();
    inference::ModelInferRequest req;
    while (stream->Read(&req)) {
      inference::ModelStreamInferResponse res;
      std::map<std::string, SharedMemoryRef> shm_outputs;
      StatusOr<InferResponse> r = run(ctx, req, &shm_outputs);
      Status status = r.status();
      if (r.ok())
        status = to_proto(*r, shm_outputs, server_.shared_memory(), res.mutable_infer_response());
      if (!status.ok()) {
        res.Clear();
        res.set_error_message(status.to_string());
        res.mutable_infer_response()->set_id(req.id());
        res.mutable_infer_response()->set_model_name(req.model_name());
      }
      if (!stream->Write(res)) break;
    }
    return grpc::Status::OK;
  }

 private:
  bool authorized(const grpc::ServerContextBase* ctx) const {
    if (token_.empty()) return true;
    auto it = ctx->client_metadata().find("authorization");
    if (it == ctx->client_metadata().end()) return false;
    return constant_time_equal(std::string_view(it->second.data(), it->second.size()),
                               "Bearer " + token_);
  }
  static grpc::Status unauthenticated() {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong bearer token");
  }

  // Queues the request and waits for it; a cancelled RPC cancels the request.
  StatusOr<InferResponse> run(grpc::ServerContext* ctx, const inference::ModelInferRequest& req,
                              std::map<std::string, SharedMemoryRef>* shm_outputs) {
    KS_ASSIGN_OR_RETURN(DecodedRequest decoded, from_proto(req, server_.shared_memory()));
    *shm_outputs = std::move(decoded.shm_outputs);
    InferRequest r = std::move(decoded.request);
    auto cancel = std::make_shared<CancelToken>();
    r.cancel = cancel;
    auto promise = std::make_shared<std::promise<StatusOr<InferResponse>>>();
    auto future = promise->get_future();
    server_.infer(std::move(r),
                  [promise](StatusOr<InferResponse> res) { promise->set_value(std::move(res)); });
    while (future.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready)
      if (ctx->IsCancelled()) cancel->cancel();
    return future.get();
  }

  // Responses up to this size are written on the thread that finished the batch.
  static constexpr size_t kInlineResponseBytes = 64 << 10;

  InferenceServer& server_;
  std::string token_;
  boost::asio::thread_pool responders_;
};

// grpc.health.v1: SERVING while the server is ready.
class HealthService final : public grpc::health::v1::Health::Service {
 public:
  explicit HealthService(InferenceServer& server) : server_(server) {}

  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* res) override {
    if (!req->service().empty() && req->service() != "inference.GRPCInferenceService")
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service");
    res->set_status(server_.ready() ? grpc::health::v1::HealthCheckResponse::SERVING
                                    : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    return grpc::Status::OK;
  }

  grpc::Status Watch(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override {
    grpc::health::v1::HealthCheckResponse res;
    if (!req->service().empty() && req->service() != "inference.GRPCInferenceService") {
      res.set_status(grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN);
      writer->Write(res);
      return grpc::Status::OK;
    }
    int last = -1;
    while (!ctx->IsCancelled()) {
      int now = server_.ready() ? 1 : 2;
      if (now != last) {
        res.set_status(static_cast<grpc::health::v1::HealthCheckResponse::ServingStatus>(now));
        if (!writer->Write(res)) break;
        last = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return grpc::Status::OK;
  }

 private:
  InferenceServer& server_;
};

struct GrpcFrontend::Impl {
  std::unique_ptr<InferenceService> inference;
  std::unique_ptr<HealthService> health;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool stopped = false;
};

GrpcFrontend::GrpcFrontend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<GrpcFrontend>> GrpcFrontend::start(InferenceServer& server,
                                                            const GrpcOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->inference = std::make_unique<InferenceService>(server, options.auth_token);
  impl->health = std::make_unique<HealthService>(server);
  grpc::ServerBuilder builder;
  std::string address = options.address.find(':') != std::string::npos
                            ? fmt::format("[{}]:{}", options.address, options.port)
                            : fmt::format("{}:{}", options.address, options.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl->port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.SetSyncServerOption(grpc::ServerBuilder::MAX_POLLERS,
                              options.max_pollers > 0 ? options.max_pollers : 64);
  builder.RegisterService(impl->inference.get());
  builder.RegisterService(impl->health.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) return unavailable("cannot listen for gRPC on {}", address);
  return std::unique_ptr<GrpcFrontend>(new GrpcFrontend(std::move(impl)));
}

GrpcFrontend::~GrpcFrontend() { shutdown(std::chrono::system_clock::now()); }

int GrpcFrontend::port() const { return impl_->port; }

void GrpcFrontend::shutdown(std::chrono::system_clock::time_point deadline) {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->Shutdown(deadline);
  impl_->server->Wait();
}

}  // namespace kestrel::serve
