// ServedModel (see served_model.h).
#include "kestrel/serve/core/served_model.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "kestrel/base/logging.h"
#include "kestrel/engine/backends.h"
#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine_file.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/protocol/datatypes.h"
#include "kestrel/vision/image.h"
#include "kestrel/vision/letterbox.h"

namespace kestrel::serve {
namespace {

// Where /detect requests decode and letterbox their images: one thread per core, shared by every
// model, so that the HTTP I/O threads only parse and answer.
boost::asio::thread_pool& preprocessing_pool() {
  static auto* pool =
      new boost::asio::thread_pool(std::max(1u, std::thread::hardware_concurrency()));
  return *pool;  // never destroyed: tasks may still run while the process exits
}

BatcherOptions batcher_options(const inference::ModelConfig& config, int instance_count,
                               const std::vector<int>& warm_batch_sizes) {
  BatcherOptions o;
  o.max_batch_size = config.max_batch_size();
  o.instance_count = instance_count;
  o.warm_batch_sizes = warm_batch_sizes;
  if (config.has_dynamic_batching()) {
    const auto& db = config.dynamic_batching();
    o.dynamic_batching = true;
    o.preferred_batch_sizes.assign(db.preferred_batch_size().begin(),
                                   db.preferred_batch_size().end());
    o.max_queue_delay_us = db.max_queue_delay_microseconds();
    o.priority_levels = db.priority_levels();
    o.default_priority_level = db.default_priority_level();
    const auto& qp = db.default_queue_policy();
    o.max_queue_size = qp.max_queue_size();
    o.default_timeout_us = qp.default_timeout_microseconds();
    o.allow_timeout_override = qp.allow_timeout_override();
    o.delay_on_timeout = qp.timeout_action() == inference::ModelQueuePolicy::DELAY;
  }
  return o;
}

// Runs work(0) .. work(n - 1) at once, each on a thread of its own, and returns their results in
// order. Work for one device gets a fresh thread: a thread's current CUDA device and its cuDNN
// handle belong to the first device it used.
template <typename Work>
auto on_own_threads(size_t n, Work work) -> std::vector<decltype(work(size_t{0}))> {
  std::vector<std::optional<decltype(work(size_t{0}))>> results(n);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) threads.emplace_back([&, i] { results[i].emplace(work(i)); });
  for (std::thread& t : threads) t.join();
  std::vector<decltype(work(size_t{0}))> out;
  for (auto& r : results) out.push_back(std::move(*r));
  return out;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Makes the calling thread's current CUDA device the engine's, once per thread: the engine's
// kernels launch on the thread's current device (and its cuDNN handle is made there), which
// would otherwise be GPU 0 on a fresh worker thread. Engine::synchronize() selects the device.
Status bind_thread_to(const engine::Engine& engine) {
  if (engine.device().is_cpu()) return Status();
  thread_local const engine::Engine* bound = nullptr;
  if (bound == &engine) return Status();
  KS_RETURN_IF_ERROR(engine.synchronize());
  bound = &engine;
  return Status();
}

// An engine and where it belongs in the engine cache.
struct LoadedEngine {
  std::shared_ptr<engine::Engine> engine;
  // Empty when the engine is not cached (an engine file, no cache directory).
  std::string cache_path;
  engine::EngineFileInfo cache_info;
  bool from_cache = false;
  size_t tuned_at_load = 0;  // the engine's tuning entries when it was loaded or built
};

// The engine of one model version on the device of `where`: a .kplan file loaded as it is; an
// ONNX file loaded from the engine cache when a matching engine is there, else built. The caller
// saves it to the cache after the warm-up (save_to_cache), so that the file holds the choices the
// autotuner made for the warmed batch sizes and the next start need not measure them again.
StatusOr<LoadedEngine> load_engine(const inference::ModelConfig& config, int64_t version,
                                   const std::string& path, const LoadOptions& options,
                                   const KestrelParameters& params,
                                   const InstancePlacement& where) {
  LoadedEngine result;
  engine::BuildOptions build;
  build.engine.backend = where.backend;
  build.engine.device_index = std::max(0, where.device_index);
  // tf32: float32 tensors, convolutions on TF32 tensor cores (engine::BuildOptions::tf32).
  build.precision = params.precision == "tf32" ? "fp32" : params.precision;
  build.tf32 = params.precision == "tf32";
  build.max_batch = std::max(1, config.max_batch_size());
  build.cudnn_graph = params.cudnn_graph;
  std::string nms_key;  // part of the cached engine's name
  if (params.nms) {
    build.nms = vision::yolo_nms_attributes(params.detection);
    const vision::DetectionOptions& d = params.detection;
    nms_key = fmt::format("-nms{}-{}-{}{}", d.score_threshold, d.iou_threshold, d.max_detections,
                          d.class_agnostic ? "-agnostic" : "");
  }
  if (path.ends_with(".kplan")) {
    log::info("model '{}' version {}: loading engine file {} on the {}", config.name(), version,
              path, where.device_name());
    engine::LoadOptions load;
    load.engine = build.engine;
    KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> loaded,
                        engine::load_engine_file(path, load));
    // The file decides its backend: it must be the one the instances are placed on.
    if (loaded->device().is_cpu() == where.on_gpu())
      return invalid_argument(
          "model '{}': {} is an engine for the {}, but instance_group '{}' runs on the {}",
          config.name(), path, loaded->device().is_cpu() ? "CPU" : "GPU", where.group,
          where.device_name());
    result.engine = std::move(loaded);
    return result;
  }
  std::string cached;
  std::string sha;
  if (!options.engine_cache_dir.empty()) {
    StatusOr<std::string> hash = engine::sha256_of_file(path);
    if (hash.ok()) {
      sha = *hash;
      // Engines are tuned per GPU model and architecture, so the GPU's is part of the name;
      // identical GPUs share one file.
      std::string device = where.backend;
      if (where.on_gpu()) {
        StatusOr<std::string> gpu = gpu_model_key(where.device_index);
        device += "-" + (gpu.ok() ? *gpu : fmt::format("gpu{}", where.device_index));
      }
      cached = fmt::format("{}/{}-{}-b{}-{}{}{}-r{}.kplan", options.engine_cache_dir, sha,
                           params.precision, build.max_batch, device, nms_key,
                           params.cudnn_graph ? "-graph" : "", engine::kBuilderRevision);
      result.cache_path = cached;
      result.cache_info.model_sha256 = sha;
      result.cache_info.model_name = config.name();
      result.cache_info.precision = params.precision;
      result.cache_info.layout = build.layout;
      result.cache_info.max_batch = build.max_batch;
      if (std::filesystem::exists(cached)) {
        engine::LoadOptions load;
        load.engine = build.engine;
        load.expect_model = path;
        load.expect_model_sha256 = sha;  // hashed above for the file's name
        StatusOr<std::unique_ptr<engine::Engine>> e = engine::load_engine_file(cached, load);
        if (e.ok()) {
          log::info("model '{}' version {}: loaded the cached engine {} on the {}", config.name(),
                    version, cached, where.device_name());
          result.engine = std::shared_ptr<engine::Engine>(std::move(e).value());
          result.from_cache = true;
          result.tuned_at_load = result.engine->tuning_counts().total();
          return result;
        }
        log::warn("model '{}' version {}: cached engine unusable, rebuilding: {}", config.name(),
                  version, e.status().to_string());
      }
    }
  }
  log::info("model '{}' version {}: importing {}", config.name(), version, path);
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(path));
  log::info("model '{}' version {}: building the engine ({}, max batch {}) on the {}",
            config.name(), version, params.precision, build.max_batch, where.device_name());
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> built,
                      engine::build_engine(std::move(graph), build));
  result.engine = std::move(built);
  result.tuned_at_load = result.engine->tuning_counts().total();
  return result;
}

