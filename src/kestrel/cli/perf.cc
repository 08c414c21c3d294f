// `kestrel perf MODEL --batch 1,8,32`: engine throughput and latency per batch size, in the spirit
// of trtexec. Inputs are random and placed on the engine's device first, so "compute" is the model
// forward alone; the host<->device copies are timed separately. With --streams N, N host threads
// run the same batch size at once, each on an execution context (and stream) of its own, like
// trtexec --streams: the aggregate throughput and the latency of each run under that load.
#include <fmt/format.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <thread>

#include "kestrel/base/logging.h"
#include "kestrel/cli/commands.h"
#include "kestrel/cli/model_loading.h"
#include "kestrel/engine/builder.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct PerfOptions {
  std::string model;
  std::vector<int64_t> batches = {1, 8, 32};
  std::string backend = "auto";
  bool fp16 = false;
  bool tf32 = false;
  std::string layout = "auto";
  int iterations = 100;
  int streams = 1;  // concurrent runs, each on its own thread, context and stream
  int warmup = 10;
  bool profile = false;     // per-layer times after the table
  std::string profile_csv;  // every layer of every batch size, as CSV
  int top = 15;             // layers shown per batch size
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

// Per-layer device time of one batch size: the slowest layers and the time per operator, with the
// rate each achieves (TFLOP/s by the FLOPs rules, GB/s by the bytes each step reads and writes)
// to set against the roofline (docs/benchmarks: ~800 TFLOP/s FP16 dense, ~3 TB/s on the H100).
Status print_profile(const engine::Engine& e, const std::map<std::string, Tensor>& device,
                     int64_t batch, const PerfOptions& o, std::FILE* csv) {
  KS_ASSIGN_OR_RETURN(std::vector<engine::Engine::LayerProfile> layers,
                      e.profile(device, std::max(5, o.iterations / 5)));
  double total = 0;
  int64_t flops = 0;
  for (const auto& l : layers) {
    total += l.ms;
    flops += l.flops;
  }
  auto rate = [](double amount, double ms, double unit) {
    return ms > 0 ? amount / (ms * 1e-3) / unit : 0.0;
  };
  fmt::print(
      "\nbatch {}: {} steps, {:.3f} ms of device time step by step, {:.1f} TFLOP/s overall\n",
      batch, layers.size(), total, rate(static_cast<double>(flops), total, 1e12));
  struct OpTotal {
    int count = 0;
    double ms = 0;
    int64_t flops = 0, bytes = 0;
  };
  std::map<std::string, OpTotal> by_op;
  for (const auto& l : layers) {
    OpTotal& t = by_op[l.op];
    ++t.count;
    t.ms += l.ms;
    t.flops += l.flops;
    t.bytes += l.bytes;
  }
  std::vector<std::pair<std::string, OpTotal>> ops(by_op.begin(), by_op.end());
  std::sort(ops.begin(), ops.end(),
            [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  fmt::print("{:<16} {:>6} {:>10} {:>7} {:>10} {:>10}\n", "operator", "steps", "ms", "share",
             "TFLOP/s", "GB/s");
  for (const auto& [op, t] : ops) {
    fmt::print("{:<16} {:>6} {:>10.3f} {:>6.1f}% {:>10.1f} {:>10.0f}\n", op, t.count, t.ms,
               100 * t.ms / total, rate(static_cast<double>(t.flops), t.ms, 1e12),
               rate(static_cast<double>(t.bytes), t.ms, 1e9));
  }
  std::vector<const engine::Engine::LayerProfile*> slowest;
  for (const auto& l : layers) slowest.push_back(&l);
  std::sort(slowest.begin(), slowest.end(), [](auto* a, auto* b) { return a->ms > b->ms; });
  slowest.resize(std::min<size_t>(slowest.size(), static_cast<size_t>(std::max(0, o.top))));
  fmt::print("{:<28} {:<12} {:<22} {:>9} {:>10} {:>10}\n", "slowest layers", "operator", "output",
             "ms", "TFLOP/s", "GB/s");
  for (const auto* l : slowest) {
    fmt::print("{:<28} {:<12} {:<22} {:>9.4f} {:>10.1f} {:>10.0f}\n", l->node.substr(0, 28), l->op,
               l->shape, l->ms, rate(static_cast<double>(l->flops), l->ms, 1e12),
               rate(static_cast<double>(l->bytes), l->ms, 1e9));
  }
  if (csv != nullptr) {
    for (const auto& l : layers) {
      fmt::print(csv, "{},\"{}\",{},\"{}\",{:.6f},{},{}\n", batch, l.node, l.op, l.shape, l.ms,
                 l.flops, l.bytes);
    }
  }
  return Status();
}

// What `streams` threads see running the same inputs at once: each thread does `warmup` untimed
// runs (they also make its execution context), then all start together and each does `iterations`
// runs, waiting for each. The aggregate rate is every run over the time until the last finishes.
struct ConcurrentResult {
  std::vector<double> latency;  // every run of every thread, ms
  double wall_ms = 0;
  int64_t runs = 0;
};

StatusOr<ConcurrentResult> run_concurrently(const engine::Engine& e,
                                            const std::map<std::string, Tensor>& device,
                                            const PerfOptions& o) {
  const auto n = static_cast<size_t>(o.streams);
  std::vector<std::vector<double>> latency(n);
  std::vector<Status> status(n);
  std::barrier ready(static_cast<std::ptrdiff_t>(n + 1));
  std::barrier done(static_cast<std::ptrdiff_t>(n + 1));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      // A thread that fails stops running but still meets the others at both barriers.
      auto one_run = [&]() -> Status {
        engine::Engine::RunOptions keep{.outputs_on_device = true};
        KS_ASSIGN_OR_RETURN(std::vector<Tensor> out, e.run(device, keep));
        return e.synchronize();
      };
      for (int i = 0; i < o.warmup && status[t].ok(); ++i) status[t] = one_run();
      ready.arrive_and_wait();
      for (int i = 0; i < o.iterations && status[t].ok(); ++i) {
        const auto start = Clock::now();
        status[t] = one_run();
        latency[t].push_back(ms_since(start));
      }
      done.arrive_and_wait();
    });
  }
  ready.arrive_and_wait();
  const auto start = Clock::now();
  done.arrive_and_wait();
  ConcurrentResult r;
  r.wall_ms = ms_since(start);
  for (std::thread& t : threads) t.join();
  for (size_t t = 0; t < n; ++t) {
    if (!status[t].ok()) return status[t].with_context(fmt::format("stream {}", t));
    r.latency.insert(r.latency.end(), latency[t].begin(), latency[t].end());
  }
  r.runs = static_cast<int64_t>(r.latency.size());
  return r;
}

