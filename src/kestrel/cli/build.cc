// `kestrel build MODEL -o E.kplan`: optimizes a model, measures the kernels' choices for the
// batch sizes that matter, and saves the engine (engine/engine_file.h), in the spirit of
// `trtexec --saveEngine`. A timing cache (--timing-cache) keeps the measurements and the compiled
// kernels across builds.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "kestrel/base/file.h"
#include "kestrel/cli/commands.h"
#include "kestrel/cli/model_loading.h"
#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine_file.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/runtime/tuning.h"
#include "kestrel/vision/nms.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BuildCommandOptions {
  std::string model;
  std::string output;
  std::string backend = "auto";
  bool fp16 = false;
  bool tf32 = false;
  std::string layout = "auto";
  int64_t max_batch = 32;
  std::string tune_batches;  // empty: the default for the backend
  std::string timing_cache;
  std::vector<std::string> precision_overrides;  // layer=fp32
  bool dump_graph = false;
  // --nms: final detections out of the engine (YoloNms appended, see optimize/append_nms.h).
  bool nms = false;
  vision::DetectionOptions detection;
  bool multi_label = false, agnostic = false;
  std::string yolo_layout = "auto";
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One line per node: operator, name, inputs -> outputs with their types.
void dump_graph(const ir::Graph& graph) {
  for (const ir::Node* n : graph.nodes()) {
    std::string ins, outs;
    for (const ir::Value* v : n->inputs()) {
      if (!ins.empty()) ins += ", ";
      ins += v == nullptr ? "-" : (v->has_constant() ? "const " : "") + v->name();
    }
    for (const ir::Value* v : n->outputs()) {
      if (!outs.empty()) outs += ", ";
      outs += v->name() + " " + v->type().to_string();
    }
    std::string attrs;
    for (const auto& [name, value] : n->attrs().all()) {
      if (const auto* i = std::get_if<int64_t>(&value)) attrs += fmt::format(" {}={}", name, *i);
      if (const auto* s = std::get_if<std::string>(&value))
        attrs += fmt::format(" {}={}", name, *s);
    }
    fmt::print("{:<12} {:<36} ({}) -> {}{}\n", n->op_type(), n->name(), ins, outs, attrs);
  }
}

Status build(const BuildCommandOptions& o) {
  const auto start = Clock::now();
  fmt::print(stderr, "[1/4] importing {}\n", o.model);
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(o.model));
  KS_ASSIGN_OR_RETURN(std::string hash, engine::sha256_of_file(o.model));

  engine::BuildOptions build;
  build.engine.backend = o.backend;
  build.precision = o.fp16 ? "fp16" : "fp32";
  build.tf32 = o.tf32;
  build.layout = o.layout;
  build.max_batch = o.max_batch;
  for (const std::string& override_spec : o.precision_overrides) {
    const size_t eq = override_spec.rfind('=');
    if (eq == std::string::npos || override_spec.substr(eq + 1) != "fp32") {
      return invalid_argument("--precision-override takes LAYER=fp32, not '{}'", override_spec);
    }
    build.keep_float32.insert(override_spec.substr(0, eq));
  }
  if (o.nms) {
    vision::DetectionOptions d = o.detection;
    d.multi_label = o.multi_label;
    d.class_agnostic = o.agnostic;
    if (o.yolo_layout == "v5") {
      d.layout = vision::YoloLayout::kV5;
    } else if (o.yolo_layout == "v8") {
      d.layout = vision::YoloLayout::kV8;
    } else if (o.yolo_layout != "auto") {
      return invalid_argument("--yolo-layout must be auto, v5 or v8, not '{}'", o.yolo_layout);
    }
    build.nms = vision::yolo_nms_attributes(d);
  }
  fmt::print(stderr, "[2/4] optimizing and creating kernels ({}, layout {}, batch 1..{}{})\n",
             engine::precision_name(build), build.layout, build.max_batch,
             o.nms ? ", with NMS" : "");
  engine::BuildReport report;
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> e,
                      engine::build_engine(std::move(graph), build, &report));
  fmt::print(stderr, "      {} on {}\n", report.to_string(), e->backend_summary());
  if (o.dump_graph) dump_graph(e->graph());

  // The timing cache is written back only when it was read or did not exist: one that cannot be
  // used here (another GPU, damaged) is left as it is, not replaced by this build's entries.
  bool write_timing_cache = !o.timing_cache.empty();
  if (!o.timing_cache.empty()) {
    StatusOr<std::map<std::string, std::string>> cached =
        engine::read_timing_cache(o.timing_cache, e->target());
    if (cached.ok()) {
      e->seed_tuning(*cached);
      const runtime::TuningCounts counts = runtime::count_tuning(*cached);
      fmt::print(stderr, "      timing cache {}: {} choices, {} compiled kernels\n", o.timing_cache,
                 counts.choices, counts.compiled);
    } else if (cached.status().code() != StatusCode::kNotFound) {
      fmt::print(stderr, "      timing cache not used, and not written back: {}\n",
                 cached.status().to_string());
      write_timing_cache = false;
    }
  }

  // Tuning: a run per batch size makes every measuring kernel choose (and record) its algorithm.
  std::vector<int64_t> tune;
  if (!o.tune_batches.empty()) {
    KS_ASSIGN_OR_RETURN(tune, parse_batch_list(o.tune_batches));
  } else if (e->device().is_cpu()) {
    tune = {};  // nothing on the CPU measures: skip the runs
  } else {
    for (int64_t b : {1, 8, 16, 32, 64}) {
      if (b < o.max_batch) tune.push_back(b);
    }
    tune.push_back(o.max_batch);
  }
  for (size_t i = 0; i < tune.size(); ++i) {
    if (tune[i] < 1 || tune[i] > o.max_batch) {
      return invalid_argument("tuning batch {} is outside 1..{}", tune[i], o.max_batch);
    }
    fmt::print(stderr, "[3/4] tuning batch {} ({}/{})\n", tune[i], i + 1, tune.size());
    std::map<std::string, Tensor> inputs;
    for (const engine::TensorInfo& info : e->inputs()) {
      KS_ASSIGN_OR_RETURN(Tensor host, random_model_input(info, tune[i]));
      KS_ASSIGN_OR_RETURN(inputs[info.name], e->to_device(host));
    }
    engine::Engine::RunOptions keep{.outputs_on_device = true};
    KS_ASSIGN_OR_RETURN(std::vector<Tensor> out, e->run(inputs, keep));
    KS_RETURN_IF_ERROR(e->synchronize());
  }

  fmt::print(stderr, "[4/4] writing {}\n", o.output);
  engine::EngineFileInfo info;
  info.model_sha256 = hash;
  info.model_name = o.model.substr(o.model.find_last_of('/') + 1);
  info.precision = engine::precision_name(build);
  info.layout = build.layout;
  info.max_batch = o.max_batch;
  KS_RETURN_IF_ERROR(engine::save_engine_file(o.output, *e, info));
  if (write_timing_cache) KS_RETURN_IF_ERROR(engine::write_timing_cache(o.timing_cache, *e));
  KS_ASSIGN_OR_RETURN(std::string bytes, read_file(o.output));
  const runtime::TuningCounts tuned = e->tuning_counts();
  fmt::print("built {} in {:.2f} s: {:.1f} MB, {} tuned choices, {} compiled kernels, target {}\n",
             o.output, seconds_since(start), static_cast<double>(bytes.size()) / 1e6, tuned.choices,
             tuned.compiled, e->target().count("gpu") ? e->target().at("gpu") : "cpu");
  return Status();
}

}  // namespace

