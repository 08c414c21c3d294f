// ServedModel (see served_model.h).
#include "kestrel/serve/core/served_model.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "kestrel/base/logging.h"
#include "kestrel/engine/backends.h"
#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine_file.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/protocol/datatypes.h"
#include "kestrel/vision/image.h"

namespace kestrel::serve {
namespace {

// Where /detect requests decode and letterbox their images: one thread per core, shared by every
// model, so that the HTTP I/O threads only parse and answer.
boost::asio::thread_pool& preprocessing_pool() {
  static auto* pool =
      new boost::asio::thread_pool(std::max(1u, std::thread::hardware_concurrency()));
  return *pool;  // never destroyed: tasks may still run while the process exits
}

int instance_count(const inference::ModelConfig& config) {
  int count = 0;
  for (const auto& group : config.instance_group()) {
    // Triton: a group without gpus gets `count` instances (1 when unset); on the CPU backend
    // KIND_GPU groups run as CPU instances, once per listed GPU.
    int per = group.count() > 0 ? group.count() : 1;
    count += per * std::max(1, group.gpus_size());
  }
  return std::max(1, count);
}

BatcherOptions batcher_options(const inference::ModelConfig& config) {
  BatcherOptions o;
  o.max_batch_size = config.max_batch_size();
  o.instance_count = instance_count(config);
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

// The engine of one model version: a .kplan file loaded as it is; an ONNX file loaded from the
// engine cache when a matching engine is there, else built (and saved to the cache).
StatusOr<std::unique_ptr<engine::Engine>> load_engine(const inference::ModelConfig& config,
                                                      int64_t version, const std::string& path,
                                                      const LoadOptions& options,
                                                      const KestrelParameters& params) {
  engine::BuildOptions build;
  build.engine.backend = options.backend;
  build.precision = params.precision;
  build.max_batch = std::max(1, config.max_batch_size());
  std::string nms_key;  // part of the cached engine's name
  if (params.nms) {
    build.nms = vision::yolo_nms_attributes(params.detection);
    const vision::DetectionOptions& d = params.detection;
    nms_key = fmt::format("-nms{}-{}-{}{}", d.score_threshold, d.iou_threshold, d.max_detections,
                          d.class_agnostic ? "-agnostic" : "");
  }
  if (path.ends_with(".kplan")) {
    log::info("model '{}' version {}: loading engine file {}", config.name(), version, path);
    engine::LoadOptions load;
    load.engine = build.engine;
    return engine::load_engine_file(path, load);
  }
  std::string cached;
  std::string sha;
  if (!options.engine_cache_dir.empty()) {
    StatusOr<std::string> hash = engine::sha256_of_file(path);
    if (hash.ok()) {
      sha = *hash;
      std::string backend =
          options.backend == "auto" ? (engine::cuda_available() ? "cuda" : "cpu") : options.backend;
      cached = fmt::format("{}/{}-{}-b{}-{}{}.kplan", options.engine_cache_dir, sha,
                           params.precision, build.max_batch, backend, nms_key);
      if (std::filesystem::exists(cached)) {
        engine::LoadOptions load;
        load.engine = build.engine;
        load.expect_model = path;
        StatusOr<std::unique_ptr<engine::Engine>> e = engine::load_engine_file(cached, load);
        if (e.ok()) {
          log::info("model '{}' version {}: loaded the cached engine {}", config.name(), version,
                    cached);
          return e;
        }
        log::warn("model '{}' version {}: cached engine unusable, rebuilding: {}", config.name(),
                  version, e.status().to_string());
      }
    }
  }
  log::info("model '{}' version {}: importing {}", config.name(), version, path);
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(path));
  log::info("model '{}' version {}: building the engine ({}, max batch {})", config.name(), version,
            params.precision, build.max_batch);
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> built,
                      engine::build_engine(std::move(graph), build));
  if (!cached.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.engine_cache_dir, ec);
    engine::EngineFileInfo info;
    info.model_sha256 = sha;
    info.model_name = config.name();
    info.precision = params.precision;
    info.layout = build.layout;
    info.max_batch = build.max_batch;
    Status saved = engine::save_engine_file(cached, *built, info);
    if (saved.ok())
      log::info("model '{}' version {}: engine cached as {}", config.name(), version, cached);
    else
      log::warn("model '{}' version {}: cannot cache the engine: {}", config.name(), version,
                saved.to_string());
  }
  return built;
}

}  // namespace