Status perf(const PerfOptions& o) {
  if (o.streams < 1) return invalid_argument("--streams must be at least 1");
  if (o.iterations < 1) return invalid_argument("--iterations must be at least 1");
  engine::BuildOptions build;
  build.engine.backend = o.backend;
  build.precision = o.fp16 ? "fp16" : "fp32";
  build.tf32 = o.tf32;
  build.layout = o.layout;
  build.max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> e, load_or_build_engine(o.model, build));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> csv(nullptr, &std::fclose);
  if (!o.profile_csv.empty()) {
    csv.reset(std::fopen(o.profile_csv.c_str(), "w"));
    if (!csv) return invalid_argument("cannot write {}", o.profile_csv);
    fmt::print(csv.get(), "batch,node,op,output,ms,flops,bytes\n");
  }
  std::vector<std::pair<int64_t, std::map<std::string, Tensor>>> profiled;
  if (o.streams > 1) {
    // Latency columns: one run's time while the other streams run too; "mean ms" is their mean.
    fmt::print(
        "{} streams, each with its own execution context (arena/naive is one context's): img/s "
        "of all together, latency of one run among them\n",
        o.streams);
    fmt::print("{:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14}\n", "batch", "img/s",
               "p50 ms", "p90 ms", "p99 ms", "mean ms", "H2D ms", "D2H ms", "arena/naive MB");
  } else {
    fmt::print("{:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14}\n", "batch", "img/s",
               "p50 ms", "p90 ms", "p99 ms", "H2D ms", "compute", "D2H ms", "arena/naive MB");
  }
  for (int64_t batch : o.batches) {
    std::map<std::string, Tensor> host, device;
    for (const engine::TensorInfo& info : e->inputs()) {
      KS_ASSIGN_OR_RETURN(host[info.name], random_model_input(info, batch));
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
    std::optional<ConcurrentResult> concurrent;
    std::vector<double> latency;
    double per_run = 0;
    if (o.streams > 1) {
      KS_ASSIGN_OR_RETURN(concurrent, run_concurrently(*e, device, o));
    } else {
      for (int i = 0; i < o.warmup; ++i) {
        KS_ASSIGN_OR_RETURN(std::vector<Tensor> out, e->run(device, keep));
        KS_RETURN_IF_ERROR(e->synchronize());
      }
      // Latency: one run at a time, waiting for each.
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
      per_run = ms_since(start) / o.iterations;
    }
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
    if (concurrent) {
      double sum = 0;
      for (double ms : concurrent->latency) sum += ms;
      fmt::print(
          "{:>6} {:>10.0f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>14}\n",
          batch, static_cast<double>(batch * concurrent->runs) / concurrent->wall_ms * 1000,
          percentile(concurrent->latency, 50), percentile(concurrent->latency, 90),
          percentile(concurrent->latency, 99), sum / static_cast<double>(concurrent->runs),
          percentile(h2d, 50), percentile(d2h, 50), memory);
    } else {
      fmt::print(
          "{:>6} {:>10.0f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>14}\n",
          batch, static_cast<double>(batch) / per_run * 1000, percentile(latency, 50),
          percentile(latency, 90), percentile(latency, 99), percentile(h2d, 50), per_run,
          percentile(d2h, 50), memory);
    }
    if (o.profile || csv) profiled.emplace_back(batch, device);
  }
  for (const auto& [batch, device] : profiled) {
    KS_RETURN_IF_ERROR(print_profile(*e, device, batch, o, csv.get()));
  }
  return Status();
}

}  // namespace

