// The gRPC KServe v2 client (inference.GRPCInferenceService, from the protocol layer): calls on
// gRPC's callback API (Connection::start; call() waits for one), one channel (one HTTP/2
// connection) per connection, ModelInferRequest messages built once with raw_input_contents, or
// naming regions of system shared memory (see client.h).
#include <grpcpp/grpcpp.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "kestrel/bench/client.h"
#include "kestrel/bench/shared_memory.h"
#include "kestrel/bench/wire.h"
#include "kestrel/protocol/grpc_service.grpc.pb.h"

namespace kestrel::bench {
namespace {

using Clock = std::chrono::steady_clock;
using inference::GRPCInferenceService;

int64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

void add_headers(grpc::ClientContext& context, const ClientOptions& options) {
  for (const auto& [name, value] : options.headers) {
    std::string key = name;
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    context.AddMetadata(key, value);
  }
}

Status from_grpc(const grpc::Status& s) {
  if (s.ok()) return Status();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}

std::shared_ptr<grpc::Channel> open_channel(const std::string& target, int id) {
  grpc::ChannelArguments args;
  // A 640x640 FP32 image is more than gRPC's default 4 MB limit.
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // Distinct arguments and a local subchannel pool give each worker its own connection, as the
  // HTTP client does, instead of every worker multiplexing on one.
  args.SetInt("kestrel.bench.channel", id);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // gRPC backs off up to minutes between connection attempts; a server that is still starting
  // (--cold-start) would look seconds slower than it is.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

void set_shm_parameters(google::protobuf::Map<std::string, inference::InferParameter>* params,
                        const ShmTensorRef& ref) {
  (*params)["shared_memory_region"].set_string_param(ref.region);
  (*params)["shared_memory_offset"].set_int64_param(static_cast<int64_t>(ref.offset));
  (*params)["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(ref.byte_size));
}

class GrpcConnection : public Connection {
 public:
  GrpcConnection(std::shared_ptr<grpc::Channel> channel,
                 std::shared_ptr<const std::vector<inference::ModelInferRequest>> requests,
                 const ClientOptions& options)
      : stub_(GRPCInferenceService::NewStub(channel)),
        requests_(std::move(requests)),
        options_(options) {}

  bool asynchronous() const override { return true; }

  // The callback API with the next call started from the answer's callback: no thread of the
  // bench wakes per request (the thread-per-slot call() below costs a wake-up and a sleep on
  // each side of every request, about 100 us of CPU per call all told).
  void start(size_t index, CallDone done) override {
    const inference::ModelInferRequest& request = (*requests_)[index % requests_->size()];
    // The previous call's context stays alive until this one's answer: this may run inside its
    // callback, which gRPC has not finished with.
    previous_ = std::move(current_);
    current_ = std::make_unique<InFlight>();
    InFlight* call = current_.get();
    add_headers(call->context, options_);
    if (options_.timeout_ms > 0) {
      call->context.set_deadline(std::chrono::system_clock::now() +
                                 std::chrono::milliseconds(options_.timeout_ms));
    }
    stub_->async()->ModelInfer(&call->context, &request, &call->response,
                               [this, call, done = std::move(done)](grpc::Status status) {
                                 CallResult r;
                                 r.status = from_grpc(status);
                                 if (r.status.ok() && options_.keep_bodies) {
                                   const auto t0 = Clock::now();
                                   r.body = call->response.SerializeAsString();
                                   r.recv_ns = ns_between(t0, Clock::now());
                                 }
                                 done(std::move(r));
                               });
  }

  CallResult call(size_t index) override {
    CallResult r;
    const inference::ModelInferRequest& request = (*requests_)[index % requests_->size()];
    grpc::ClientContext context;
    add_headers(context, options_);
    if (options_.timeout_ms > 0) {
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(options_.timeout_ms));
    }
    inference::ModelInferResponse response;
    // The callback API, waited on here: gRPC's own threads do the I/O, which costs about half the
    // client CPU of the blocking API at the same rate (measured at ~55,000 requests/s on 16
    // cores). The send, the wait and the receive are one step to the caller, so send_ns and
    // recv_ns stay 0 and it all counts as network+server.
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    stub_->async()->ModelInfer(&context, &request, &response, [&](grpc::Status s) {
      std::lock_guard lock(mu);
      status = std::move(s);
      done = true;
      cv.notify_one();
    });
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done; });
    }
    r.status = from_grpc(status);
    if (r.status.ok() && options_.keep_bodies) {
      const auto t0 = Clock::now();
      r.body = response.SerializeAsString();
      r.recv_ns = ns_between(t0, Clock::now());
    }
    return r;
  }

 private:
  struct InFlight {
    grpc::ClientContext context;
    inference::ModelInferResponse response;
  };

  std::unique_ptr<GRPCInferenceService::Stub> stub_;
  std::shared_ptr<const std::vector<inference::ModelInferRequest>> requests_;
  const ClientOptions& options_;
  std::unique_ptr<InFlight> current_, previous_;  // start()'s calls
};

