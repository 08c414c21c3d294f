// `kestrel serve`: the inference server (KServe v2 over HTTP and gRPC, Prometheus metrics), with
// tritonserver's flag names. Every flag also reads a KESTREL_* environment variable
// (--http-port <- KESTREL_HTTP_PORT, ...).
//
// Shutdown on SIGINT/SIGTERM: the server turns not-ready, stops accepting connections, lets the
// requests in flight finish (up to --exit-timeout-secs), drains the model queues and exits 0.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "kestrel/base/logging.h"
#include "kestrel/cli/commands.h"
#include "kestrel/serve/core/inference_server.h"
#include "kestrel/serve/grpc/grpc_frontend.h"
#include "kestrel/serve/http/http_api.h"
#include "kestrel/serve/http/http_server.h"

namespace kestrel::cli {
namespace {

// $XDG_CACHE_HOME/kestrel/engines, else ~/.cache/kestrel/engines; empty without either.
std::string default_engine_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::string(xdg) + "/kestrel/engines";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.cache/kestrel/engines";
  return "";
}

struct ServeOptions {
  std::string model_repository;
  std::vector<std::string> models;
  int http_port = 8000;
  int grpc_port = 8001;
  int metrics_port = 8002;
  std::string address = "127.0.0.1";
  std::string control_mode = "none";
  std::vector<std::string> load_models;
  int exit_timeout_secs = 30;
  int log_verbose = 0;
  std::string backend = "auto";
  std::string engine_cache_dir = default_engine_cache_dir();
  std::string auth_token;
  uint64_t max_body_mb = 64;
  int http_threads = 4;
  int grpc_max_pollers = 0;
  int http_read_timeout_secs = 60;
  int64_t max_image_pixels = int64_t{64} << 20;
  bool allow_client_shm = false;
};

Status serve(const ServeOptions& o) {
  if (o.log_verbose > 0) set_log_verbosity(1 + o.log_verbose);
  // Signals are taken synchronously by a waiting thread, so block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  serve::ServerOptions server_options;
  server_options.model_repository = o.model_repository;
  server_options.model_files = o.models;
  if (o.control_mode == "explicit")
    server_options.control_mode = serve::ControlMode::kExplicit;
  else if (o.control_mode != "none")
    return invalid_argument("--model-control-mode must be none or explicit, got '{}'",
                            o.control_mode);
  server_options.startup_models = o.load_models;
  server_options.allow_client_shm = o.allow_client_shm;
  server_options.load.backend = o.backend;
  if (o.max_image_pixels < 1) return invalid_argument("--max-image-pixels must be at least 1");
  server_options.load.max_image_pixels = o.max_image_pixels;
  if (o.engine_cache_dir != "none") server_options.load.engine_cache_dir = o.engine_cache_dir;
  KS_ASSIGN_OR_RETURN(std::unique_ptr<serve::InferenceServer> server,
                      serve::InferenceServer::create(server_options));

  serve::HttpApiOptions api_options;
  api_options.auth_token = o.auth_token;
  serve::HttpApi api(*server, api_options);
  serve::HttpServerOptions http;
  http.address = o.address;
  http.port = o.http_port;
  http.body_limit = o.max_body_mb << 20;
  http.threads = o.http_threads;
  http.read_timeout = std::chrono::seconds(o.http_read_timeout_secs);
  KS_ASSIGN_OR_RETURN(
      auto http_server,
      serve::HttpServer::start(http, [&api](serve::HttpRequest&& r, serve::Responder respond,
                                            std::shared_ptr<serve::CancelToken> cancel) {
        api.handle(std::move(r), std::move(respond), std::move(cancel));
      }));
  serve::HttpServerOptions metrics = http;
  metrics.port = o.metrics_port;
  metrics.threads = 1;
  KS_ASSIGN_OR_RETURN(
      auto metrics_server,
      serve::HttpServer::start(metrics, [&api](serve::HttpRequest&& r, serve::Responder respond,
                                               std::shared_ptr<serve::CancelToken>) {
        api.handle_metrics(std::move(r), std::move(respond));
      }));
  serve::GrpcOptions grpc_options;
  grpc_options.max_pollers = o.grpc_max_pollers;
  grpc_options.address = o.address;
  grpc_options.port = o.grpc_port;
  grpc_options.auth_token = o.auth_token;
  KS_ASSIGN_OR_RETURN(auto grpc, serve::GrpcFrontend::start(*server, grpc_options));
  log::info("kestrel serve READY: HTTP {}:{}, gRPC {}:{}, metrics http://{}:{}/metrics", o.address,
            http_server->port(), o.address, grpc->port(), o.address, metrics_server->port());

  int sig = 0;
  sigwait(&signals, &sig);
  log::info("received {}, shutting down (waiting up to {} s for requests in flight)",
            sig == SIGINT ? "SIGINT" : "SIGTERM", o.exit_timeout_secs);
  server->begin_shutdown();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.exit_timeout_secs);
  http_server->stop_accepting();
  std::thread grpc_stop([&] {
    grpc->shutdown(std::chrono::system_clock::now() + std::chrono::seconds(o.exit_timeout_secs));
  });
  bool idle = http_server->wait_idle(deadline);
  grpc_stop.join();
  server->shutdown();  // drains the queues: requests still queued complete
  api.finish_responses();
  http_server->stop();
  metrics_server->stop();
  if (!idle) log::warn("exit timeout reached with HTTP requests still in flight");
  log::info("kestrel serve stopped");
  return Status();
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd =
      app.add_subcommand("serve", "Serve models over KServe v2 HTTP/gRPC (tritonserver)");
  cmd->add_option(
         "--model-repository", o->model_repository,
         "Triton-layout repository: <model>/config.pbtxt, <model>/<version>/model.onnx|.kplan")
      ->envname("KESTREL_MODEL_REPOSITORY");
  cmd->add_option("--model", o->models,
                  "Serve this ONNX or .kplan file as model <file stem> (repeatable)")
      ->envname("KESTREL_MODEL");
  cmd->add_option("--http-port", o->http_port, "HTTP port (0: any free port)")
      ->envname("KESTREL_HTTP_PORT")
      ->capture_default_str();
  cmd->add_option("--grpc-port", o->grpc_port, "gRPC port (0: any free port)")
      ->envname("KESTREL_GRPC_PORT")
      ->capture_default_str();
  cmd->add_option("--metrics-port", o->metrics_port, "Prometheus metrics port (0: any free port)")
      ->envname("KESTREL_METRICS_PORT")
      ->capture_default_str();
  cmd->add_option("--address", o->address, "Address to listen on (0.0.0.0 opens it to the network)")
      ->envname("KESTREL_ADDRESS")
      ->capture_default_str();
  cmd->add_option("--model-control-mode", o->control_mode, "none or explicit")
      ->envname("KESTREL_MODEL_CONTROL_MODE")
      ->capture_default_str();
  cmd->add_option("--load-model", o->load_models, "explicit mode: load at start (\"*\": all)")
      ->envname("KESTREL_LOAD_MODEL");
  cmd->add_option("--exit-timeout-secs", o->exit_timeout_secs,
                  "On SIGTERM, wait this long for requests in flight")
      ->envname("KESTREL_EXIT_TIMEOUT_SECS")
      ->capture_default_str();
  cmd->add_option("--log-verbose", o->log_verbose, "Verbose logging level (0: off)")
      ->envname("KESTREL_LOG_VERBOSE");
  cmd->add_option("--backend", o->backend, "Engine backend: auto, cpu or cuda")
      ->envname("KESTREL_BACKEND")
      ->capture_default_str();
  cmd->add_option("--engine-cache-dir", o->engine_cache_dir,
                  "Where engines built from ONNX models are cached (\"none\": no cache)")
      ->envname("KESTREL_ENGINE_CACHE_DIR")
      ->capture_default_str();
  cmd->add_option("--auth-token", o->auth_token,
                  "Require 'Authorization: Bearer TOKEN' (prefer the environment variable)")
      ->envname("KESTREL_AUTH_TOKEN");
  cmd->add_option("--max-body-mb", o->max_body_mb, "Largest HTTP request body in MB")
      ->envname("KESTREL_MAX_BODY_MB")
      ->capture_default_str();
  cmd->add_option("--http-threads", o->http_threads, "HTTP I/O threads")
      ->envname("KESTREL_HTTP_THREADS")
      ->capture_default_str();
  cmd->add_option("--grpc-max-pollers", o->grpc_max_pollers,
                  "Threads kept waiting for synchronous gRPC RPCs (all but ModelInfer; 0: 64)")
      ->envname("KESTREL_GRPC_MAX_POLLERS")
      ->capture_default_str();
  cmd->add_option("--http-read-timeout-secs", o->http_read_timeout_secs,
                  "Close HTTP connections that send nothing for this long (slow or idle clients)")
      ->envname("KESTREL_HTTP_READ_TIMEOUT_SECS")
      ->capture_default_str();
  cmd->add_option("--max-image-pixels", o->max_image_pixels,
                  "/detect refuses images declaring more pixels (width x height) than this")
      ->envname("KESTREL_MAX_IMAGE_PIXELS")
      ->capture_default_str();
  cmd->add_flag("--allow-client-shm", o->allow_client_shm,
                "Let clients register system shared memory for tensors (trusted local clients "
                "only: they choose what the server maps)")
      ->envname("KESTREL_ALLOW_CLIENT_SHM");
  cmd->callback([o] { exit_on_error(serve(*o)); });
}

}  // namespace kestrel::cli
