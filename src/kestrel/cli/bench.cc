// `kestrel bench -m MODEL -u HOST:PORT ...`: the load generator against any KServe v2 server
// (Kestrel or Triton), with perf_analyzer's flags where they mean the same; `kestrel bench report
// OUT.html RUN.json...` overlays earlier runs in one HTML report.
#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "kestrel/base/file.h"
#include "kestrel/bench/accuracy.h"
#include "kestrel/bench/client.h"
#include "kestrel/bench/cold_start.h"
#include "kestrel/bench/inputs.h"
#include "kestrel/bench/load.h"
#include "kestrel/bench/report.h"
#include "kestrel/cli/commands.h"

namespace kestrel::cli {
namespace {

using namespace kestrel::bench;  // NOLINT: this file is the bench's front end

struct BenchOptions {
  std::string model, version, url, protocol = "http";
  int64_t batch = 1;
  std::string concurrency_range, request_rate_range, distribution = "poisson";
  std::vector<std::string> shapes, headers;
  std::string input_data = "random", tensor_format = "binary", images, labels;
  int64_t measurement_interval_ms = 5000;
  double stability = 10;
  int max_trials = 10;
  double percentile = -1;
  int max_threads = 16;
  int grpc_channels = 0;
  std::string shared_memory = "none";
  int shared_memory_device = 0;
  int64_t output_shared_memory_size = 0;
  uint64_t seed = 1;
  int64_t timeout_ms = 0;
  std::string csv, json, label;
  std::vector<std::string> report;  // OUT.html [RUN.json...]
  bool accuracy = false, cold_start = false, no_progress = false;
  double cold_start_timeout_s = 600;
  double score_threshold = -1, iou_threshold = -1;
  std::vector<std::string> server_command;
  std::string command_line;
};

// "start:end:step" (perf_analyzer's; the step adds) or "start:end:xF" (the step multiplies, for
// sweeps like 1:128:x2). "N" alone is N:N.
StatusOr<std::vector<double>> parse_range(const std::string& text, const char* flag) {
  std::vector<std::string> parts;
  size_t begin = 0;
  while (true) {
    const size_t colon = text.find(':', begin);
    parts.push_back(text.substr(begin, colon - begin));
    if (colon == std::string::npos) break;
    begin = colon + 1;
  }
  auto number = [&](std::string s, double& out) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size() && out > 0;
  };
  double start = 0, end = 0, step = 1;
  bool multiply = false;
  if (parts.size() > 3 || !number(parts[0], start)) {
    return invalid_argument("{} '{}': expected start[:end[:step]]", flag, text);
  }
  end = start;
  if (parts.size() >= 2 && !number(parts[1], end)) {
    return invalid_argument("{} '{}': bad end", flag, text);
  }
  if (parts.size() == 3) {
    multiply = !parts[2].empty() && parts[2][0] == 'x';
    if (!number(multiply ? parts[2].substr(1) : parts[2], step) || (multiply && step <= 1)) {
      return invalid_argument("{} '{}': bad step", flag, text);
    }
  }
  if (end < start) return invalid_argument("{} '{}': end is below start", flag, text);
  std::vector<double> levels;
  for (double v = start; v <= end * (1 + 1e-9) && levels.size() < 10000;
       v = multiply ? v * step : v + step) {
    levels.push_back(v);
  }
  return levels;
}

// This process's command line, as the reports record it (from /proc: CLI11 keeps no copy).
std::string own_command_line() {
  StatusOr<std::string> raw = read_file("/proc/self/cmdline", 1 << 20);
  if (!raw.ok()) return "kestrel bench";
  std::string line;
  for (char c : *raw) line += c == '\0' ? ' ' : c;
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The live line on a terminal: the load level, the window, what was answered so far.
void show_progress(const Progress& p) {
  const std::string level = p.mode == LoadMode::kConcurrency
                                ? fmt::format("concurrency {:g}", p.level)
                                : fmt::format("rate {:g}/s", p.level);
  const std::string window =
      p.trial == 0 ? "warm-up" : fmt::format("window {}/{}", p.trial, p.max_trials);
  std::string last;
  if (p.last) {
    last = fmt::format(" | last window {:.1f} infer/s, {:.2f} ms", p.last->throughput,
                       p.last->latency / 1e6);
  }
  const int filled = static_cast<int>(p.window_fraction * 20);
  fmt::print(stderr, "\r\033[K{} {} [{}{}] {} ok {} errors{}", level, window,
             std::string(filled, '#'), std::string(20 - filled, '.'), p.requests, p.errors, last);
  std::fflush(stderr);
}

Status write_output(const std::string& path, std::string_view text, const char* what) {
  KS_RETURN_IF_ERROR(write_file(path, text).with_context(path));
  fmt::print("{} written to {}\n", what, path);
  return Status();
}

Status write_html(const std::vector<std::string>& args, std::optional<Series> current,
                  std::string_view title) {
  std::vector<Series> runs;
  if (current) runs.push_back(std::move(*current));
  for (size_t i = 1; i < args.size(); ++i) {
    KS_ASSIGN_OR_RETURN(std::string text, read_file(args[i]));
    StatusOr<Series> s = parse_series(text, std::filesystem::path(args[i]).stem().string());
    if (!s.ok()) return s.status().with_context(args[i]);
    runs.push_back(std::move(*s));
  }
  if (runs.empty()) return invalid_argument("no runs to report: give bench JSON files");
  return write_output(args[0], html_report(runs, title), "HTML report");
}

// --accuracy: mAP of the answers kept during the load, with any image that got no answer asked
// once more.
StatusOr<AccuracyResult> evaluate_accuracy(Client& client, const std::vector<Sample>& samples,
                                           std::map<size_t, std::string> answers,
                                           const std::string& labels_dir) {
  std::unique_ptr<Connection> connection;
  std::vector<ImageBoxes> images;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (!answers.count(i)) {
      if (!connection) {
        KS_ASSIGN_OR_RETURN(connection, client.connect());
      }
      CallResult r = connection->call(i);
      if (!r.status.ok()) return r.status.with_context(samples[i].id);
      answers[i] = std::move(r.body);
    }
    KS_ASSIGN_OR_RETURN(auto size, image_size(samples[i].image));
    ImageBoxes image;
    StatusOr<std::vector<Box>> dets = parse_detect_answer(answers[i]);
    if (!dets.ok()) return dets.status().with_context(samples[i].id);
    image.detections = std::move(*dets);
    const std::string label_path =
        (std::filesystem::path(labels_dir) / (samples[i].id + ".txt")).string();
    if (std::filesystem::exists(label_path)) {  // no file: no objects, as in YOLO datasets
      KS_ASSIGN_OR_RETURN(std::string text, read_file(label_path));
      StatusOr<std::vector<Box>> labels = parse_yolo_label_text(text, size.first, size.second);
      if (!labels.ok()) return labels.status().with_context(label_path);
      image.labels = std::move(*labels);
    }
    images.push_back(std::move(image));
  }
  const MapResult m = mean_average_precision(images);
  AccuracyResult a;
  a.images = static_cast<int64_t>(images.size());
  a.labels = m.labels;
  a.detections = m.detections;
  a.map50 = m.map50;
  a.map50_95 = m.map50_95;
  return a;
}

Status bench(BenchOptions o) {
  if (o.model.empty()) return invalid_argument("-m MODEL is required");
  if (o.protocol != "http" && o.protocol != "grpc") {
    return invalid_argument("-i must be http or grpc, not '{}'", o.protocol);
  }
  if (o.accuracy && (o.images.empty() || o.labels.empty())) {
    return invalid_argument("--accuracy needs --images DIR and --labels DIR");
  }
  if (!o.concurrency_range.empty() && !o.request_rate_range.empty()) {
    return invalid_argument("give --concurrency-range or --request-rate-range, not both");
  }
  if (!o.cold_start && !o.server_command.empty()) {
    return invalid_argument("unexpected argument '{}' (a server command needs --cold-start)",
                            o.server_command[0]);
  }
  if (o.cold_start && o.server_command.empty()) {
    return invalid_argument("--cold-start needs the server command after '--'");
  }
  ClientOptions co;
  co.url = !o.url.empty() ? o.url : o.protocol == "grpc" ? "localhost:8001" : "localhost:8000";
  co.model = o.model;
  co.version = o.version;
  co.tensor_format = o.tensor_format == "json" ? TensorFormat::kJson : TensorFormat::kBinary;
  co.keep_bodies = o.accuracy;
  co.timeout_ms = o.timeout_ms;
  co.grpc_channels = o.grpc_channels;
  using SharedMemory = ClientOptions::SharedMemory;
  if (o.shared_memory == "system") {
    co.shared_memory = SharedMemory::kSystem;
  } else if (o.shared_memory == "cuda") {
    co.shared_memory = SharedMemory::kCuda;
  } else if (o.shared_memory != "none") {
    return invalid_argument("--shared-memory must be none, system or cuda, not '{}'",
                            o.shared_memory);
  }
  co.shared_memory_device = o.shared_memory_device;
  if (co.shared_memory != SharedMemory::kNone && !o.images.empty())
    return invalid_argument("--shared-memory {} sends tensors, not --images", o.shared_memory);
  co.output_shared_memory_size = o.output_shared_memory_size;
  // --accuracy measures like YOLOv5's val.py unless told otherwise: conf 0.001, NMS IoU 0.65.
  const double score = o.score_threshold >= 0 ? o.score_threshold : o.accuracy ? 0.001 : -1;
  const double iou = o.iou_threshold >= 0 ? o.iou_threshold : o.accuracy ? 0.65 : -1;
  if (score >= 0) co.detect_query += fmt::format("score_threshold={}", score);
  if (iou >= 0) {
    co.detect_query += fmt::format("{}iou_threshold={}", co.detect_query.empty() ? "" : "&", iou);
  }
  for (const std::string& h : o.headers) {
    const size_t colon = h.find(':');
    if (colon == std::string::npos || colon == 0) {
      return invalid_argument("-H '{}': expected 'Name: value'", h);
    }
    const size_t value = h.find_first_not_of(' ', colon + 1);
    co.headers.emplace_back(h.substr(0, colon), value == std::string::npos ? "" : h.substr(value));
  }
  KS_ASSIGN_OR_RETURN(std::unique_ptr<Client> client,
                      o.protocol == "grpc" ? make_grpc_client(co) : make_http_client(co));

  InputOptions io;
  io.input_data = o.input_data;
  io.batch_size = o.batch;
  io.seed = o.seed;
  for (const std::string& s : o.shapes) KS_RETURN_IF_ERROR(parse_shape_option(s, io.shapes));

  std::vector<Sample> samples;
  auto load_samples = [&]() -> Status {
    if (!samples.empty()) return Status();
    if (!o.images.empty()) {
      KS_ASSIGN_OR_RETURN(samples, make_image_samples(o.images));
    } else {
      KS_ASSIGN_OR_RETURN(ModelMetadata metadata, client->model_metadata());
      KS_ASSIGN_OR_RETURN(samples, make_tensor_samples(metadata, io));
    }
    return client->prepare(samples);
  };

  BenchRun run;
  std::unique_ptr<ServerProcess> server;
  if (o.cold_start) {
    KS_ASSIGN_OR_RETURN(server, ServerProcess::start(o.server_command));
    std::unique_ptr<Connection> first;
    KS_ASSIGN_OR_RETURN(ColdStartResult c, measure_cold_start(
                                               *server, *client,
                                               [&]() -> Status {
                                                 KS_RETURN_IF_ERROR(load_samples());
                                                 if (!first) {
                                                   KS_ASSIGN_OR_RETURN(first, client->connect());
                                                 }
                                                 return first->call(0).status;
                                               },
                                               o.cold_start_timeout_s));
    for (const std::string& a : o.server_command) c.command += (c.command.empty() ? "" : " ") + a;
    fmt::print(
        "cold start: ready after {:.3f} s, first answer after {:.3f} s, peak host RSS "
        "{:.1f} MiB, peak GPU memory {}\n",
        c.ready_s, c.first_answer_s, static_cast<double>(c.peak_rss_bytes) / (1 << 20),
        c.peak_gpu_bytes
            ? fmt::format("{:.1f} MiB", static_cast<double>(*c.peak_gpu_bytes) / (1 << 20))
            : "n/a (no nvidia-smi)");
    run.cold_start = c;
  } else {
    KS_RETURN_IF_ERROR(client->server_ready().with_context("server " + co.url));
  }
  KS_RETURN_IF_ERROR(load_samples());

  LoadOptions lo;
  lo.measurement_interval_ms = o.measurement_interval_ms;
  lo.stability_percent = o.stability;
  lo.max_trials = o.max_trials;
  lo.percentile = o.percentile;
  lo.batch_size = o.images.empty() ? o.batch : 1;
  lo.distribution = o.distribution == "constant" ? Distribution::kConstant : Distribution::kPoisson;
  lo.seed = o.seed;
  lo.max_threads = o.max_threads;
  lo.keep_answers = o.accuracy;
  const bool rate = !o.request_rate_range.empty();
  KS_ASSIGN_OR_RETURN(std::vector<double> levels,
                      rate ? parse_range(o.request_rate_range, "--request-rate-range")
                           : parse_range(o.concurrency_range.empty() ? "1" : o.concurrency_range,
                                         "--concurrency-range"));
  const LoadMode mode = rate ? LoadMode::kRequestRate : LoadMode::kConcurrency;
  if (mode == LoadMode::kConcurrency) {
    for (double& l : levels) l = std::floor(l);
  }

  run.label = !o.label.empty() ? o.label : fmt::format("{} {} ({})", o.model, o.protocol, co.url);
  run.url = co.url;
  run.model = o.model;
  run.protocol = o.protocol;
  run.request = o.images.empty() ? "infer" : "detect";
  run.command_line = o.command_line;
  run.date = now_utc();
  run.batch_size = lo.batch_size;
  run.percentile = o.percentile;

  const bool live = !o.no_progress && isatty(STDERR_FILENO);
  fmt::print("kestrel bench: {} over {} at {}, {} requests, {} ms windows, stability {}%\n",
             o.model, o.protocol, co.url, run.request, o.measurement_interval_ms, o.stability);
  fmt::print("{}", table_header(mode, o.percentile));
  std::fflush(stdout);
  std::map<size_t, std::string> answers;
  for (double level : levels) {
    KS_ASSIGN_OR_RETURN(PointResult p,
                        run_point(*client, mode, level, lo,
                                  live ? ProgressCallback(show_progress) : ProgressCallback()));
    if (live) fmt::print(stderr, "\r\033[K");
    fmt::print("{}", table_row(p, o.percentile));
    for (const auto& [message, count] : p.summary.error_counts) {
      fmt::print("    {} x {}\n", count, message);
    }
    if (p.summary.delayed > 0) {
      fmt::print(
          "    {} requests were sent more than 1 ms late (raise --max-threads); their "
          "latency counts from the scheduled time\n",
          p.summary.delayed);
    }
    std::fflush(stdout);
    answers.merge(p.answers);
    p.answers.clear();
    run.points.push_back(std::move(p));
  }

  if (o.accuracy) {
    KS_ASSIGN_OR_RETURN(AccuracyResult a,
                        evaluate_accuracy(*client, samples, std::move(answers), o.labels));
    fmt::print(
        "accuracy of the server's answers: {} images, {} labels, {} detections: "
        "mAP@0.5 = {:.4f}, mAP@0.5:0.95 = {:.4f}\n",
        a.images, a.labels, a.detections, a.map50, a.map50_95);
    run.accuracy = a;
  }
  if (server) server->stop();

  if (!o.csv.empty()) KS_RETURN_IF_ERROR(write_output(o.csv, csv_report(run), "CSV"));
  if (!o.json.empty()) KS_RETURN_IF_ERROR(write_output(o.json, json_report(run), "JSON"));
  if (!o.report.empty()) {
    KS_RETURN_IF_ERROR(write_html(o.report, series_of(run), "kestrel bench: " + o.model));
  }
  int64_t errors = 0;
  for (const PointResult& p : run.points) errors += p.summary.errors;
  if (errors > 0) fmt::print("{} requests failed (see above)\n", errors);
  return Status();
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Load generator for KServe v2 servers (Kestrel, Triton): throughput and latency");
  auto o = std::make_shared<BenchOptions>();
  cmd->add_option("-m,--model-name", o->model, "Model name");
  cmd->add_option("-x,--model-version", o->version, "Model version (default: the server's)");
  cmd->add_option("-u,--url", o->url, "Server host:port (default localhost:8000, gRPC :8001)");
  cmd->add_option("-i,--protocol", o->protocol, "http or grpc")->capture_default_str();
  cmd->add_option("-b,--batch-size", o->batch, "Batch size of tensor requests")
      ->capture_default_str();
  cmd->add_option("--concurrency-range", o->concurrency_range,
                  "start:end:step closed-loop concurrency (step xF multiplies: 1:128:x2)");
  cmd->add_option("--request-rate-range", o->request_rate_range,
                  "start:end:step open-loop requests per second");
  cmd->add_option("--request-distribution", o->distribution, "poisson or constant arrivals")
      ->check(CLI::IsMember({"poisson", "constant"}))
      ->capture_default_str();
  cmd->add_option("--shape", o->shapes, "NAME:1,3,640,640 shape of an input (repeatable)");
  cmd->add_option("--input-data", o->input_data, "random, a DIR (NAME or NAME.npy) or FILE.json")
      ->capture_default_str();
  cmd->add_option("--input-tensor-format", o->tensor_format, "binary or json (HTTP)")
      ->check(CLI::IsMember({"binary", "json"}))
      ->capture_default_str();
  cmd->add_option("--images", o->images, "Folder of images sent to /detect (the realistic case)");
  cmd->add_option("-p,--measurement-interval", o->measurement_interval_ms,
                  "Measurement window in ms")
      ->capture_default_str();
  cmd->add_option("-s,--stability-percentage", o->stability,
                  "Three windows must agree within this %")
      ->capture_default_str();
  cmd->add_option("-r,--max-trials", o->max_trials, "Windows before giving up on stability")
      ->capture_default_str();
  cmd->add_option("--percentile", o->percentile,
                  "Judge stability and report on this latency percentile (default: the mean)");
  cmd->add_option("--max-threads", o->max_threads,
                  "Requests in flight at most in open-loop runs (one connection each; over HTTP a "
                  "thread each)")
      ->capture_default_str();
  cmd->add_option("--grpc-channels", o->grpc_channels,
                  "gRPC connections shared by the workers (0: one per worker)")
      ->capture_default_str();
  cmd->add_option(
         "--shared-memory", o->shared_memory,
         "none; system: tensors through system shared memory; cuda: through GPU memory shared "
         "with CUDA IPC (the server must allow client shared memory)")
      ->capture_default_str();
  cmd->add_option("--shared-memory-device", o->shared_memory_device,
                  "The GPU that --shared-memory cuda allocates the tensors on")
      ->capture_default_str();
  cmd->add_option("--output-shared-memory-size", o->output_shared_memory_size,
                  "Bytes per output in shared memory (default: from the model's metadata)");
  cmd->add_option("--seed", o->seed, "Seed of random inputs and Poisson arrivals")
      ->capture_default_str();
  cmd->add_option("--timeout-ms", o->timeout_ms, "Per-request timeout (0: none)");
  cmd->add_option("-H,--header", o->headers, "'Name: value' header of every request (repeatable)");
  cmd->add_option("-f,--latency-report-file", o->csv, "CSV with perf_analyzer's columns");
  cmd->add_option("--json", o->json, "JSON with every measurement");
  cmd->add_option("--report", o->report,
                  "OUT.html [RUN.json...]: HTML report of this run and earlier ones")
      ->expected(1, 64);
  cmd->add_option("--label", o->label, "Name of this run in reports");
  cmd->add_flag("--accuracy", o->accuracy, "mAP of the /detect answers (--images, --labels)");
  cmd->add_option("--labels", o->labels, "Folder of YOLO label files for --accuracy");
  cmd->add_option("--score-threshold", o->score_threshold,
                  "/detect score threshold (default: the server's; 0.001 with --accuracy)");
  cmd->add_option("--iou-threshold", o->iou_threshold,
                  "/detect NMS IoU threshold (default: the server's; 0.65 with --accuracy)");
  cmd->add_flag("--cold-start", o->cold_start,
                "Start the server given after '--' and time start, ready, first answer");
  cmd->add_option("--cold-start-timeout", o->cold_start_timeout_s, "Seconds")
      ->capture_default_str();
  cmd->add_flag("--no-progress", o->no_progress, "No live progress line");
  cmd->add_option("server_command", o->server_command, "-- SERVER COMMAND... (--cold-start)");

  auto* report = cmd->add_subcommand("report", "Overlay bench JSON files in one HTML report");
  auto report_args = std::make_shared<std::vector<std::string>>();
  auto title = std::make_shared<std::string>("kestrel bench");
  report->add_option("files", *report_args, "OUT.html RUN.json...")->required()->expected(2, -1);
  report->add_option("--title", *title, "Report title");
  report->callback(
      [report_args, title] { exit_on_error(write_html(*report_args, std::nullopt, *title)); });

  cmd->callback([o, report] {
    if (report->parsed()) return;
    o->command_line = own_command_line();
    exit_on_error(bench(*o));
  });
}

}  // namespace kestrel::cli
