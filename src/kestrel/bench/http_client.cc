// The HTTP/1.1 KServe v2 client over Boost.Beast: one keep-alive connection per worker, blocking
// (or under a deadline with --timeout-ms), requests serialized once in prepare() (see client.h).
#include <fmt/format.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <mutex>

#include "kestrel/base/base64.h"
#include "kestrel/bench/client.h"
#include "kestrel/bench/kserve_json.h"
#include "kestrel/bench/shared_memory.h"
#include "kestrel/bench/wire.h"

namespace kestrel::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;

int64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

// A connection that reconnects when the server closed it between requests. Without a timeout its
// calls block; with one, each exchange runs as asynchronous operations on the connection's own
// io_context under a deadline (Asio's blocking calls ignore SO_RCVTIMEO: they poll without a
// limit when the socket says "try again").
class Socket {
 public:
  Socket(HostPort target, int64_t timeout_ms)
      : target_(std::move(target)), timeout_ms_(timeout_ms) {
    // Beast reads at most the buffer's free room per call (64 KiB at most): without room, a large
    // answer (tensors in binary) would come in many small reads.
    buffer_.reserve(64 * 1024);
  }

  // Sends `request` and reads the answer into `response`; the time of the write goes to
  // `write_ns`.
  Status exchange(const Request& request, http::response<http::string_body>& response,
                  int64_t* write_ns) {
    // A kept-alive connection may have been closed by the server since the last request: one
    // retry on a fresh connection tells that apart from a server that is down.
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = stream_.socket().is_open();
      if (!reused) KS_RETURN_IF_ERROR(open());
      const auto t0 = Clock::now();
      http::response_parser<http::string_body> parser;
      parser.body_limit(uint64_t{1} << 32);
      beast::error_code ec = timeout_ms_ > 0 ? exchange_with_deadline(request, parser, t0, write_ns)
                                             : exchange_blocking(request, parser, t0, write_ns);
      if (!ec) {
        response = parser.release();
        if (!response.keep_alive()) close();
        return Status();
      }
      close();
      if (ec == beast::error::timeout)
        return deadline_exceeded("{}: no answer within {} ms", target_.to_string(), timeout_ms_);
      if (!reused || attempt == 1) return unavailable("{}: {}", target_.to_string(), ec.message());
    }
    return internal_error("unreachable");
  }

 private:
  beast::error_code exchange_blocking(const Request& request,
                                      http::response_parser<http::string_body>& parser,
                                      Clock::time_point t0, int64_t* write_ns) {
    beast::error_code ec;
    http::write(stream_, request, ec);
    if (write_ns) *write_ns = ns_between(t0, Clock::now());
    if (!ec) http::read(stream_, buffer_, parser, ec);
    return ec;
  }

  // The write and the read together must finish within the timeout.
  beast::error_code exchange_with_deadline(const Request& request,
                                           http::response_parser<http::string_body>& parser,
                                           Clock::time_point t0, int64_t* write_ns) {
    beast::error_code result;
    stream_.expires_after(std::chrono::milliseconds(timeout_ms_));
    http::async_write(stream_, request, [&](beast::error_code ec, size_t) {
      if (write_ns) *write_ns = ns_between(t0, Clock::now());
      if (ec) {
        result = ec;
        return;
      }
      http::async_read(stream_, buffer_, parser,
                       [&](beast::error_code read_ec, size_t) { result = read_ec; });
    });
    io_.restart();
    io_.run();
    stream_.expires_never();
    return result;
  }

  Status open() {
    beast::error_code ec;
    tcp::resolver resolver(io_);
    const auto endpoints = resolver.resolve(target_.host, std::to_string(target_.port), ec);
    if (ec) return unavailable("cannot resolve {}: {}", target_.host, ec.message());
    if (timeout_ms_ > 0) {
      stream_.expires_after(std::chrono::milliseconds(timeout_ms_));
      stream_.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
      io_.restart();
      io_.run();
      stream_.expires_never();
    } else {
      stream_.connect(endpoints, ec);
    }
    if (ec == beast::error::timeout)
      return deadline_exceeded("cannot connect to {} within {} ms", target_.to_string(),
                               timeout_ms_);
    if (ec) return unavailable("cannot connect to {}: {}", target_.to_string(), ec.message());
    stream_.socket().set_option(tcp::no_delay(true), ec);
    buffer_.clear();
    return Status();
  }
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
    buffer_.clear();
  }

  HostPort target_;
  int64_t timeout_ms_;
  asio::io_context io_;
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
};