class GrpcClient : public Client {
 public:
  GrpcClient(ClientOptions options, std::string target)
      : options_(std::move(options)),
        target_(std::move(target)),
        control_(GRPCInferenceService::NewStub(open_channel(target_, -1))) {}

  ~GrpcClient() override {
    // The server maps the regions; unregister them before the objects go away.
    for (const auto& [region, cuda] : registered_) {
      grpc::ClientContext context;
      add_headers(context, options_);
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      if (cuda) {
        inference::CudaSharedMemoryUnregisterRequest request;
        request.set_name(region);
        inference::CudaSharedMemoryUnregisterResponse response;
        control_->CudaSharedMemoryUnregister(&context, request, &response);
      } else {
        inference::SystemSharedMemoryUnregisterRequest request;
        request.set_name(region);
        inference::SystemSharedMemoryUnregisterResponse response;
        control_->SystemSharedMemoryUnregister(&context, request, &response);
      }
    }
  }

  Status server_ready() override {
    grpc::ClientContext context;
    add_headers(context, options_);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::ServerReadyRequest request;
    inference::ServerReadyResponse response;
    const Status status = from_grpc(control_->ServerReady(&context, request, &response));
    if (status.code() == StatusCode::kUnavailable) {
      // A channel that failed to connect waits out gRPC's reconnect backoff before it tries
      // again; a fresh one tries at once, so a starting server is seen ready when it is.
      control_ = GRPCInferenceService::NewStub(open_channel(target_, --control_channel_));
    }
    KS_RETURN_IF_ERROR(status);
    if (!response.ready()) return unavailable("server at {} is not ready", target_);
    return Status();
  }

  StatusOr<ModelMetadata> model_metadata() override {
    grpc::ClientContext context;
    add_headers(context, options_);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    inference::ModelMetadataRequest request;
    request.set_name(options_.model);
    request.set_version(options_.version);
    inference::ModelMetadataResponse response;
    KS_RETURN_IF_ERROR(from_grpc(control_->ModelMetadata(&context, request, &response))
                           .with_context("model metadata"));
    ModelMetadata m;
    m.name = response.name();
    m.versions.assign(response.versions().begin(), response.versions().end());
    for (const auto& t : response.inputs()) {
      m.inputs.push_back({t.name(), t.datatype(), {t.shape().begin(), t.shape().end()}});
    }
    for (const auto& t : response.outputs()) {
      m.outputs.push_back({t.name(), t.datatype(), {t.shape().begin(), t.shape().end()}});
    }
    return m;
  }

  StatusOr<ServerStats> model_stats() override {
    grpc::ClientContext context;
    add_headers(context, options_);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    inference::ModelStatisticsRequest request;
    request.set_name(options_.model);
    request.set_version(options_.version);
    inference::ModelStatisticsResponse response;
    KS_RETURN_IF_ERROR(from_grpc(control_->ModelStatistics(&context, request, &response))
                           .with_context("model statistics"));
    ServerStats s;
    bool found = false;
    for (const inference::ModelStatistics& m : response.model_stats()) {
      if (m.name() != options_.model) continue;
      found = true;
      s.inference_count += static_cast<int64_t>(m.inference_count());
      s.execution_count += static_cast<int64_t>(m.execution_count());
      const inference::InferStatistics& st = m.inference_stats();
      auto add = [](const inference::StatisticDuration& d, int64_t& count, int64_t& ns) {
        count += static_cast<int64_t>(d.count());
        ns += static_cast<int64_t>(d.ns());
      };
      add(st.success(), s.success_count, s.success_ns);
      add(st.fail(), s.fail_count, s.fail_ns);
      add(st.queue(), s.queue_count, s.queue_ns);
      add(st.compute_input(), s.compute_input_count, s.compute_input_ns);
      add(st.compute_infer(), s.compute_infer_count, s.compute_infer_ns);
      add(st.compute_output(), s.compute_output_count, s.compute_output_ns);
    }
    if (!found) return not_found("model statistics have no entry for '{}'", options_.model);
    return s;
  }