// After the warm-up: writes a newly built engine to the cache, or rewrites a cached one whose
// warm-up measured new autotuner choices (another batch size, say).
void save_to_cache(const LoadedEngine& loaded, const std::string& model, int64_t version,
                   const std::string& cache_dir) {
  if (loaded.cache_path.empty()) return;
  const runtime::TuningCounts tuned = loaded.engine->tuning_counts();
  if (loaded.from_cache && tuned.total() == loaded.tuned_at_load) return;
  std::error_code ec;
  std::filesystem::create_directories(cache_dir, ec);
  Status saved = engine::save_engine_file(loaded.cache_path, *loaded.engine, loaded.cache_info);
  if (saved.ok())
    log::info(
        "model '{}' version {}: engine cached as {} ({} autotuner choices, {} compiled kernels)",
        model, version, loaded.cache_path, tuned.choices, tuned.compiled);
  else
    log::warn("model '{}' version {}: cannot cache the engine: {}", model, version,
              saved.to_string());
}

}  // namespace

StatusOr<std::unique_ptr<ServedModel>> ServedModel::load(inference::ModelConfig config,
                                                         int64_t version,
                                                         const std::string& model_path,
                                                         const LoadOptions& options) {
  vision::register_detection_kernels();  // engines may end in NMS (kestrel build --nms)
  KS_ASSIGN_OR_RETURN(KestrelParameters params, kestrel_parameters(config));
  auto start = std::chrono::steady_clock::now();
  std::unique_ptr<ServedModel> m(new ServedModel());
  // An engine file decides its backend (it was built for one): KIND_AUTO groups follow it.
  std::string backend = options.backend;
  if (model_path.ends_with(".kplan")) {
    KS_ASSIGN_OR_RETURN(engine::EngineFileInfo info, engine::read_engine_file_info(model_path));
    backend = info.backend;
  }
  const int gpus = backend == "cpu" ? 0 : visible_gpu_count();
  KS_ASSIGN_OR_RETURN(m->instances_, place_instances(config, gpus, backend));

  // One engine per device the instances use, in the order they first appear.
  std::vector<InstancePlacement> devices;
  std::vector<int> instances_on;  // per device
  for (const InstancePlacement& where : m->instances_) {
    auto same_device = [&](const InstancePlacement& d) {
      return d.backend == where.backend && d.device_index == where.device_index;
    };
    auto it = std::find_if(devices.begin(), devices.end(), same_device);
    if (it == devices.end()) {
      devices.push_back(where);
      instances_on.push_back(0);
      it = devices.end() - 1;
    }
    const size_t d = static_cast<size_t>(it - devices.begin());
    ++instances_on[d];
    m->engine_of_instance_.push_back(d);
  }
  // Where the instances run: one line per group and device.
  for (size_t i = 0, end; i < m->instances_.size(); i = end) {
    const InstancePlacement& where = m->instances_[i];
    for (end = i; end < m->instances_.size() && m->instances_[end] == where;) ++end;
    log::info("model '{}' version {}: instance group '{}': {} instance(s) on the {}", config.name(),
              version, where.group, end - i, where.device_name());
  }
  log::debug("model '{}' version {}: instances placed {:.1f} ms after the load began",
             config.name(), version, ms_since(start));
  // The devices' engines load (or build) at once, each on a thread of its own.
  std::vector<LoadedEngine> loaded;
  for (StatusOr<LoadedEngine>& e : on_own_threads(devices.size(), [&](size_t d) {
         return load_engine(config, version, model_path, options, params, devices[d]);
       })) {
    KS_RETURN_IF_ERROR(e.status());
    m->engines_.push_back(e->engine);
    loaded.push_back(std::move(e).value());
  }
  log::debug("model '{}' version {}: {} engine(s) loaded {:.1f} ms after the load began",
             config.name(), version, loaded.size(), ms_since(start));
  m->engine_ = m->engines_.front();
  m->version_ = version;
  m->detection_defaults_ = params.detection;
  m->decode_options_.max_pixels = options.max_image_pixels;
  // A model configured from its ONNX batches when the engine's batch axis is variable.
  if (config.max_batch_size() > 0 && !m->engine_->inputs().empty()) {
    const ir::SymShape& s = m->engine_->inputs()[0].type.shape;
    if (s.has_rank() && s.rank() > 0 && s[0].is_known() && s[0].value() == 1 &&
        config.input_size() == 0) {
      config.set_max_batch_size(0);
    }
  }
  KS_RETURN_IF_ERROR(complete_model_config(*m->engine_, &config));
  // The configuration shows the groups as placed (Triton's normalized form).
  config.clear_instance_group();
  for (auto& group : placed_instance_groups(m->instances_))
    *config.add_instance_group() = std::move(group);
  m->config_ = std::move(config);
  StatusOr<std::unique_ptr<vision::Detector>> detector = vision::Detector::create(*m->engine_);
  if (detector.ok()) {
    m->detector_ = std::move(*detector);
    // One per engine, for the image executor: each letterboxes on its engine's device.
    m->detectors_.push_back(m->detector_);
    for (size_t d = 1; d < m->engines_.size(); ++d) {
      KS_ASSIGN_OR_RETURN(std::unique_ptr<vision::Detector> other,
                          vision::Detector::create(*m->engines_[d]));
      m->detectors_.push_back(std::move(other));
    }
  }

  // Each device warms up its engine at once with the others.
  const std::vector<Status> warmed = on_own_threads(
      m->engines_.size(), [&](size_t d) { return m->warm_up(*m->engines_[d], instances_on[d]); });
  for (size_t d = 0; d < m->engines_.size(); ++d) {
    if (!warmed[d].ok())
      return warmed[d].with_context(fmt::format("on the {}", devices[d].device_name()));
  }
  log::debug("model '{}' version {}: warm {:.1f} ms after the load began", m->name(), version,
             ms_since(start));
  for (size_t d = 0; d < m->engines_.size(); ++d)
    save_to_cache(loaded[d], m->name(), version, options.engine_cache_dir);
  // The sizes every engine is warm for.
  for (size_t d = 0; d < m->engines_.size(); ++d) {
    std::vector<int> sizes;
    for (int64_t size : m->engines_[d]->warm_batch_sizes()) sizes.push_back(static_cast<int>(size));
    if (d == 0) {
      m->warm_batch_sizes_ = std::move(sizes);
    } else {
      std::erase_if(m->warm_batch_sizes_, [&](int size) {
        return std::find(sizes.begin(), sizes.end(), size) == sizes.end();
      });
    }
  }

  std::vector<std::string> output_names;
  for (const auto& out : m->engine_->outputs()) output_names.push_back(out.name);
  const BatcherOptions batching =
      batcher_options(m->config_, static_cast<int>(m->instances_.size()), m->warm_batch_sizes_);
  // On a GPU, requests' inputs are gathered into pinned memory: the copy to the device then runs
  // at the bus's speed, from memory that is already mapped (a fresh buffer per batch cost page
  // faults, then a staged copy from pageable memory).
  InputAllocator allocate_input;
  if (!m->engine_->device().is_cpu()) {
    allocate_input = [engines = m->engines_, engine_of = m->engine_of_instance_](
                         DType dtype, const Shape& shape, int instance) {
      return engines[engine_of[static_cast<size_t>(instance)]]->allocate_host(dtype, shape);
    };
  }
  // Requests whose inputs are in GPU memory (CUDA shared memory) are batched on the GPU of the
  // instance that runs them.
  DeviceInputGatherer gather_on_device;
  if (!m->engine_->device().is_cpu()) {
    gather_on_device = [engines = m->engines_, engine_of = m->engine_of_instance_](
                           std::span<const Tensor> parts, int instance) {
      return engines[engine_of[static_cast<size_t>(instance)]]->concat_rows_on_device(parts);
    };
  }
  // An engine that compiles kernels for each new batch size (cuDNN graph kernels: seconds) runs
  // every batch in the context of the smallest warm size that holds it, so that no request waits
  // for a compilation.
  std::vector<int64_t> pad_to;
  if (m->engine_->compiles_per_batch_size() && m->engine_->batch_symbol().ok()) {
    for (int size : m->warm_batch_sizes_) pad_to.push_back(size);
    std::sort(pad_to.begin(), pad_to.end());
    log::info(
        "model '{}' version {}: its engine compiles kernels for each batch size: batches run "
        "padded to the next warm size",
        m->name(), version);
  }
  KS_ASSIGN_OR_RETURN(
      m->batcher_,
      DynamicBatcher::create(
          batching, std::move(output_names),
          [engines = m->engines_, engine_of = m->engine_of_instance_, pad_to](
              const std::map<std::string, Tensor>& inputs,
              int instance) -> StatusOr<std::vector<Tensor>> {
            const engine::Engine& engine = *engines[engine_of[static_cast<size_t>(instance)]];
            KS_RETURN_IF_ERROR(bind_thread_to(engine));
            engine::Engine::RunOptions run;
            const Tensor& first = inputs.begin()->second;
            if (!pad_to.empty() && first.rank() > 0) {
              auto it = std::lower_bound(pad_to.begin(), pad_to.end(), first.shape()[0]);
              if (it != pad_to.end()) run.pad_batch_to = *it;
            }
            return engine.run(inputs, run);
          },
          &m->stats_, m->image_preparer(), allocate_input, gather_on_device));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("model '{}' version {}: READY in {:.2f} s ({}, {} instance(s), max batch {}{})",
            m->name(), version, seconds, m->engine_->backend_summary(), m->instances_.size(),
            m->config_.max_batch_size(), m->detector_ ? ", detector" : "");
  if (batching.dynamic_batching && batching.max_batch_size > 0) {
    auto list = [](const std::vector<int>& sizes) {
      std::string text;
      for (int size : sizes) text += fmt::format("{}{}", text.empty() ? "" : ", ", size);
      return text;
    };
    std::vector<int> preferred = batching.preferred_batch_sizes;
    if (preferred.empty())
      for (int size : m->warm_batch_sizes_)
        if (size >= 2 && size <= batching.max_batch_size) preferred.push_back(size);
    log::info(
        "model '{}' version {}: engines warm for batch sizes [{}]; preferred batch sizes [{}] "
        "({})",
        m->name(), version, list(m->warm_batch_sizes_), list(preferred),
        batching.preferred_batch_sizes.empty() ? "the warm ones of 2 and more" : "configured");
  }
  return m;
}