Status check_answer(const http::response<http::string_body>& response) {
  const int code = static_cast<int>(response.result_int());
  if (code >= 200 && code < 300) return Status();
  return Status(status_code_from_http(code),
                fmt::format("HTTP {}: {}", code, error_message_of(response.body())));
}

class HttpConnection : public Connection {
 public:
  HttpConnection(const ClientOptions& options, HostPort target,
                 std::shared_ptr<const std::vector<Request>> requests)
      : options_(options),
        socket_(std::move(target), options.timeout_ms),
        requests_(std::move(requests)) {}

  CallResult call(size_t index) override {
    CallResult r;
    const Request& request = (*requests_)[index % requests_->size()];
    http::response<http::string_body> response;
    r.status = socket_.exchange(request, response, &r.send_ns);
    if (!r.status.ok()) return r;
    const auto t0 = Clock::now();
    r.status = check_answer(response);
    if (options_.keep_bodies) r.body = std::move(response.body());
    r.recv_ns = ns_between(t0, Clock::now());
    return r;
  }

 private:
  const ClientOptions& options_;
  Socket socket_;
  std::shared_ptr<const std::vector<Request>> requests_;
};

class HttpClient : public Client {
 public:
  HttpClient(ClientOptions options, HostPort target)
      : options_(std::move(options)), target_(std::move(target)) {
    model_path_ = "/v2/models/" + options_.model;
    if (!options_.version.empty()) model_path_ += "/versions/" + options_.version;
  }

  Status server_ready() override {
    KS_ASSIGN_OR_RETURN(auto response, get("/v2/health/ready"));
    return check_answer(response);
  }

  StatusOr<ModelMetadata> model_metadata() override {
    KS_ASSIGN_OR_RETURN(auto response, get(model_path_));
    KS_RETURN_IF_ERROR(check_answer(response).with_context("model metadata"));
    return parse_model_metadata(response.body());
  }

  StatusOr<ServerStats> model_stats() override {
    KS_ASSIGN_OR_RETURN(auto response, get(model_path_ + "/stats"));
    KS_RETURN_IF_ERROR(check_answer(response).with_context("model statistics"));
    return parse_model_stats(response.body(), options_.model);
  }

  ~HttpClient() override {
    // The server maps the regions; unregister them before the objects go away.
    for (const auto& [region, cuda] : registered_) {
      (void)post(
          fmt::format("/v2/{}sharedmemory/region/{}/unregister", cuda ? "cuda" : "system", region),
          "");
    }
  }

  Status prepare(std::span<const Sample> samples) override {
    if (samples.empty()) return invalid_argument("nothing to send: no samples");
    if (options_.shared_memory != ClientOptions::SharedMemory::kNone)
      return prepare_shared_memory(samples);
    auto requests = std::make_shared<std::vector<Request>>();
    for (const Sample& s : samples) {
      Request req = new_request();
      if (!s.image.empty()) {
        req.target(model_path_ + "/detect" +
                   (options_.detect_query.empty() ? "" : "?" + options_.detect_query));
        req.set(http::field::content_type, "image/jpeg");
        req.body() = s.image;
      } else {
        req.target(model_path_ + "/infer");
        const bool binary = options_.tensor_format == TensorFormat::kBinary;
        KS_ASSIGN_OR_RETURN(std::string header, infer_request_json(s, binary));
        if (binary) {
          req.set("Inference-Header-Content-Length", std::to_string(header.size()));
          req.set(http::field::content_type, "application/octet-stream");
          for (const InputTensor& t : s.inputs) header += t.data;
        } else {
          req.set(http::field::content_type, "application/json");
        }
        req.body() = std::move(header);
      }
      req.prepare_payload();
      requests->push_back(std::move(req));
    }
    requests_ = std::move(requests);
    return Status();
  }

  StatusOr<std::unique_ptr<Connection>> connect() override {
    if (!requests_) return failed_precondition("connect() before prepare()");
    if (options_.shared_memory == ClientOptions::SharedMemory::kNone) {
      return std::unique_ptr<Connection>(new HttpConnection(options_, target_, requests_));
    }
    // Outputs are written concurrently: each connection has its own region for them.
    std::lock_guard lock(mu_);
    const std::string region = shm_region_name(fmt::format("out{}", next_connection_++));
    KS_ASSIGN_OR_RETURN(ShmOutputs outputs,
                        make_shm_outputs(output_sizes_, region, shm_place(options_)));
    KS_RETURN_IF_ERROR(register_region(region, *outputs.buffer));
    auto requests = std::make_shared<std::vector<Request>>();
    for (size_t k = 0; k < shm_samples_.size(); ++k) {
      Request req = new_request();
      req.target(model_path_ + "/infer");
      req.set(http::field::content_type, "application/json");
      req.body() = shm_infer_request_json(shm_samples_[k], input_shm_.refs[k], outputs.refs);
      req.prepare_payload();
      requests->push_back(std::move(req));
    }
    output_shm_.push_back(std::move(outputs.buffer));
    return std::unique_ptr<Connection>(new HttpConnection(options_, target_, std::move(requests)));
  }

