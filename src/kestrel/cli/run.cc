// `kestrel run MODEL --input NAME=FILE ... --output-dir DIR`: run a model once, write its outputs.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include "kestrel/base/file.h"
#include "kestrel/base/logging.h"
#include "kestrel/base/npy.h"
#include "kestrel/cli/commands.h"
#include "kestrel/cli/model_loading.h"
#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/optimize/rebatch.h"

namespace kestrel::cli {
namespace {

struct RunOptions {
  std::string model;
  std::vector<std::string> inputs;    // NAME=FILE
  std::vector<std::string> shapes;    // NAME=1x3x640x640
  std::vector<std::string> compares;  // NAME=FILE
  bool random = false;
  int64_t batch = 0;
  bool dynamic_batch = false;
  std::string output_dir = "out";
  std::string backend = "auto";
  bool reference = false;
  bool tf32 = false;
  uint64_t seed = 1;
};

StatusOr<std::pair<std::string, std::string>> split_assignment(const std::string& s) {
  const size_t eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) {
    return invalid_argument("expected NAME=VALUE, got '{}'", s);
  }
  return std::pair{s.substr(0, eq), s.substr(eq + 1)};
}

// .npy by default; .pb files are ONNX TensorProtos.
StatusOr<Tensor> read_tensor_file(const std::string& path) {
  if (path.ends_with(".pb")) {
    KS_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
    StatusOr<Tensor> t = onnx::parse_tensor_proto(bytes);
    if (!t.ok()) return t.status().with_context(path);
    return t;
  }
  return read_npy(path);
}

StatusOr<Tensor> random_tensor(DType dtype, const Shape& shape, std::mt19937_64& rng) {
  KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(dtype, shape));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  KS_RETURN_IF_ERROR(dispatch_dtype<AllTypes>(dtype, [&]<typename T>(TypeTag<T>) -> Status {
    for (T& v : t.values<T>()) {
      if constexpr (std::is_same_v<T, bool>)
        v = unit(rng) < 0.5;
      else if constexpr (std::is_integral_v<T>)
        v = static_cast<T>(unit(rng) * 10);
      else
        v = T(static_cast<float>(unit(rng)));
    }
    return Status();
  }));
  return t;
}

// A file name for an output: ONNX names may contain '/', ':' and the like.
std::string file_name_for(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  return out.empty() ? "output" : out;
}

std::string summary(const Tensor& t) {
  const std::vector<double> v = t.to_double_vector();
  if (v.empty()) return "(empty)";
  double lo = v[0], hi = v[0], sum = 0;
  for (double x : v) {
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    sum += x;
  }
  return fmt::format("min {:.6g}  max {:.6g}  mean {:.6g}", lo, hi,
                     sum / static_cast<double>(v.size()));
}

// ||a - b|| / ||b|| and max |a - b|.
StatusOr<std::pair<double, double>> compare(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) {
    return invalid_argument("shape {} differs from the reference's {}", a.shape(), b.shape());
  }
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double diff = 0, norm = 0, max_abs = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff += (x[i] - y[i]) * (x[i] - y[i]);
    norm += y[i] * y[i];
    max_abs = std::max(max_abs, std::abs(x[i] - y[i]));
  }
  return std::pair{norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff), max_abs};
}

// The engine: a .kplan file as it was built, or the ONNX model exactly as exported (no
// optimization: `run` is the reference path), re-batched when asked, its convolutions marked for
// TF32 with --tf32.
StatusOr<std::unique_ptr<engine::Engine>> create_engine(const RunOptions& o) {
  engine::EngineOptions options{.backend = o.backend, .cpu_reference_only = o.reference};
  if (is_engine_file(o.model)) {
    engine::BuildOptions build;
    build.engine = options;
    build.tf32 = o.tf32;
    return load_or_build_engine(o.model, build, /*print_summary=*/false);
  }
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(o.model));
  const bool fixed_batch = !graph->inputs().empty() && graph->inputs()[0]->shape().has_rank() &&
                           graph->inputs()[0]->shape().rank() > 0 &&
                           graph->inputs()[0]->shape()[0].is_known();
  if (o.dynamic_batch || (o.batch > 1 && fixed_batch)) {
    log::info("making the fixed-batch model run at any batch size");
    std::unique_ptr<ir::NodeEvaluator> evaluator = engine::make_cpu_evaluator();
    KS_RETURN_IF_ERROR(optimize::make_batch_dynamic(*graph, evaluator.get()));
  }
  if (o.tf32) engine::allow_tf32(*graph);
  return engine::Engine::create(std::move(graph), options);
}