void add_build_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("build", "Optimize and autotune a model, save the engine file");
  auto o = std::make_shared<BuildCommandOptions>();
  cmd->add_option("model", o->model, "ONNX model file")->required();
  cmd->add_option("-o,--output", o->output, "Engine file to write (.kplan)")->required();
  cmd->add_option("--backend", o->backend, "cpu, cuda or auto")->capture_default_str();
  cmd->add_flag("--fp16", o->fp16, "Float16 storage and tensor cores, float32 accumulation");
  cmd->add_flag("--tf32", o->tf32,
                "float32 convolutions on TF32 tensor cores (GPU; float32 accumulation; not with "
                "--fp16)");
  cmd->add_option("--layout", o->layout,
                  "Convolution layout: auto (nhwc for fp16 and tf32 on the GPU), nchw, nhwc")
      ->capture_default_str();
  cmd->add_option("--max-batch", o->max_batch, "Largest batch the engine accepts")
      ->capture_default_str();
  cmd->add_option("--tune-batches", o->tune_batches,
                  "Batch sizes measured at build time (default on the GPU: 1,8,16,32,64 up to "
                  "--max-batch; others are measured on first use)");
  cmd->add_option("--timing-cache", o->timing_cache,
                  "Read measured choices and compiled kernels from this file and write them back "
                  "(faster rebuilds)");
  cmd->add_option("--precision-override", o->precision_overrides,
                  "LAYER=fp32: keep a layer (node name) in float32 under --fp16");
  cmd->add_flag("--dump-graph", o->dump_graph, "Print the optimized graph");
  CLI::Option* nms = cmd->add_flag(
      "--nms", o->nms,
      "Append YOLO decoding + batched NMS: the engine outputs boxes [N, max_det, 4], scores, "
      "classes and num_dets");
  cmd->add_option("--conf", o->detection.score_threshold, "NMS: score threshold")
      ->capture_default_str()
      ->needs(nms);
  cmd->add_option("--iou", o->detection.iou_threshold, "NMS: IoU threshold")
      ->capture_default_str()
      ->needs(nms);
  cmd->add_option("--max-det", o->detection.max_detections, "NMS: detections per image at most")
      ->capture_default_str()
      ->needs(nms);
  cmd->add_option("--top-k", o->detection.top_k, "NMS: candidates per image entering NMS")
      ->capture_default_str()
      ->needs(nms);
  cmd->add_flag("--agnostic", o->agnostic, "NMS: class-agnostic")->needs(nms);
  cmd->add_flag("--multi-label", o->multi_label, "NMS: every class over the threshold per box")
      ->needs(nms);
  cmd->add_option("--yolo-layout", o->yolo_layout,
                  "NMS: output layout auto, v5 ([N, anchors, 5+classes]) or v8 ([N, 4+classes, "
                  "anchors])")
      ->capture_default_str()
      ->needs(nms);
  cmd->callback([o] {
    if (o->max_batch < 1) exit_on_error(invalid_argument("--max-batch must be at least 1"));
    exit_on_error(build(*o));
  });
}

}  // namespace kestrel::cli