 private:
  Request new_request() const {
    Request req;
    req.method(http::verb::post);
    req.version(11);
    req.set(http::field::host, target_.to_string());
    req.keep_alive(true);
    for (const auto& [name, value] : options_.headers) req.set(name, value);
    return req;
  }

  // Inputs written once into a registered region; the requests, which name each connection's
  // output region, are built by connect().
  Status prepare_shared_memory(std::span<const Sample> samples) {
    for (const Sample& s : samples) {
      if (!s.image.empty())
        return invalid_argument("--shared-memory system sends tensors, not images");
    }
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
    shm_samples_.clear();
    for (const Sample& s : samples) {
      Sample& copy = shm_samples_.emplace_back();
      for (const InputTensor& t : s.inputs)
        copy.inputs.push_back({t.name, t.datatype, t.shape, ""});
    }
    requests_ = std::make_shared<std::vector<Request>>();  // prepared: connect() builds them
    return Status();
  }

  Status register_region(const std::string& region, const ShmBuffer& buffer) {
    const std::string body =
        buffer.cuda()
            ? fmt::format("{{\"raw_handle\":{{\"b64\":\"{}\"}},\"device_id\":{},\"byte_size\":{}}}",
                          base64_encode(buffer.raw_handle()), buffer.device(), buffer.size())
            : fmt::format("{{\"key\":{},\"offset\":0,\"byte_size\":{}}}", json_quote(buffer.key()),
                          buffer.size());
    KS_ASSIGN_OR_RETURN(auto response, post(fmt::format("/v2/{}sharedmemory/region/{}/register",
                                                        buffer.cuda() ? "cuda" : "system", region),
                                            body));
    KS_RETURN_IF_ERROR(check_answer(response).with_context(
        "registering shared memory (does the server allow it?)"));
    registered_.push_back({region, buffer.cuda()});
    return Status();
  }

  StatusOr<http::response<http::string_body>> post(const std::string& path, std::string body) {
    Request req(http::verb::post, path, 11);
    req.set(http::field::host, target_.to_string());
    req.set(http::field::content_type, "application/json");
    req.keep_alive(false);
    for (const auto& [name, value] : options_.headers) req.set(name, value);
    req.body() = std::move(body);
    req.prepare_payload();
    Socket socket(target_, options_.timeout_ms > 0 ? options_.timeout_ms : 30000);
    http::response<http::string_body> response;
    KS_RETURN_IF_ERROR(socket.exchange(req, response, nullptr));
    return response;
  }

  StatusOr<http::response<http::string_body>> get(const std::string& path) {
    Request req(http::verb::get, path, 11);
    req.set(http::field::host, target_.to_string());
    req.keep_alive(false);
    for (const auto& [name, value] : options_.headers) req.set(name, value);
    Socket socket(target_, options_.timeout_ms > 0 ? options_.timeout_ms : 30000);
    http::response<http::string_body> response;
    KS_RETURN_IF_ERROR(socket.exchange(req, response, nullptr));
    return response;
  }

  ClientOptions options_;
  HostPort target_;
  std::string model_path_;
  std::shared_ptr<const std::vector<Request>> requests_;
  // --shared-memory system
  ShmInputs input_shm_;
  std::vector<Sample> shm_samples_;  // the samples' tensor names, types and shapes, no data
  std::vector<std::pair<std::string, int64_t>> output_sizes_;
  std::vector<std::unique_ptr<ShmBuffer>> output_shm_;    // one per connection
  std::vector<std::pair<std::string, bool>> registered_;  // region, whether in GPU memory
  std::mutex mu_;
  int next_connection_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<Client>> make_http_client(const ClientOptions& options) {
  if (options.model.empty()) return invalid_argument("no model name (-m)");
  KS_ASSIGN_OR_RETURN(HostPort target, parse_host_port(options.url, 8000));
  return std::unique_ptr<Client>(new HttpClient(options, std::move(target)));
}

}  // namespace kestrel::bench
