// InferenceServer (see inference_server.h).
#include "kestrel/serve/core/inference_server.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>

#include "kestrel/base/file.h"
#include "kestrel/base/logging.h"
#include "kestrel/serve/core/metrics.h"

namespace kestrel::serve {
namespace fs = std::filesystem;

namespace {

std::optional<int64_t> parse_version(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

}  // namespace

bool valid_model_name(std::string_view name) {
  if (name.empty() || name.size() > 200 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

StatusOr<std::unique_ptr<InferenceServer>> InferenceServer::create(const ServerOptions& options) {
  if (options.model_repository.empty() && options.model_files.empty())
    return invalid_argument("give a model repository or a model file");
  if (!options.model_repository.empty() && !fs::is_directory(options.model_repository))
    return not_found("model repository '{}' is not a directory", options.model_repository);
  std::unique_ptr<InferenceServer> server(new InferenceServer(options));
  std::vector<std::string> all = server->list_models();
  std::vector<std::string> startup;
  if (options.control_mode == ControlMode::kNone) {
    startup = all;
  } else {
    for (const std::string& name : options.startup_models) {
      if (name == "*") {
        startup = all;
        break;
      }
      startup.push_back(name);
    }
  }
  {
    std::lock_guard lock(server->mutex_);
    for (const std::string& name : all) server->models_[name];
  }
  for (const std::string& name : startup) {
    Status loaded = server->load_locked(name);
    if (!loaded.ok()) return loaded.with_context("loading model '" + name + "'");
  }
  return server;
}

InferenceServer::~InferenceServer() { shutdown(); }

std::shared_future<std::shared_ptr<GpuMonitor>> InferenceServer::open_gpu_monitor() {
  return std::async(std::launch::async,
                    [] {
                      const auto start = std::chrono::steady_clock::now();
                      std::shared_ptr<GpuMonitor> monitor = GpuMonitor::open();
                      log::debug("NVML {} in {:.1f} ms", monitor ? "opened" : "not available",
                                 std::chrono::duration<double, std::milli>(
                                     std::chrono::steady_clock::now() - start)
                                     .count());
                      return monitor;
                    })
      .share();
}

std::vector<std::string> InferenceServer::list_models() const {
  std::set<std::string> names;
  for (const std::string& file : options_.model_files) names.insert(fs::path(file).stem().string());
  if (!options_.model_repository.empty()) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(options_.model_repository, ec)) {
      std::string name = entry.path().filename().string();
      if (entry.is_directory() && valid_model_name(name) && name[0] != '.') names.insert(name);
    }
  }
  return {names.begin(), names.end()};
}

Status InferenceServer::read_model(const std::string& name, inference::ModelConfig* config,
                                   std::map<int64_t, std::string>* files) const {
  for (const std::string& file : options_.model_files) {
    if (fs::path(file).stem().string() != name) continue;
    if (!fs::is_regular_file(file)) return not_found("model file '{}' does not exist", file);
    *config = default_model_config(name, 8);
    (*files)[1] = file;
    return Status();
  }
  fs::path dir = fs::path(options_.model_repository) / name;
  if (options_.model_repository.empty() || !fs::is_directory(dir))
    return not_found("model '{}' is not in the repository", name);
  fs::path config_path = dir / "config.pbtxt";
  if (fs::exists(config_path)) {
    KS_ASSIGN_OR_RETURN(std::string text, read_file(config_path.string(), 1 << 20));
    KS_ASSIGN_OR_RETURN(*config, parse_model_config(text, config_path.string()));
    if (!config->name().empty() && config->name() != name)
      return invalid_argument("{}: name '{}' differs from the model's directory '{}'",
                              config_path.string(), config->name(), name);
    config->set_name(name);
  } else {
    log::info("model '{}': no config.pbtxt, configuring it from the ONNX file", name);
    *config = default_model_config(name, 8);
  }
  std::map<int64_t, std::string> available;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::optional<int64_t> v = parse_version(entry.path().filename().string());
    if (!entry.is_directory() || !v) continue;
    // A prebuilt engine file wins over the ONNX file it was built from.
    for (const char* file : {"model.kplan", "model.onnx"}) {
      if (fs::is_regular_file(entry.path() / file)) {
        available[*v] = (entry.path() / file).string();
        break;
      }
    }
  }
  if (available.empty())
    return not_found("model '{}' has no version with a model.onnx or model.kplan", name);
  const auto& policy = config->version_policy();
  if (policy.has_all()) {
    *files = available;
  } else if (policy.has_specific()) {
    for (int64_t v : policy.specific().versions()) {
      if (!available.count(v))
        return not_found("model '{}': version {} named by version_policy is missing", name, v);
      (*files)[v] = available[v];
    }
  } else {
    uint32_t n = std::max<uint32_t>(1, policy.latest().num_versions());
    for (auto it = available.rbegin(); it != available.rend() && files->size() < n; ++it)
      (*files)[it->first] = it->second;
  }
  return Status();
}

Status InferenceServer::load_locked(const std::string& name) {
  std::lock_guard serial(load_mutex_);
  if (!valid_model_name(name)) return invalid_argument("invalid model name '{}'", name);
  {
    std::lock_guard lock(mutex_);
    Slot& slot = models_[name];
    if (slot.versions.empty()) slot.state = "LOADING";
  }
  auto fail = [&](const Status& status) {
    std::lock_guard lock(mutex_);
    Slot& slot = models_[name];
    if (slot.versions.empty()) {
      slot.state = "UNAVAILABLE";
      slot.reason = std::string(status.message());
    }
    log::error("model '{}' failed to load{}: {}", name,
               slot.versions.empty() ? "" : " (the previous version keeps serving)",
               status.to_string());
    return status;
  };
  inference::ModelConfig config;
  std::map<int64_t, std::string> files;
  Status read = read_model(name, &config, &files);
  if (!read.ok()) return fail(read);
  std::map<int64_t, std::shared_ptr<ServedModel>> loaded;
  for (const auto& [version, file] : files) {
    StatusOr<std::unique_ptr<ServedModel>> m =
        ServedModel::load(config, version, file, options_.load);
    if (!m.ok()) return fail(m.status());
    loaded[version] = std::move(*m);
  }
  std::map<int64_t, std::shared_ptr<ServedModel>> old;
  {
    std::lock_guard lock(mutex_);
    Slot& slot = models_[name];
    old.swap(slot.versions);
    slot.versions = std::move(loaded);
    slot.state = "READY";
    slot.reason.clear();
  }
  // The old versions drain here (their queued requests complete) after the swap, so no request is
  // refused during a reload.
  for (auto& [v, m] : old) m->stop();
  return Status();
}

Status InferenceServer::load(std::string_view name) {
  if (options_.control_mode != ControlMode::kExplicit)
    return failed_precondition(
        "explicit model load / unload is not allowed: the server runs with "
        "--model-control-mode=none");
  if (!valid_model_name(name)) return invalid_argument("invalid model name '{}'", name);
  return load_locked(std::string(name));
}

Status InferenceServer::unload(std::string_view name) {
  if (options_.control_mode != ControlMode::kExplicit)
    return failed_precondition(
        "explicit model load / unload is not allowed: the server runs with "
        "--model-control-mode=none");
  if (!valid_model_name(name)) return invalid_argument("invalid model name '{}'", name);
  std::lock_guard serial(load_mutex_);
  std::map<int64_t, std::shared_ptr<ServedModel>> old;
  {
    std::lock_guard lock(mutex_);
    auto it = models_.find(std::string(name));
    if (it == models_.end()) return not_found("unknown model '{}'", name);
    old.swap(it->second.versions);
    it->second.state = "UNAVAILABLE";
    it->second.reason = "unloaded";
  }
  for (auto& [v, m] : old) m->stop();
  log::info("model '{}' unloaded", name);
  return Status();
}

bool InferenceServer::ready() const {
  if (shutting_down_) return false;
  std::lock_guard lock(mutex_);
  for (const auto& [name, slot] : models_)
    if (slot.state == "LOADING") return false;
  return true;
}

void InferenceServer::shutdown() {
  shutting_down_ = true;
  std::vector<std::shared_ptr<ServedModel>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& [name, slot] : models_)
      for (auto& [v, m] : slot.versions) all.push_back(m);
  }
  for (auto& m : all) m->stop();
}

