// `kestrel perf MODEL --batch 1,8,32`: engine throughput and latency per batch size, in the spirit
// of trtexec. Inputs are random and placed on the engine's device first, so "compute" is the model
// forward alone; the host<->device copies are timed separately.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "kestrel/base/logging.h"
#include "kestrel/cli/commands.h"
#include "kestrel/engine/builder.h"
#include "kestrel/onnx/importer.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct PerfOptions {
  std::string model;
  std::vector<int64_t> batches = {1, 8, 32};
  std::string backend = "auto";
  bool fp16 = false;
  std::string layout = "auto";
  int iterations = 100;
  int warmup = 10;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

StatusOr<Tensor> random_input(const engine::TensorInfo& info, int64_t batch) {
  std::vector<int64_t> dims;
  for (size_t d = 0; d < info.type.shape.rank(); ++d) {
    const ir::SymDim& dim = info.type.shape[d];
    dims.push_back(dim.is_known() ? dim.value() : batch);
  }
  KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(info.type.dtype, Shape(dims)));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  if (info.type.dtype == DType::kFloat32) {
    for (float& v : t.values<float>()) v = u(rng);
  } else if (info.type.dtype == DType::kFloat16) {
    for (Half& v : t.values<Half>()) v = Half(u(rng));
  } else {
    return unimplemented("perf generates float inputs only; input '{}' is {}", info.name,
                         info.type.dtype);
  }
  return t;
}

Status perf(const PerfOptions& o) {
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(o.model));
  engine::BuildOptions build;
  build.engine.backend = o.backend;
  build.precision = o.fp16 ? "fp16" : "fp32";
  build.layout = o.layout;
  build.max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  engine::BuildReport report;
  const auto build_start = Clock::now();
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> e,
                      engine::build_engine(std::move(graph), build, &report));
  fmt::print("built in {:.2f} s on {}: {}\n", ms_since(build_start) / 1000, e->backend_summary(),
             report.to_string());
  fmt::print("{:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14}\n", "batch", "img/s",
             "p50 ms", "p90 ms", "p99 ms", "H2D ms", "compute", "D2H ms", "arena/naive MB");
  for (int64_t batch : o.batches) {
    std::map<std::string, Tensor> host, device;
    for (const engine::TensorInfo& info : e->inputs()) {
      KS_ASSIGN_OR_RETURN(host[info.name], random_input(info, batch));
    }
    // H2D: the copy of the inputs to the device.
    std::vector<double> h2d;
    for (int i = 0; i < std::max(3, o.iterations / 10); ++i) {
      const auto start = Clock::now();
      for (const auto& [name, t] : host) {
        KS_ASSIGN_OR_RETURN(device[name], e->to_device(t));
      }
      h2d.push_back(ms_since(start));
    }
    engine::Engine::RunOptions keep{.outputs_on_device = true};
    for (int i = 0; i < o.warmup; ++i) {
      KS_ASSIGN_OR_RETURN(std::vector<Tensor> out, e->run(device, keep));
      KS_RETURN_IF_ERROR(e->synchronize());
    }
    // Latency: one run at a time, waiting for each.
    std::vector<double> latency;
    for (int i = 0; i < o.iterations; ++i) {
      const auto start = Clock::now();
      KS_ASSIGN_OR_RETURN(std::vector<Tensor> out, e->run(device, keep));
      KS_RETURN_IF_ERROR(e->synchronize());
      latency.push_back(ms_since(start));
    }
    // Throughput: runs queued back to back, one wait at the end.
    const auto start = Clock::now();
    for (int i = 0; i < o.iterations; ++i) {
      KS_ASSIGN_OR_RETURN(std::vector<Tensor> out, e->run(device, keep));
    }
    KS_RETURN_IF_ERROR(e->synchronize());
    const double per_run = ms_since(start) / o.iterations;
    // D2H: the copy of the outputs back to the host.
    KS_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, e->run(device, keep));
    KS_RETURN_IF_ERROR(e->synchronize());
    std::vector<double> d2h;
    for (int i = 0; i < std::max(3, o.iterations / 10); ++i) {
      const auto t0 = Clock::now();
      for (const Tensor& t : outputs) {
        KS_ASSIGN_OR_RETURN(Tensor back, e->to_host(t));
      }
      d2h.push_back(ms_since(t0));
    }
    // Activation memory of one execution context: the planned arena against one buffer per tensor.
    std::string memory = "-";
    std::map<std::string, int64_t> bindings;
    for (const engine::TensorInfo& info : e->inputs()) {
      for (const ir::SymDim& d : info.type.shape.dims()) {
        if (d.is_symbolic()) bindings[d.symbol_name()] = batch;
      }
    }
    if (StatusOr<engine::Engine::MemoryReport> m = e->memory_report(bindings); m.ok()) {
      memory = fmt::format("{:.1f}/{:.1f}", m->arena_bytes / 1e6, m->naive_bytes / 1e6);
    }
    fmt::print(
        "{:>6} {:>10.0f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>14}\n",
        batch, static_cast<double>(batch) / per_run * 1000, percentile(latency, 50),
        percentile(latency, 90), percentile(latency, 99), percentile(h2d, 50), per_run,
        percentile(d2h, 50), memory);
  }
  return Status();
}

std::vector<int64_t> parse_batches(const std::string& s) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    out.push_back(std::stoll(s.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return out;
}

}  // namespace

void add_perf_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("perf", "Engine throughput and latency per batch size");
  auto o = std::make_shared<PerfOptions>();
  auto batches = std::make_shared<std::string>("1,8,32");
  cmd->add_option("model", o->model, "ONNX model file")->required();
  cmd->add_option("-b,--batch", *batches, "Comma-separated batch sizes")->capture_default_str();
  cmd->add_option("--backend", o->backend, "cpu, cuda or auto")->capture_default_str();
  cmd->add_flag("--fp16", o->fp16, "Run in float16 (float32 accumulation)");
  cmd->add_option("--layout", o->layout, "Convolution layout: auto (nhwc on the GPU), nchw or nhwc")
      ->capture_default_str();
  cmd->add_option("-n,--iterations", o->iterations, "Timed runs per batch size")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Untimed runs first")->capture_default_str();
  cmd->callback([o, batches] {
    try {
      o->batches = parse_batches(*batches);
    } catch (const std::exception&) {
      exit_on_error(invalid_argument("bad --batch '{}' (expected e.g. 1,8,32)", *batches));
    }
    if (o->batches.empty() || *std::min_element(o->batches.begin(), o->batches.end()) < 1) {
      exit_on_error(invalid_argument("batch sizes must be positive"));
    }
    exit_on_error(perf(*o));
  });
}

}  // namespace kestrel::cli
