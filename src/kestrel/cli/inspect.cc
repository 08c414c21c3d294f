// `kestrel inspect MODEL`: what is in a model, and whether Kestrel can run it; for a .kplan engine
// file, what it was built from and for (precision, TF32 included, target, tuned choices).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "kestrel/cli/commands.h"
#include "kestrel/cli/model_loading.h"
#include "kestrel/engine/backends.h"
#include "kestrel/engine/engine_file.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/op_schema.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/runtime/cpu/cpu_backend.h"
#include "kestrel/runtime/tuning.h"

namespace kestrel::cli {
namespace {

std::string human(double v, std::string_view unit) {
  const char* prefixes[] = {"", "K", "M", "G", "T"};
  int p = 0;
  while (v >= 1000 && p < 4) {
    v /= 1000;
    ++p;
  }
  return fmt::format("{:.{}f} {}{}", v, p == 0 ? 0 : 2, prefixes[p], unit);
}

Status inspect(const std::string& path) {
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(path));
  std::unique_ptr<ir::NodeEvaluator> evaluator = engine::make_cpu_evaluator();

  fmt::print("model      {}\n", path);
  fmt::print("opset      {}   producer: {}\n", graph->opset_version,
             graph->producer_name.empty() ? "-" : graph->producer_name);
  for (const auto& [key, value] : graph->metadata) {
    const std::string shown = value.size() > 70 ? value.substr(0, 67) + "..." : value;
    fmt::print("metadata   {} = {}\n", key, shown);
  }

  // Symbolic shapes need every operator known; report unknown ones instead of failing outright.
  std::map<std::string, int> op_counts;
  for (const ir::Node* n : graph->nodes()) ++op_counts[n->op_type()];
  const std::vector<std::string_view> cpu_ops = runtime::cpu_supported_ops();
  bool all_supported = true;
  for (const auto& [op, count] : op_counts) {
    all_supported &=
        ir::find_op_schema(op) != nullptr && std::binary_search(cpu_ops.begin(), cpu_ops.end(), op);
  }
  const Status shapes =
      all_supported ? ir::annotate_symbolic_shapes(*graph, evaluator.get()) : Status();

  fmt::print("\ninputs\n");
  for (const ir::Value* v : graph->inputs())
    fmt::print("  {:<24} {}\n", v->name(), v->type().to_string());
  fmt::print("outputs\n");
  for (const ir::Value* v : graph->outputs()) {
    fmt::print("  {:<24} {}\n", v->name(), shapes.ok() ? v->type().to_string() : "?");
  }

  int64_t params = 0, param_bytes = 0;
  for (const ir::Value* v : graph->values()) {
    if (!v->has_constant() || v->constant().num_elements() < 2) continue;  // skip scalars
    params += v->constant().num_elements();
    param_bytes += static_cast<int64_t>(v->constant().nbytes());
  }

  std::map<std::string, int64_t> op_flops;
  int64_t total_flops = -1;
  if (all_supported && shapes.ok()) {
    // Per image: every symbol bound to 1.
    ir::InferenceOptions options;
    options.evaluator = evaluator.get();
    StatusOr<ir::InferredTypes> types = ir::infer_types(*graph, options);
    if (types.ok()) {
      StatusOr<std::unordered_map<const ir::Node*, int64_t>> flops =
          ir::count_flops(*graph, *types);
      if (flops.ok()) {
        total_flops = 0;
        for (const auto& [node, f] : *flops) {
          op_flops[node->op_type()] += f;
          total_flops += f;
        }
      }
    }
  }

