// A small fake KServe v2 server for the bench's end-to-end tests: HTTP/1.1 (Boost.Beast, a thread
// per connection) and gRPC (inference.GRPCInferenceService), one model "fake" with an FP32 input
// "x" of shape [-1, 4]. /infer answers after --service-us; /detect answers with the labels of the
// image it was sent (from --images and --labels), so mAP over them is YOLOv5's perfect 0.995;
// /stats counts like Triton (queue, compute input/infer/output); --fail-every N fails every Nth
// inference.
//
//   fake_kserve_server --http-port 0 --grpc-port 0 --port-file ports.txt [--images D --labels D]
//
// With port 0 the system picks; the ports are written to --port-file as "HTTP GRPC".
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "kestrel/base/file.h"
#include "kestrel/bench/accuracy.h"
#include "kestrel/protocol/grpc_service.grpc.pb.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using kestrel::bench::Box;

struct Options {
  int http_port = 0, grpc_port = 0;
  std::string port_file, images, labels;
  int service_us = 500;
  int fail_every = 0;
  int startup_ms = 0;
  // gRPC's synchronous server: completion queues and the most threads polling them. gRPC's own
  // defaults (1 and 2) make the server, not the load generator, the limit of the bench's
  // overhead test (tests/bench/overhead.sh).
  int grpc_cqs = 1, grpc_max_pollers = 64;
  bool grpc_callback = false;
};

struct State {
  Options options;
  std::atomic<int64_t> requests{0}, success{0}, fail{0}, compute_ns{0};
  std::map<std::string, std::string> answers;  // image bytes -> /detect answer
};

std::string metadata_json() {
  return R"({"name":"fake","versions":["1"],"platform":"fake",)"
         R"("inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],)"
         R"("outputs":[{"name":"y","datatype":"FP32","shape":[-1,4]}]})";
}

std::string stats_json(const State& s) {
  const int64_t n = s.success, ns = s.compute_ns;
  return fmt::format(
      R"({{"model_stats":[{{"name":"fake","version":"1","inference_count":{0},)"
      R"("execution_count":{0},"inference_stats":{{"success":{{"count":{0},"ns":{1}}},)"
      R"("fail":{{"count":{2},"ns":0}},"queue":{{"count":{0},"ns":{3}}},)"
      R"("compute_input":{{"count":{0},"ns":{4}}},"compute_infer":{{"count":{0},"ns":{5}}},)"
      R"("compute_output":{{"count":{0},"ns":{4}}}}}}}]}})",
      n, ns + n * 20000, s.fail.load(), n * 10000, n * 5000, ns - 2 * n * 5000);
}

// Runs one inference's worth of "work"; false when this one is to fail.
bool infer(State& s) {
  const int64_t k = ++s.requests;
  if (s.options.service_us > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(s.options.service_us));
  }
  if (s.options.fail_every > 0 && k % s.options.fail_every == 0) {
    ++s.fail;
    return false;
  }
  ++s.success;
  s.compute_ns += s.options.service_us * 1000LL;
  return true;
}