inference::ServerMetadataResponse InferenceServer::metadata() const {
  inference::ServerMetadataResponse m;
  m.set_name("kestrel");
  m.set_version("0.1.0");
  for (const char* ext :
       {"classification", "model_repository", "model_repository(unload_dependents)", "statistics",
        "binary_tensor_data", "kestrel_detect"})
    m.add_extensions(ext);
  if (shared_memory_.enabled()) m.add_extensions("system_shared_memory");
  if (shared_memory_.cuda_available()) m.add_extensions("cuda_shared_memory");
  return m;
}

StatusOr<std::shared_ptr<ServedModel>> InferenceServer::model(std::string_view name,
                                                              std::string_view version) const {
  std::lock_guard lock(mutex_);
  auto it = models_.find(std::string(name));
  if (it == models_.end()) return not_found("unknown model: '{}'", name);
  const Slot& slot = it->second;
  if (slot.versions.empty())
    return unavailable("model '{}' is not ready ({}{}{})", name, slot.state,
                       slot.reason.empty() ? "" : ": ", slot.reason);
  if (version.empty() || version == "-1") return slot.versions.rbegin()->second;
  std::optional<int64_t> v = parse_version(version);
  if (!v) return invalid_argument("bad model version '{}'", version);
  auto vit = slot.versions.find(*v);
  if (vit == slot.versions.end())
    return not_found("model '{}' has no version {} being served", name, version);
  return vit->second;
}