ServedModel::~ServedModel() { stop(); }

void ServedModel::stop() {
  if (batcher_) batcher_->stop();
}

Status ServedModel::warm_up(const engine::Engine& engine, int instances) const {
  KS_RETURN_IF_ERROR(bind_thread_to(engine));
  // Without configured samples, one zero batch of one runs when every dim is fixed, so that the
  // first client does not pay for planning the execution context.
  bool fixed_dims = true;
  for (const auto& in : config_.input())
    fixed_dims = fixed_dims && std::find(in.dims().begin(), in.dims().end(), -1) == in.dims().end();
  auto zero_sample = [&](std::string name, uint32_t batch) {
    inference::ModelWarmup w;
    w.set_name(std::move(name));
    w.set_batch_size(batch);
    for (const auto& in : config_.input()) {
      auto& input = (*w.mutable_inputs())[in.name()];
      input.set_data_type(in.data_type());
      input.mutable_dims()->CopyFrom(in.dims());
      input.set_zero_data(true);
    }
    return w;
  };
  const int max_batch = config_.max_batch_size();
  const bool warm_sizes = !engine.device().is_cpu() && max_batch > 0 && fixed_dims;
  std::vector<inference::ModelWarmup> samples(config_.model_warmup().begin(),
                                              config_.model_warmup().end());
  if (samples.empty() && fixed_dims) samples.push_back(zero_sample("default", 1));
  std::mt19937 rng(1234);
  auto make_inputs =
      [&](const inference::ModelWarmup& sample) -> StatusOr<std::map<std::string, Tensor>> {
    std::map<std::string, Tensor> inputs;
    for (const auto& in : config_.input()) {
      auto it = sample.inputs().find(in.name());
      if (it == sample.inputs().end())
        return invalid_argument("model_warmup '{}' has no data for input '{}'", sample.name(),
                                in.name());
      const auto& spec = it->second;
      std::vector<int64_t> dims;
      if (config_.max_batch_size() > 0) dims.push_back(std::max<uint32_t>(1, sample.batch_size()));
      const auto& source_dims = spec.dims_size() > 0 ? spec.dims() : in.dims();
      dims.insert(dims.end(), source_dims.begin(), source_dims.end());
      DType dtype = protocol::dtype_from_config(in.data_type());
      KS_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(dtype, Shape(dims)));
      if (spec.has_input_data_file())
        return unimplemented("model_warmup '{}': input_data_file is not supported", sample.name());
      if (spec.has_random_data() && dtype == DType::kFloat32)
        for (float& v : t.values<float>()) v = std::uniform_real_distribution<float>(0, 1)(rng);
      inputs[in.name()] = std::move(t);
    }
    return inputs;
  };
  const size_t tuned_before = engine.tuning_counts().total();
  for (const auto& sample : samples) {
    const auto start = std::chrono::steady_clock::now();
    KS_ASSIGN_OR_RETURN(auto inputs, make_inputs(sample));
    int runs = std::max<int>(1, static_cast<int>(sample.count()));
    for (int i = 0; i < runs; ++i) {
      StatusOr<std::vector<Tensor>> out = engine.run(inputs);
      if (!out.ok()) return out.status().with_context("warm-up '" + sample.name() + "'");
    }
    log::debug("model '{}': warm-up '{}' ran in {:.1f} ms", name(), sample.name(), ms_since(start));
  }

  // On a GPU: the batch sizes the batcher forms most, each recorded as a CUDA graph now, in as
  // many execution contexts as the device has instances (runs at once, so that each instance
  // finds a context of its own: a run that finds none idle plans and records another). The CPU
  // has no graphs to record, and planning a context there costs little.
  //
  // The autotuner measures kernels when a size first runs; it needs the GPU to itself then. So
  // each size runs alone first, one after another, unless the samples' runs measured nothing:
  // then the engine came with its choices (a cached engine after its first start) and every run
  // of every size goes at once.
  if (!warm_sizes) return Status();
  std::vector<int> sizes;
  if (config_.has_dynamic_batching())
    sizes.assign(config_.dynamic_batching().preferred_batch_size().begin(),
                 config_.dynamic_batching().preferred_batch_size().end());
  sizes.push_back(max_batch);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  const bool measures = samples.empty() || engine.tuning_counts().total() != tuned_before;
  // Zero inputs made on the device from one row, and outputs left there: a batch of 32 640x640
  // images is 157 MB in float32 and its raw YOLO output 274 MB, which cost far more to fill,
  // pin and copy over the bus than the runs themselves.
  KS_ASSIGN_OR_RETURN(const auto one_row, make_inputs(zero_sample("one row", 1)));
  engine::Engine::RunOptions on_device;
  on_device.outputs_on_device = true;
  std::vector<std::map<std::string, Tensor>> inputs_of(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (const auto& [input, row] : one_row) {
      KS_ASSIGN_OR_RETURN(Tensor device_row, engine.to_device(row));
      const std::vector<Tensor> rows(static_cast<size_t>(sizes[i]), device_row);
      KS_ASSIGN_OR_RETURN(inputs_of[i][input], engine.concat_rows_on_device(rows));
    }
    if (!measures) continue;
    const auto start = std::chrono::steady_clock::now();
    KS_RETURN_IF_ERROR(engine.run(inputs_of[i], on_device)
                           .status()
                           .with_context(fmt::format("warm-up at batch size {}", sizes[i])));
    log::debug("model '{}': warm-up at batch size {} alone in {:.1f} ms", name(), sizes[i],
               ms_since(start));
  }
  // `instances` runs of each size at once (each finds or plans a context of its own).
  std::vector<size_t> runs;
  for (size_t i = 0; i < sizes.size(); ++i)
    if (!measures || instances > 1) runs.insert(runs.end(), instances, i);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Status> results = on_own_threads(runs.size(), [&](size_t k) -> Status {
    KS_RETURN_IF_ERROR(bind_thread_to(engine));
    return engine.run(inputs_of[runs[k]], on_device).status();
  });
  for (size_t k = 0; k < runs.size(); ++k)
    if (!results[k].ok())
      return results[k].with_context(fmt::format("warm-up at batch size {}", sizes[runs[k]]));
  log::debug("model '{}': warm-up of {} runs at once ({} of each size) in {:.1f} ms", name(),
             runs.size(), instances, ms_since(start));
  return Status();
}