http::response<http::string_body> handle(State& s, const http::request<http::string_body>& req) {
  http::response<http::string_body> res(http::status::ok, req.version());
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  std::string target(req.target());
  target = target.substr(0, target.find('?'));  // /detect takes thresholds in the query
  auto error = [&](http::status code, std::string message) {
    res.result(code);
    res.body() = fmt::format(R"({{"error":"{}"}})", message);
  };
  if (target == "/v2/health/ready" || target == "/v2/health/live") {
  } else if (target == "/v2/models/fake") {
    res.body() = metadata_json();
  } else if (target == "/v2/models/fake/stats") {
    res.body() = stats_json(s);
  } else if (target == "/v2/models/fake/infer" && req.method() == http::verb::post) {
    const auto header = req.find("Inference-Header-Content-Length");
    const bool binary = header != req.end();
    const size_t json_size = binary ? std::stoul(std::string(header->value())) : req.body().size();
    // Binary: a 16-byte-per-row FP32 tensor follows the header.
    if (json_size > req.body().size() || req.body().find("\"x\"") == std::string::npos ||
        (binary && (req.body().size() - json_size) % 16 != 0)) {
      error(http::status::bad_request, "malformed inference request");
    } else if (!infer(s)) {
      error(http::status::service_unavailable, "injected failure");
    } else {
      res.body() = R"({"model_name":"fake","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],)"
                   R"("data":[0,0,0,0]}]})";
    }
  } else if (target == "/v2/models/fake/detect" && req.method() == http::verb::post) {
    const auto it = s.answers.find(req.body());
    if (it == s.answers.end()) {
      error(http::status::bad_request, "unknown image");
    } else if (!infer(s)) {
      error(http::status::service_unavailable, "injected failure");
    } else {
      res.body() = it->second;
    }
  } else {
    error(http::status::not_found, "no such endpoint " + target);
  }
  res.prepare_payload();
  return res;
}

void serve_connection(State& s, tcp::socket socket) {
  beast::flat_buffer buffer;
  beast::error_code ec;
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(uint64_t{1} << 30);
    http::read(socket, buffer, parser, ec);
    if (ec) break;
    http::request<http::string_body> req = parser.release();
    http::response<http::string_body> res = handle(s, req);
    http::write(socket, res, ec);
    if (ec || !res.keep_alive()) break;
  }
  socket.shutdown(tcp::socket::shutdown_send, ec);
}

class GrpcService : public inference::GRPCInferenceService::Service {
 public:
  explicit GrpcService(State* s = nullptr) : s_(s) {}
  void set_state(State* s) { s_ = s; }
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* r) override {
    r->set_ready(true);
    return grpc::Status::OK;
  }
  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* q,
                             inference::ModelMetadataResponse* r) override {
    if (q->name() != "fake") return {grpc::StatusCode::NOT_FOUND, "no model " + q->name()};
    r->set_name("fake");
    r->add_versions("1");
    auto* in = r->add_inputs();
    in->set_name("x");
    in->set_datatype("FP32");
    in->add_shape(-1);
    in->add_shape(4);
    return grpc::Status::OK;
  }
  grpc::Status ModelStatistics(grpc::ServerContext*, const inference::ModelStatisticsRequest*,
                               inference::ModelStatisticsResponse* r) override {
    auto* m = r->add_model_stats();
    m->set_name("fake");
    const uint64_t n = s_->success, ns = s_->compute_ns;
    m->set_inference_count(n);
    m->mutable_inference_stats()->mutable_success()->set_count(n);
    m->mutable_inference_stats()->mutable_success()->set_ns(ns);
    m->mutable_inference_stats()->mutable_queue()->set_count(n);
    m->mutable_inference_stats()->mutable_queue()->set_ns(n * 10000);
    m->mutable_inference_stats()->mutable_compute_infer()->set_count(n);
    m->mutable_inference_stats()->mutable_compute_infer()->set_ns(ns);
    return grpc::Status::OK;
  }
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* q,
                          inference::ModelInferResponse* r) override {
    return answer(q, r);
  }

 protected:
  grpc::Status answer(const inference::ModelInferRequest* q, inference::ModelInferResponse* r) {
    if (q->inputs_size() != 1 || q->raw_input_contents_size() != 1 ||
        q->raw_input_contents(0).size() % 16 != 0) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "malformed inference request"};
    }
    if (!infer(*s_)) return {grpc::StatusCode::UNAVAILABLE, "injected failure"};
    r->set_model_name("fake");
    r->add_raw_output_contents(std::string(16, '\0'));
    return grpc::Status::OK;
  }

 private:
  State* s_;
};

