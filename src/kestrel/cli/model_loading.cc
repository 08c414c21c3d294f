#include "kestrel/cli/model_loading.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "kestrel/engine/engine_file.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/runtime/tuning.h"

namespace kestrel::cli {

bool is_engine_file(const std::string& path) { return path.ends_with(".kplan"); }

StatusOr<std::unique_ptr<engine::Engine>> load_or_build_engine(const std::string& path,
                                                               const engine::BuildOptions& build,
                                                               bool print_summary) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  if (is_engine_file(path)) {
    engine::LoadOptions load;
    load.engine = build.engine;
    engine::EngineFileInfo info;
    KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> e,
                        engine::load_engine_file(path, load, &info));
    if (build.engine.backend != "auto" && build.engine.backend != info.backend) {
      return invalid_argument("{} is a {} engine; --backend {} needs an engine built for it", path,
                              info.backend, build.engine.backend);
    }
    if (build.precision == "fp16" && info.precision != "fp16") {
      return invalid_argument("{} is a {} engine; rebuild it with --fp16", path, info.precision);
    }
    if (build.tf32 && info.precision != "tf32") {
      return invalid_argument("{} is a {} engine; rebuild it with --tf32", path, info.precision);
    }
    if (print_summary) {
      const runtime::TuningCounts tuned = runtime::count_tuning(info.tuning);
      fmt::print(
          "loaded {} in {:.3f} s: {} {} from {} (max batch {}), {} tuned choices, {} compiled "
          "kernels, on {}\n",
          path, seconds(), info.precision, info.layout, info.model_name, info.max_batch,
          tuned.choices, tuned.compiled, e->backend_summary());
    }
    return e;
  }
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(path));
  engine::BuildReport report;
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> e,
                      engine::build_engine(std::move(graph), build, &report));
  if (print_summary) {
    fmt::print("built in {:.2f} s on {}: {}\n", seconds(), e->backend_summary(),
               report.to_string());
  }
  return e;
}

StatusOr<std::vector<int64_t>> parse_batch_list(const std::string& s) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    const std::string item = s.substr(pos, comma - pos);
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 1) {
      return invalid_argument("bad batch list '{}' (expected positive sizes, e.g. 1,8,32)", s);
    }
    out.push_back(v);
    pos = comma + 1;
  }
  return out;
}

StatusOr<Tensor> random_model_input(const engine::TensorInfo& info, int64_t batch) {
  std::vector<int64_t> dims;
  for (size_t d = 0; d < info.type.shape.rank(); ++d) {
    const ir::SymDim& dim = info.type.shape[d];
    dims.push_back(dim.is_known() ? dim.value() : batch);
  }
  KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(info.type.dtype, Shape(dims)));
  // A block of random values repeated over the tensor: drawing each of a batch of 64 640x640
  // images' 79 million values took 1.8 s of a cached build. The block's odd length keeps it out
  // of step with rows and images.
  constexpr size_t kBlock = (size_t{1} << 20) - 1;
  auto fill = [&](auto span, auto convert) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    const size_t drawn = std::min(span.size(), kBlock);
    for (size_t i = 0; i < drawn; ++i) span[i] = convert(u(rng));
    for (size_t i = drawn; i < span.size(); ++i) span[i] = span[i - drawn];
  };
  if (info.type.dtype == DType::kFloat32) {
    fill(t.values<float>(), [](float v) { return v; });
  } else if (info.type.dtype == DType::kFloat16) {
    fill(t.values<Half>(), [](float v) { return Half(v); });
  } else {
    return unimplemented("random inputs are float only; input '{}' is {}", info.name,
                         info.type.dtype);
  }
  return t;
}

}  // namespace kestrel::cli