void add_perf_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("perf", "Engine throughput and latency per batch size");
  auto o = std::make_shared<PerfOptions>();
  auto batches = std::make_shared<std::string>("1,8,32");
  cmd->add_option("model", o->model, "ONNX model or .kplan engine file")->required();
  cmd->add_option("-b,--batch", *batches, "Comma-separated batch sizes")->capture_default_str();
  cmd->add_option("--backend", o->backend, "cpu, cuda or auto")->capture_default_str();
  cmd->add_flag("--fp16", o->fp16, "Run in float16 (float32 accumulation)");
  cmd->add_flag("--tf32", o->tf32,
                "float32 convolutions on TF32 tensor cores (GPU; float32 accumulation)");
  cmd->add_option("--layout", o->layout,
                  "Convolution layout: auto (nhwc for fp16 and tf32 on the GPU), nchw or nhwc")
      ->capture_default_str();
  cmd->add_option("-n,--iterations", o->iterations, "Timed runs per batch size")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Untimed runs first")->capture_default_str();
  cmd->add_option("--streams", o->streams,
                  "Concurrent runs: N threads, each with its own execution context and stream; "
                  "aggregate img/s and the latency of each run under that load")
      ->capture_default_str();
  cmd->add_flag("--profile", o->profile, "Per-layer device time, by operator and slowest layers");
  cmd->add_option("--profile-csv", o->profile_csv, "Write every layer's time to this CSV file");
  cmd->add_option("--top", o->top, "Slowest layers shown by --profile")->capture_default_str();
  cmd->callback([o, batches] {
    StatusOr<std::vector<int64_t>> parsed = parse_batch_list(*batches);
    exit_on_error(parsed.status());
    o->batches = *parsed;
    exit_on_error(perf(*o));
  });
}

}  // namespace kestrel::cli