StatusOr<std::unique_ptr<ServedModel>> ServedModel::load(inference::ModelConfig config,
                                                         int64_t version,
                                                         const std::string& model_path,
                                                         const LoadOptions& options) {
  vision::register_detection_kernels();  // engines may end in NMS (kestrel build --nms)
  KS_ASSIGN_OR_RETURN(KestrelParameters params, kestrel_parameters(config));
  auto start = std::chrono::steady_clock::now();
  KS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> built,
                      load_engine(config, version, model_path, options, params));

  std::unique_ptr<ServedModel> m(new ServedModel());
  m->engine_ = std::move(built);
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
  m->config_ = std::move(config);
  StatusOr<std::unique_ptr<vision::Detector>> detector = vision::Detector::create(*m->engine_);
  if (detector.ok()) m->detector_ = std::move(*detector);

  KS_RETURN_IF_ERROR(m->warm_up());
  std::vector<std::string> output_names;
  for (const auto& out : m->engine_->outputs()) output_names.push_back(out.name);
  std::shared_ptr<engine::Engine> engine = m->engine_;
  KS_ASSIGN_OR_RETURN(m->batcher_, DynamicBatcher::create(
                                       batcher_options(m->config_), std::move(output_names),
                                       [engine](const std::map<std::string, Tensor>& inputs, int) {
                                         return engine->run(inputs);
                                       },
                                       &m->stats_));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("model '{}' version {}: READY in {:.2f} s ({}, {} instance(s), max batch {}{})",
            m->name(), version, seconds, m->engine_->backend_summary(),
            batcher_options(m->config_).instance_count, m->config_.max_batch_size(),
            m->detector_ ? ", detector" : "");
  return m;
}

ServedModel::~ServedModel() { stop(); }

void ServedModel::stop() {
  if (batcher_) batcher_->stop();
}

Status ServedModel::warm_up() {
  // Without configured samples, one zero batch of one runs when every dim is fixed, so that the
  // first client does not pay for planning the execution context.
  std::vector<inference::ModelWarmup> samples(config_.model_warmup().begin(),
                                              config_.model_warmup().end());
  if (samples.empty()) {
    inference::ModelWarmup w;
    w.set_name("default");
    w.set_batch_size(1);
    for (const auto& in : config_.input()) {
      if (std::find(in.dims().begin(), in.dims().end(), -1) != in.dims().end()) return Status();
      auto& input = (*w.mutable_inputs())[in.name()];
      input.set_data_type(in.data_type());
      input.mutable_dims()->CopyFrom(in.dims());
      input.set_zero_data(true);
    }
    samples.push_back(std::move(w));
  }
  std::mt19937 rng(1234);
  for (const auto& sample : samples) {
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
    int runs = std::max<int>(1, static_cast<int>(sample.count()));
    for (int i = 0; i < runs; ++i) {
      StatusOr<std::vector<Tensor>> out = engine_->run(inputs);
      if (!out.ok()) return out.status().with_context("warm-up '" + sample.name() + "'");
    }
  }
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
  if (!self) return decode_and_detect(owned, options, std::move(cancel), std::move(done));
  boost::asio::post(preprocessing_pool(),
                    [self, owned = std::move(owned), options, cancel = std::move(cancel),
                     done = std::move(done)]() mutable {
                      self->decode_and_detect(owned, options, std::move(cancel), std::move(done));
                    });
}

void ServedModel::decode_and_detect(const std::vector<std::string_view>& images,
                                    const vision::DetectionOptions& options,
                                    std::shared_ptr<CancelToken> cancel, DetectCallback done) {
  std::vector<Tensor> decoded;
  for (size_t i = 0; i < images.size(); ++i) {
    StatusOr<Tensor> image = vision::decode_image(images[i], decode_options_);
    if (!image.ok())
      return done(
          Status(image.status().code(), fmt::format("image {}: {}", i, image.status().message())));
    decoded.push_back(std::move(*image));
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
  gather->params.resize(decoded.size());
  for (size_t begin = 0; begin < decoded.size(); begin += chunk) {
    size_t end = std::min(decoded.size(), begin + chunk);
    std::vector<vision::LetterboxParams> params;
    StatusOr<Tensor> input = detector_->preprocess(
        std::span<const Tensor>(decoded).subspan(begin, end - begin), &params);
    if (!input.ok()) return done(input.status());
    std::copy(params.begin(), params.end(), gather->params.begin() + begin);
    InferRequest r;
    Tensor t = std::move(*input);
    if (config_.max_batch_size() == 0) {
      std::vector<int64_t> dims(t.shape().begin() + 1, t.shape().end());
      t = t.reshaped(Shape(dims));
    }
    r.inputs.push_back({engine_->inputs()[0].name, std::move(t)});
    for (const std::string& name : detector_->output_names()) r.outputs.push_back(name);
    r.cancel = cancel;
    r.id = std::to_string(begin);
    requests.push_back(std::move(r));
  }
  gather->remaining = requests.size();
  std::shared_ptr<vision::Detector> detector = detector_;
  for (InferRequest& r : requests) {
    size_t begin = std::stoul(r.id);
    infer(std::move(r), [gather, detector, begin, options, done](StatusOr<InferResponse> response) {
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