  Status prepare(std::span<const Sample> samples) override {
    if (samples.empty()) return invalid_argument("nothing to send: no samples");
    auto requests = std::make_shared<std::vector<inference::ModelInferRequest>>();
    for (const Sample& s : samples) {
      if (!s.image.empty()) {
        return unimplemented(
            "KServe v2 gRPC has no /detect: send images over HTTP (-i http), or tensors");
      }
    }
    if (options_.shared_memory != ClientOptions::SharedMemory::kNone) {
      input_shm_ = ShmInputs();  // a second prepare(): the old object goes before the new one
      KS_ASSIGN_OR_RETURN(input_shm_,
                          write_shm_inputs(samples, shm_region_name("in"), shm_place(options_)));
      KS_RETURN_IF_ERROR(register_region(shm_region_name("in"), *input_shm_.buffer));
      KS_ASSIGN_OR_RETURN(ModelMetadata metadata, model_metadata());
      const int64_t batch = samples[0].inputs.empty() || samples[0].inputs[0].shape.empty()
                                ? 1
                                : samples[0].inputs[0].shape[0];
      KS_ASSIGN_OR_RETURN(output_sizes_,
                          shm_output_sizes(metadata, batch, options_.output_shared_memory_size));
    }
    for (size_t k = 0; k < samples.size(); ++k) {
      inference::ModelInferRequest request;
      request.set_model_name(options_.model);
      request.set_model_version(options_.version);
      for (size_t i = 0; i < samples[k].inputs.size(); ++i) {
        const InputTensor& t = samples[k].inputs[i];
        auto* input = request.add_inputs();
        input->set_name(t.name);
        input->set_datatype(t.datatype);
        for (int64_t d : t.shape) input->add_shape(d);
        if (input_shm_.buffer) {
          set_shm_parameters(input->mutable_parameters(), input_shm_.refs[k][i]);
        } else {
          request.add_raw_input_contents(t.data);
        }
      }
      requests->push_back(std::move(request));
    }
    requests_ = std::move(requests);
    return Status();
  }

  StatusOr<std::unique_ptr<Connection>> connect() override {
    if (!requests_) return failed_precondition("connect() before prepare()");
    std::lock_guard lock(mu_);
    const int index = next_channel_++;
    std::shared_ptr<grpc::Channel> channel;
    if (options_.grpc_channels <= 0) {
      channel = open_channel(target_, index);
    } else {
      if (channels_.size() < static_cast<size_t>(options_.grpc_channels)) {
        channels_.push_back(open_channel(target_, index));
      }
      channel = channels_[static_cast<size_t>(index % options_.grpc_channels)];
    }
    auto requests = requests_;
    if (options_.shared_memory != ClientOptions::SharedMemory::kNone) {
      // Outputs are written concurrently: each connection has its own region for them.
      const std::string region = shm_region_name(fmt::format("out{}", index));
      KS_ASSIGN_OR_RETURN(ShmOutputs outputs,
                          make_shm_outputs(output_sizes_, region, shm_place(options_)));
      KS_RETURN_IF_ERROR(register_region(region, *outputs.buffer));
      auto own = std::make_shared<std::vector<inference::ModelInferRequest>>(*requests_);
      for (inference::ModelInferRequest& request : *own) {
        for (const auto& [name, ref] : outputs.refs) {
          auto* output = request.add_outputs();
          output->set_name(name);
          set_shm_parameters(output->mutable_parameters(), ref);
        }
      }
      output_shm_.push_back(std::move(outputs.buffer));
      requests = std::move(own);
    }
    return std::unique_ptr<Connection>(new GrpcConnection(channel, std::move(requests), options_));
  }

 private:
  ClientOptions options_;
  std::string target_;
  std::unique_ptr<GRPCInferenceService::Stub> control_;
  int control_channel_ = -1;  // channel ids below 0 are the control channel's
  Status register_region(const std::string& name, const ShmBuffer& buffer) {
    grpc::ClientContext context;
    add_headers(context, options_);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status;
    if (buffer.cuda()) {
      inference::CudaSharedMemoryRegisterRequest request;
      request.set_name(name);
      request.set_raw_handle(buffer.raw_handle());
      request.set_device_id(buffer.device());
      request.set_byte_size(buffer.size());
      inference::CudaSharedMemoryRegisterResponse response;
      status = control_->CudaSharedMemoryRegister(&context, request, &response);
    } else {
      inference::SystemSharedMemoryRegisterRequest request;
      request.set_name(name);
      request.set_key(buffer.key());
      request.set_offset(0);
      request.set_byte_size(buffer.size());
      inference::SystemSharedMemoryRegisterResponse response;
      status = control_->SystemSharedMemoryRegister(&context, request, &response);
    }
    KS_RETURN_IF_ERROR(
        from_grpc(status).with_context("registering shared memory (does the server allow it?)"));
    registered_.push_back({name, buffer.cuda()});
    return Status();
  }

  std::shared_ptr<const std::vector<inference::ModelInferRequest>> requests_;
  ShmInputs input_shm_;
  std::vector<std::unique_ptr<ShmBuffer>> output_shm_;  // one per connection
  std::vector<std::pair<std::string, int64_t>> output_sizes_;
  std::vector<std::pair<std::string, bool>> registered_;  // region, whether in GPU memory
  std::mutex mu_;
  int next_channel_ = 0;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;  // when shared (grpc_channels > 0)
};

}  // namespace

StatusOr<std::unique_ptr<Client>> make_grpc_client(const ClientOptions& options) {
  if (options.model.empty()) return invalid_argument("no model name (-m)");
  KS_ASSIGN_OR_RETURN(HostPort target, parse_host_port(options.url, 8001));
  const std::string address = target.host.find(':') != std::string::npos
                                  ? "[" + target.host + "]:" + std::to_string(target.port)
                                  : target.to_string();
  return std::unique_ptr<Client>(new GrpcClient(options, address));
}

}  // namespace kestrel::bench