  fmt::print("\n{:<22} {:>6} {:>12}  {:<6} {:<6}\n", "operator", "count", "FLOPs/image", "cpu",
             "cuda");
  for (const auto& [op, count] : op_counts) {
    const bool known = ir::find_op_schema(op) != nullptr;
    const bool cpu = known && std::binary_search(cpu_ops.begin(), cpu_ops.end(), op);
    fmt::print("{:<22} {:>6} {:>12}  {:<6} {:<6}\n", op, count,
               op_flops.count(op) ? human(static_cast<double>(op_flops[op]), "") : "-",
               cpu ? "yes" : "NO", "-");
  }
  fmt::print("\nnodes      {}\n", graph->num_nodes());
  fmt::print("parameters {} ({})\n", human(static_cast<double>(params), ""),
             human(static_cast<double>(param_bytes), "B"));
  if (total_flops >= 0) {
    fmt::print("FLOPs      {} per image (every symbol = 1)\n",
               human(static_cast<double>(total_flops), "FLOP"));
  }
  if (!shapes.ok()) fmt::print("shapes     could not be inferred: {}\n", shapes.to_string());
  fmt::print("supported  {}\n", all_supported ? "yes: every operator runs on the CPU backend"
                                              : "NO: see the operators marked NO above");
  return all_supported ? shapes
                       : unimplemented("the model uses operators Kestrel does not support");
}

// An engine file's description (after its integrity checks; it need not match this machine).
Status inspect_engine_file(const std::string& path) {
  KS_ASSIGN_OR_RETURN(engine::EngineFileInfo info, engine::read_engine_file_info(path));
  const std::map<std::string, std::string> meaning = {
      {"fp32", "float32"},
      {"tf32", "float32, convolutions on TF32 tensor cores (float32 accumulation)"},
      {"fp16", "float16 storage, float32 accumulation"}};
  const auto it = meaning.find(info.precision);
  fmt::print("engine     {} (format {}, Kestrel {})\n", path, info.format_version,
             info.kestrel_version.empty() ? "-" : info.kestrel_version);
  fmt::print("model      {} (sha256 {})\n", info.model_name.empty() ? "-" : info.model_name,
             info.model_sha256.empty() ? "-" : info.model_sha256);
  fmt::print("precision  {}{}\n", info.precision,
             it == meaning.end() ? "" : fmt::format(": {}", it->second));
  fmt::print("layout     {}\n", info.layout);
  fmt::print("max batch  {}\n", info.max_batch);
  fmt::print("backend    {}\n", info.backend);
  for (const auto& [key, value] : info.target) fmt::print("target     {} = {}\n", key, value);
  const runtime::TuningCounts tuned = runtime::count_tuning(info.tuning);
  fmt::print("tuning     {} measured choices, {} compiled kernels\n", tuned.choices,
             tuned.compiled);
  if (info.created_unix > 0) {
    const std::time_t t = static_cast<std::time_t>(info.created_unix);
    std::tm utc{};
    gmtime_r(&t, &utc);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
    fmt::print("created    {}\n", when);
  }
  return Status();
}

// Every operator Kestrel knows, and which backends have a kernel for it.
Status list_operators() {
  const std::vector<std::string_view> cpu_ops = runtime::cpu_supported_ops();
  size_t count = 0;
  for (const ir::OpSchema& s : ir::all_op_schemas()) {
    const bool cpu = std::binary_search(cpu_ops.begin(), cpu_ops.end(), s.op_type);
    fmt::print("{:<24} {}\n", s.op_type, cpu ? "cpu" : "-");
    ++count;
  }
  fmt::print("{} operators\n", count);
  return Status();
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect",
                                 "Show a model's inputs, outputs, operators, parameters "
                                 "and FLOPs, and whether Kestrel supports it");
  auto path = std::make_shared<std::string>();
  auto operators = std::make_shared<bool>(false);
  cmd->add_option("model", *path, "ONNX model or .kplan engine file");
  cmd->add_flag("--operators", *operators, "List the operators Kestrel supports instead");
  cmd->callback([path, operators] {
    if (*operators) return exit_on_error(list_operators());
    if (path->empty()) exit_on_error(invalid_argument("give a model file, or --operators"));
    exit_on_error(is_engine_file(*path) ? inspect_engine_file(*path) : inspect(*path));
  });
}

}  // namespace kestrel::cli