// --grpc-callback: ModelInfer on gRPC's callback API (as kestrel serve has it), answered in the
// handler; to tell that API's cost from the synchronous one's.
class CallbackGrpcService final
    : public inference::GRPCInferenceService::WithCallbackMethod_ModelInfer<GrpcService> {
 public:
  explicit CallbackGrpcService(State& s) { set_state(&s); }
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* q,
                                       inference::ModelInferResponse* r) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(answer(q, r));
    return reactor;
  }
};

// /detect answers for every image of --images: its labels in pixels, score 0.9.
void load_answers(State& s) {
  if (s.options.images.empty()) return;
  for (const auto& e : std::filesystem::directory_iterator(s.options.images)) {
    auto bytes = kestrel::read_file(e.path().string());
    if (!bytes.ok()) continue;
    auto size = kestrel::bench::image_size(*bytes);
    if (!size.ok()) continue;
    const auto label_path =
        std::filesystem::path(s.options.labels) / (e.path().stem().string() + ".txt");
    std::vector<Box> labels;
    if (auto text = kestrel::read_file(label_path.string()); text.ok()) {
      labels = *kestrel::bench::parse_yolo_label_text(*text, size->first, size->second);
    }
    std::string json = R"({"model_name":"fake","detections":[)";
    for (size_t i = 0; i < labels.size(); ++i) {
      const Box& b = labels[i];
      json += fmt::format(R"({}{{"box":[{},{},{},{}],"score":0.9,"class_id":{}}})", i ? "," : "",
                          b.x1, b.y1, b.x2, b.y2, b.class_id);
    }
    json += "]}";
    s.answers[*bytes] = json;
  }
}

}  // namespace

int main(int argc, char** argv) {
  State state;
  Options& o = state.options;
  CLI::App app{"Fake KServe v2 server for kestrel bench's tests"};
  app.add_option("--http-port", o.http_port);
  app.add_option("--grpc-port", o.grpc_port);
  app.add_option("--port-file", o.port_file);
  app.add_option("--images", o.images);
  app.add_option("--labels", o.labels);
  app.add_option("--service-us", o.service_us);
  app.add_option("--fail-every", o.fail_every);
  app.add_option("--startup-ms", o.startup_ms, "Sleep before listening (cold-start tests)");
  app.add_option("--grpc-cqs", o.grpc_cqs, "gRPC completion queues");
  app.add_option("--grpc-max-pollers", o.grpc_max_pollers, "gRPC polling threads at most");
  app.add_flag("--grpc-callback", o.grpc_callback, "ModelInfer on gRPC's callback API");
  CLI11_PARSE(app, argc, argv);
  std::this_thread::sleep_for(std::chrono::milliseconds(o.startup_ms));
  load_answers(state);

  GrpcService sync_service(&state);
  CallbackGrpcService callback_service(state);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(fmt::format("127.0.0.1:{}", o.grpc_port),
                           grpc::InsecureServerCredentials(), &grpc_port);
  if (o.grpc_callback) {
    builder.RegisterService(&callback_service);
  } else {
    builder.RegisterService(&sync_service);
  }
  builder.SetSyncServerOption(grpc::ServerBuilder::NUM_CQS, o.grpc_cqs);
  builder.SetSyncServerOption(grpc::ServerBuilder::MAX_POLLERS, o.grpc_max_pollers);
  std::unique_ptr<grpc::Server> grpc_frontend = builder.BuildAndStart();

  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), o.http_port));
  if (!o.port_file.empty()) {
    std::ofstream(o.port_file + ".tmp")
        << acceptor.local_endpoint().port() << " " << grpc_port << "\n";
    std::filesystem::rename(o.port_file + ".tmp", o.port_file);
  }
  while (true) {
    tcp::socket socket(io);
    beast::error_code ec;
    acceptor.accept(socket, ec);
    if (ec) continue;
    socket.set_option(tcp::no_delay(true), ec);
    std::thread(serve_connection, std::ref(state), std::move(socket)).detach();
  }
}