Status run(const RunOptions& o) {
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> eng, create_engine(o));
  std::map<std::string, Tensor> inputs;
  for (const std::string& spec : o.inputs) {
    KS_ASSIGN_OR_RETURN(auto kv, split_assignment(spec));
    KS_ASSIGN_OR_RETURN(Tensor t, read_tensor_file(kv.second));
    inputs[kv.first] = std::move(t);
  }
  std::map<std::string, Shape> shapes;
  for (const std::string& spec : o.shapes) {
    KS_ASSIGN_OR_RETURN(auto kv, split_assignment(spec));
    std::vector<int64_t> dims;
    for (size_t pos = 0; pos <= kv.second.size();) {
      const size_t x = std::min(kv.second.find('x', pos), kv.second.size());
      try {
        dims.push_back(std::stoll(kv.second.substr(pos, x - pos)));
      } catch (const std::exception&) {
        return invalid_argument("bad shape '{}' (expected e.g. 1x3x640x640)", kv.second);
      }
      pos = x + 1;
    }
    shapes[kv.first] = Shape(std::move(dims));
  }
  std::mt19937_64 rng(o.seed);
  for (const engine::TensorInfo& in : eng->inputs()) {
    if (inputs.count(in.name)) continue;
    if (!o.random) {
      return invalid_argument("no value for input '{}' {} (use --input {}=FILE or --random)",
                              in.name, in.type.to_string(), in.name);
    }
    Shape shape;
    if (shapes.count(in.name)) {
      shape = shapes[in.name];
    } else {
      std::vector<int64_t> dims;
      for (size_t d = 0; d < in.type.shape.rank(); ++d) {
        const ir::SymDim& dim = in.type.shape[d];
        dims.push_back(dim.is_known() ? dim.value() : (d == 0 && o.batch > 0 ? o.batch : 1));
      }
      shape = Shape(std::move(dims));
    }
    KS_ASSIGN_OR_RETURN(inputs[in.name], random_tensor(in.type.dtype, shape, rng));
  }

  log::info("running on {}", eng->backend_summary());
  const auto start = std::chrono::steady_clock::now();
  KS_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, eng->run(inputs));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  std::error_code ec;
  std::filesystem::create_directories(o.output_dir, ec);
  if (ec) return permission_denied("cannot create '{}': {}", o.output_dir, ec.message());
  std::map<std::string, Tensor> references;
  for (const std::string& spec : o.compares) {
    KS_ASSIGN_OR_RETURN(auto kv, split_assignment(spec));
    KS_ASSIGN_OR_RETURN(references[kv.first], read_tensor_file(kv.second));
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& name = eng->outputs()[i].name;
    const std::string path = fmt::format("{}/{}.npy", o.output_dir, file_name_for(name));
    KS_RETURN_IF_ERROR(write_npy(path, outputs[i]));
    fmt::print("{} {}{} -> {}\n    {}\n", name, outputs[i].dtype(), outputs[i].shape(), path,
               summary(outputs[i]));
    if (references.count(name)) {
      KS_ASSIGN_OR_RETURN(auto err, compare(outputs[i], references[name]));
      fmt::print("    vs reference: relative L2 error {:.3g}, max abs difference {:.3g}\n",
                 err.first, err.second);
    }
  }
  fmt::print("ran in {:.1f} ms on {}\n", ms, eng->backend_summary());
  return Status();
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Run a model once and write every output as .npy");
  auto o = std::make_shared<RunOptions>();
  cmd->add_option("model", o->model, "ONNX model or .kplan engine file")->required();
  cmd->add_option("-i,--input", o->inputs, "NAME=FILE: an input from .npy or ONNX TensorProto .pb");
  cmd->add_flag("--random", o->random, "Random values for inputs not given with --input");
  cmd->add_option("--shape", o->shapes, "NAME=1x3x640x640: the shape of a random input");
  cmd->add_option("-b,--batch", o->batch,
                  "Batch size of random inputs; a fixed-batch model is re-batched to run it");
  cmd->add_flag("--dynamic-batch", o->dynamic_batch,
                "Make a model exported with a fixed batch accept any batch size");
  cmd->add_option("-o,--output-dir", o->output_dir, "Where to write <output name>.npy")
      ->capture_default_str();
  cmd->add_option("--backend", o->backend, "cpu, cuda or auto (cuda when a GPU is present)")
      ->capture_default_str();
  cmd->add_flag("--reference", o->reference, "CPU: only the reference kernels (the oracle)");
  cmd->add_flag("--tf32", o->tf32,
                "float32 convolutions on TF32 tensor cores (GPU; float32 accumulation)");
  cmd->add_option("--compare", o->compares, "NAME=FILE: report the error against a reference");
  cmd->add_option("--seed", o->seed, "Seed for --random")->capture_default_str();
  cmd->callback([o] { exit_on_error(run(*o)); });
}

}  // namespace kestrel::cli