void InferenceServer::infer(InferRequest request, InferCallback done) {
  StatusOr<std::shared_ptr<ServedModel>> m = model(request.model_name, request.model_version);
  if (!m.ok()) return done(m.status());
  (*m)->infer(std::move(request), std::move(done));
}

inference::RepositoryIndexResponse InferenceServer::index(bool ready_only) const {
  inference::RepositoryIndexResponse r;
  std::lock_guard lock(mutex_);
  for (const auto& [name, slot] : models_) {
    if (slot.versions.empty()) {
      if (ready_only) continue;
      auto* e = r.add_models();
      e->set_name(name);
      e->set_state(slot.state);
      e->set_reason(slot.reason);
      continue;
    }
    for (const auto& [v, m] : slot.versions) {
      auto* e = r.add_models();
      e->set_name(name);
      e->set_version(std::to_string(v));
      e->set_state(slot.state);
    }
  }
  return r;
}

StatusOr<inference::ModelStatisticsResponse> InferenceServer::statistics(
    std::string_view name, std::string_view version) const {
  inference::ModelStatisticsResponse r;
  if (!name.empty()) {
    KS_ASSIGN_OR_RETURN(std::shared_ptr<ServedModel> m, model(name, version));
    *r.add_model_stats() = m->statistics();
    return r;
  }
  std::lock_guard lock(mutex_);
  for (const auto& [n, slot] : models_)
    for (const auto& [v, m] : slot.versions) *r.add_model_stats() = m->statistics();
  return r;
}

std::string InferenceServer::metrics_text() const {
  std::vector<ModelMetrics> all;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, slot] : models_)
      for (const auto& [v, m] : slot.versions)
        all.push_back({name, std::to_string(v), m->statistics_snapshot(), m->pending()});
  }
  std::string text = render_metrics(all);
  if (const std::shared_ptr<GpuMonitor>& gpus = gpus_.get())
    text += render_gpu_metrics(gpus->sample());
  return text;
}

}  // namespace kestrel::serve
