// Instance placement (see instance_placement.h).
#include "kestrel/serve/core/instance_placement.h"

#include <algorithm>
#include <map>

#ifdef KESTREL_WITH_CUDA
#include "kestrel/runtime/cuda/cuda_backend.h"
#endif

namespace kestrel::serve {
namespace {

std::string visible_gpus_text(int visible_gpus) {
  if (visible_gpus == 0) return "no GPU is visible to this server";
  if (visible_gpus == 1) return "1 GPU is visible to this server (index 0)";
  return fmt::format("{} GPUs are visible to this server (indices 0..{})", visible_gpus,
                     visible_gpus - 1);
}

}  // namespace

std::string InstancePlacement::device_name() const {
  return on_gpu() ? fmt::format("GPU {}", device_index) : std::string("CPU");
}

StatusOr<std::vector<InstancePlacement>> place_instances(const inference::ModelConfig& config,
                                                         int visible_gpus,
                                                         std::string_view backend) {
  using Group = inference::ModelInstanceGroup;
  if (backend != "auto" && backend != "cpu" && backend != "cuda")
    return invalid_argument("unknown backend '{}' (expected auto, cpu or cuda)", backend);
  const std::string& model = config.name();
  std::vector<Group> groups(config.instance_group().begin(), config.instance_group().end());
  if (groups.empty()) groups.emplace_back().set_kind(Group::KIND_AUTO);

  std::vector<InstancePlacement> instances;
  for (size_t k = 0; k < groups.size(); ++k) {
    const Group& group = groups[k];
    const std::string name = group.name().empty() ? fmt::format("{}_{}", model, k) : group.name();
    if (group.count() < 0)
      return invalid_argument("model '{}': instance_group '{}': count must be >= 0, got {}", model,
                              name, group.count());
    const int count = std::max(1, group.count());
    std::vector<int> gpus(group.gpus().begin(), group.gpus().end());
    for (size_t i = 0; i < gpus.size(); ++i) {
      if (gpus[i] < 0)
        return invalid_argument("model '{}': instance_group '{}': GPU index {} is negative", model,
                                name, gpus[i]);
      if (std::find(gpus.begin(), gpus.begin() + static_cast<std::ptrdiff_t>(i), gpus[i]) !=
          gpus.begin() + static_cast<std::ptrdiff_t>(i))
        return invalid_argument(
            "model '{}': instance_group '{}' lists GPU {} twice (count sets the number of "
            "instances on each listed GPU)",
            model, name, gpus[i]);
    }
    Group::Kind kind = group.kind();
    if (kind == Group::KIND_CPU && !gpus.empty())
      return invalid_argument("model '{}': instance_group '{}' is KIND_CPU but lists gpus", model,
                              name);
    if (kind == Group::KIND_AUTO || kind == Group::KIND_MODEL) {
      // The engine decides: the GPU when there is one (or the group names some), else the CPU.
      kind = (!gpus.empty() || visible_gpus > 0 || backend == "cuda") ? Group::KIND_GPU
                                                                      : Group::KIND_CPU;
    }
    if (kind == Group::KIND_CPU || backend == "cpu") {
      // A GPU group on a server told to use the CPU keeps its number of instances.
      const int instances_here = count * std::max<int>(1, static_cast<int>(gpus.size()));
      for (int i = 0; i < instances_here; ++i) instances.push_back({name, "cpu", -1});
      continue;
    }
    if (gpus.empty()) {
      if (visible_gpus == 0)
        return invalid_argument(
            "model '{}': instance_group '{}' ({}{}) needs a GPU, but {} (use KIND_CPU or "
            "KIND_AUTO, or serve with --backend cpu)",
            model, name, Group::Kind_Name(group.kind()),
            group.kind() == Group::KIND_GPU ? "" : " under --backend cuda",
            visible_gpus_text(visible_gpus));
      for (int g = 0; g < visible_gpus; ++g) gpus.push_back(g);
    }
    for (int gpu : gpus) {
      if (gpu >= visible_gpus)
        return invalid_argument("model '{}': instance_group '{}' lists GPU {}, but {}", model, name,
                                gpu, visible_gpus_text(visible_gpus));
      for (int i = 0; i < count; ++i) instances.push_back({name, "cuda", gpu});
    }
  }
  return instances;
}

std::vector<inference::ModelInstanceGroup> placed_instance_groups(
    std::span<const InstancePlacement> instances) {
  std::vector<inference::ModelInstanceGroup> groups;
  // Instances of one group are consecutive (place_instances' order).
  for (size_t i = 0; i < instances.size();) {
    size_t end = i;
    while (end < instances.size() && instances[end].group == instances[i].group) ++end;
    inference::ModelInstanceGroup& g = groups.emplace_back();
    g.set_name(instances[i].group);
    if (!instances[i].on_gpu()) {
      g.set_kind(inference::ModelInstanceGroup::KIND_CPU);
      g.set_count(static_cast<int>(end - i));
    } else {
      g.set_kind(inference::ModelInstanceGroup::KIND_GPU);
      std::map<int, int> per_gpu;
      for (size_t j = i; j < end; ++j) {
        if (per_gpu[instances[j].device_index]++ == 0) g.add_gpus(instances[j].device_index);
      }
      g.set_count(per_gpu.begin()->second);
    }
    i = end;
  }
  return groups;
}

int visible_gpu_count() {
#ifdef KESTREL_WITH_CUDA
  return runtime::cuda_device_count();
#else
  return 0;
#endif
}

StatusOr<std::string> gpu_model_key(int device_index) {
#ifdef KESTREL_WITH_CUDA
  KS_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Backend> gpu,
                      runtime::create_cuda_backend(device_index));
  const std::map<std::string, std::string> target = gpu->target();
  auto value = [&](const char* key) {
    auto it = target.find(key);
    return it == target.end() ? std::string("unknown") : it->second;
  };
  std::string key = value("gpu");
  for (char& c : key) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!keep) c = '-';
  }
  return fmt::format("{}-sm{}", key, value("compute_capability"));
#else
  return unavailable("GPU {} cannot be used: this build of Kestrel has no CUDA support",
                     device_index);
#endif
}

}  // namespace kestrel::serve