void ServedModel::infer(InferRequest request, InferCallback done) {
  auto check = [&]() -> Status {
    const bool batched = config_.max_batch_size() > 0;
    for (size_t i = 0; i < request.inputs.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (request.inputs[i].name == request.inputs[j].name)
          return invalid_argument("input '{}' is given twice", request.inputs[i].name);
    for (const NamedTensor& in : request.inputs) {
      auto it = std::find_if(config_.input().begin(), config_.input().end(),
                             [&](const auto& c) { return c.name() == in.name; });
      if (it == config_.input().end())
        return invalid_argument("unexpected inference input '{}' for model '{}'", in.name, name());
      if (!in.tensor.is_cpu() && std::any_of(engines_.begin(), engines_.end(),
                                             [](const auto& e) { return e->device().is_cpu(); }))
        return invalid_argument(
            "input '{}' is in GPU memory (CUDA shared memory), and model '{}' runs on the CPU: "
            "use system shared memory or send the tensor",
            in.name, name());
      DType want = protocol::dtype_from_config(it->data_type());
      if (in.tensor.dtype() != want)
        return invalid_argument("input '{}': datatype {} but the model expects {}", in.name,
                                protocol::kserve_datatype(in.tensor.dtype()),
                                protocol::kserve_datatype(want));
      const Shape& s = in.tensor.shape();
      size_t offset = batched ? 1 : 0;
      bool ok = s.rank() == static_cast<size_t>(it->dims_size()) + offset;
      for (size_t d = 0; ok && d < static_cast<size_t>(it->dims_size()); ++d)
        ok = it->dims(static_cast<int>(d)) == -1 || it->dims(static_cast<int>(d)) == s[d + offset];
      if (!ok) {
        std::string expected = batched ? "[-1" : "[";
        for (int d = 0; d < it->dims_size(); ++d)
          expected += fmt::format("{}{}", (batched || d > 0) ? "," : "", it->dims(d));
        return invalid_argument("input '{}': shape {} does not match the model's {}]", in.name,
                                s.to_string(), expected);
      }
      if (batched && (s[0] < 1 || s[0] > config_.max_batch_size()))
        return invalid_argument("input '{}': batch size {} exceeds max_batch_size {}", in.name,
                                s[0], config_.max_batch_size());
    }
    for (const auto& c : config_.input())
      if (std::none_of(request.inputs.begin(), request.inputs.end(),
                       [&](const NamedTensor& in) { return in.name == c.name(); }))
        return invalid_argument("expected input '{}' for model '{}' is missing", c.name(), name());
    for (const std::string& out : request.outputs)
      if (std::none_of(config_.output().begin(), config_.output().end(),
                       [&](const auto& c) { return c.name() == out; }))
        return invalid_argument("unexpected inference output '{}' for model '{}'", out, name());
    return Status();
  };
  Status valid = check();
  if (!valid.ok()) {
    stats_.record_failure(0);
    return done(valid);
  }
  submit(std::move(request), std::move(done));
}

void ServedModel::submit(InferRequest request, InferCallback done) {
  request.model_name = name();
  request.model_version = std::to_string(version_);
  Status queued = batcher_->enqueue(std::move(request), done);
  if (!queued.ok()) {
    stats_.record_failure(0);
    done(queued);
  }
}

void ServedModel::detect(std::span<const std::string_view> images,
                         const vision::DetectionOptions& options,
                         std::shared_ptr<CancelToken> cancel, DetectCallback done) {
  if (!detector_) return done(failed_precondition("model '{}' is not a YOLO detector", name()));
  if (images.empty()) return done(invalid_argument("no image in the request"));
  if (detector_->has_nms()) {
    // The engine's NMS settings are fixed: a request may only be stricter about scores.
    const vision::DetectionOptions& built = detector_->nms_options();
    if (options.iou_threshold != built.iou_threshold ||
        options.score_threshold < built.score_threshold) {
      return done(invalid_argument(
          "model '{}' runs NMS in its engine with iou_threshold {} and score_threshold {}: a "
          "request may raise score_threshold, not lower it or change iou_threshold",
          name(), built.iou_threshold, built.score_threshold));
    }
  }
  std::vector<std::string_view> owned(images.begin(), images.end());
  std::shared_ptr<ServedModel> self = weak_from_this().lock();
  if (!self)
    return decode_and_detect(owned, options, std::move(cancel), std::move(done),
                             std::chrono::steady_clock::now());
  boost::asio::post(preprocessing_pool(), [self, owned = std::move(owned), options,
                                           cancel = std::move(cancel), done = std::move(done),
                                           posted = std::chrono::steady_clock::now()]() mutable {
    self->decode_and_detect(owned, options, std::move(cancel), std::move(done), posted);
  });
}

ImageBatchPreparer ServedModel::image_preparer() const {
  if (detectors_.empty() || config_.max_batch_size() <= 0) return nullptr;
  return
      [engines = engines_, engine_of = engine_of_instance_, detectors = detectors_](
          std::span<const Tensor> images, int instance) -> StatusOr<std::map<std::string, Tensor>> {
        const size_t d = engine_of[static_cast<size_t>(instance)];
        const engine::Engine& engine = *engines[d];
        const vision::Detector& detector = *detectors[d];
        KS_RETURN_IF_ERROR(bind_thread_to(engine));
        std::vector<vision::LetterboxParams> params;  // each request computed its own
        StatusOr<Tensor> input = engine.device().is_cpu()
                                     ? detector.preprocess(images, &params)
                                     : detector.preprocess_on_device(images, &params);
        KS_RETURN_IF_ERROR(input.status());
        return std::map<std::string, Tensor>{{engine.inputs()[0].name, std::move(*input)}};
      };
}

void ServedModel::decode_and_detect(const std::vector<std::string_view>& images,
                                    const vision::DetectionOptions& options,
                                    std::shared_ptr<CancelToken> cancel, DetectCallback done,
                                    std::chrono::steady_clock::time_point posted) {
  const auto started = std::chrono::steady_clock::now();
  std::vector<Tensor> decoded;
  for (size_t i = 0; i < images.size(); ++i) {
    StatusOr<Tensor> image = vision::decode_image(images[i], decode_options_);
    if (!image.ok())
      return done(
          Status(image.status().code(), fmt::format("image {}: {}", i, image.status().message())));
    decoded.push_back(std::move(*image));
  }
  auto ns = [](auto from, auto to) {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count());
  };
  stats_.record_decode(static_cast<int64_t>(decoded.size()), ns(posted, started),
                       ns(started, std::chrono::steady_clock::now()));
  // Each image's placement in the model input, as the letterbox will place it.
  std::vector<vision::LetterboxParams> placements;
  for (size_t i = 0; i < decoded.size(); ++i) {
    StatusOr<vision::LetterboxParams> p =
        vision::compute_letterbox(decoded[i].shape()[1], decoded[i].shape()[0],
                                  detector_->input_width(), detector_->input_height());
    if (!p.ok()) return done(p.status().with_context(fmt::format("image {}", i)));
    placements.push_back(*p);
  }
  // Chunks of at most max_batch_size images, each one request through the scheduler; the callback
  // of the last chunk to finish answers.
  const size_t chunk =
      config_.max_batch_size() > 0 ? static_cast<size_t>(config_.max_batch_size()) : 1;
  struct Gather {
    std::mutex mutex;
    size_t remaining = 0;
    Status error;
    std::vector<DetectResult> results;
    std::vector<vision::LetterboxParams> params;
  };
  auto gather = std::make_shared<Gather>();
  gather->results.resize(decoded.size());
  for (size_t i = 0; i < decoded.size(); ++i) {
    gather->results[i].width = decoded[i].shape()[1];
    gather->results[i].height = decoded[i].shape()[0];
  }
  std::vector<InferRequest> requests;
  gather->params = std::move(placements);
  for (size_t begin = 0; begin < decoded.size(); begin += chunk) {
    size_t end = std::min(decoded.size(), begin + chunk);
    InferRequest r;
    if (config_.max_batch_size() > 0) {
      // The batcher's image executor letterboxes them with the other requests' images, on the
      // engine's device: uint8 pixels cross PCIe, not float32 model inputs.
      r.images.assign(decoded.begin() + static_cast<std::ptrdiff_t>(begin),
                      decoded.begin() + static_cast<std::ptrdiff_t>(end));
    } else {
      // No batch axis: one letterboxed image per request, through the tensor path.
      std::vector<vision::LetterboxParams> params;
      StatusOr<Tensor> input = detector_->preprocess(
          std::span<const Tensor>(decoded).subspan(begin, end - begin), &params);
      if (!input.ok()) return done(input.status());
      Tensor t = std::move(*input);
      std::vector<int64_t> dims(t.shape().begin() + 1, t.shape().end());
      r.inputs.push_back({engine_->inputs()[0].name, t.reshaped(Shape(dims))});
    }
    for (const std::string& name : detector_->output_names()) r.outputs.push_back(name);
    r.cancel = cancel;
    r.id = std::to_string(begin);
    requests.push_back(std::move(r));
  }
  gather->remaining = requests.size();
  std::shared_ptr<vision::Detector> detector = detector_;
  for (InferRequest& r : requests) {
    size_t begin = std::stoul(r.id);
    submit(
        std::move(r), [gather, detector, begin, options, done](StatusOr<InferResponse> response) {
          Status status = response.status();
          if (response.ok()) {
            std::vector<Tensor> outs;
            for (const auto& o : response->outputs) outs.push_back(o.tensor);
            Tensor& out = outs[0];  // the raw output, or NMS's boxes [N, max_det, 4]
            size_t n = static_cast<size_t>(out.rank() > 0 ? out.shape()[0] : 1);
            if (!detector->has_nms() && out.rank() == 2) {  // no batch axis: one image per request
              std::vector<int64_t> dims{1};
              dims.insert(dims.end(), out.shape().begin(), out.shape().end());
              out = out.reshaped(Shape(dims));
              n = 1;
            }
            StatusOr<std::vector<std::vector<vision::Detection>>> dets = detector->postprocess(
                outs, std::span<const vision::LetterboxParams>(gather->params).subspan(begin, n),
                options);
            if (!dets.ok()) {
              status = dets.status();
            } else {
              std::lock_guard lock(gather->mutex);
              for (size_t k = 0; k < n; ++k)
                gather->results[begin + k].detections = std::move((*dets)[k]);
            }
          }
          bool last;
          {
            std::lock_guard lock(gather->mutex);
            if (!status.ok() && gather->error.ok()) gather->error = status;
            last = --gather->remaining == 0;
          }
          if (!last) return;
          if (!gather->error.ok()) return done(gather->error);
          done(std::move(gather->results));
        });
  }
}

inference::ModelMetadataResponse ServedModel::metadata() const {
  inference::ModelMetadataResponse m;
  m.set_name(name());
  m.add_versions(std::to_string(version_));
  m.set_platform(config_.platform().empty() ? config_.backend() : config_.platform());
  auto fill = [&](auto* t, const std::string& n, inference::DataType type, const auto& dims) {
    t->set_name(n);
    t->set_datatype(std::string(protocol::kserve_datatype(protocol::dtype_from_config(type))));
    if (config_.max_batch_size() > 0) t->add_shape(-1);
    for (int64_t d : dims) t->add_shape(d);
  };
  for (const auto& in : config_.input()) fill(m.add_inputs(), in.name(), in.data_type(), in.dims());
  for (const auto& out : config_.output())
    fill(m.add_outputs(), out.name(), out.data_type(), out.dims());
  return m;
}

inference::ModelStatistics ServedModel::statistics() const {
  inference::ModelStatistics s = stats_.snapshot().proto;
  s.set_name(name());
  s.set_version(std::to_string(version_));
  return s;
}

}  // namespace kestrel::serve
