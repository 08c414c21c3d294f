// Instance placement: which device each instance of a model runs on, from the configuration's
// instance_group entries, the way Triton places them.
//
//   KS_ASSIGN_OR_RETURN(std::vector<InstancePlacement> instances,
//                       place_instances(config, visible_gpu_count(), options.backend));
//   // instances[i]: backend "cpu" or "cuda" and the GPU of the model's i-th instance
//
// The rules (Triton's), per instance_group entry:
// - count instances (count 0 or unset: 1) on EACH GPU the group lists; a KIND_GPU group without
//   a gpus list gets count instances on every visible GPU;
// - KIND_CPU: count instances on the CPU (listing gpus is an error);
// - KIND_AUTO (the default) and KIND_MODEL: KIND_GPU when the group lists gpus or a GPU is
//   visible, else KIND_CPU;
// - a configuration without instance_group has one KIND_AUTO group of count 1.
// Groups without a name are named "<model>_<k>" (k: the group's position), as Triton names them.
//
// The server's --backend applies on top: "cpu" runs every instance on the CPU (a GPU group keeps
// its number of instances, count per listed GPU, so that one configuration serves on both kinds
// of machine); "cuda" makes KIND_AUTO groups KIND_GPU (KIND_CPU groups stay on the CPU); "auto"
// is the rules above.
//
// Errors are INVALID_ARGUMENT naming the model and the group: a GPU index that does not exist
// (with the number of GPUs visible), a negative index, an index listed twice in one group (use
// count for several instances per GPU), KIND_GPU with no GPU visible, gpus on a KIND_CPU group.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/protocol/model_config.pb.h"

namespace kestrel::serve {

struct InstancePlacement {
  std::string group;      // the instance group's name
  std::string backend;    // the engine backend: "cpu" or "cuda"
  int device_index = -1;  // the GPU for "cuda"; -1 for the CPU
  bool on_gpu() const { return backend == "cuda"; }
  // "GPU 1" or "CPU".
  std::string device_name() const;
  bool operator==(const InstancePlacement&) const = default;
};

// The instances of `config` in order: group by group, and in a group GPU by GPU (in the order the
// group lists them), `count` instances each. `visible_gpus`: the GPUs this process can use
// (visible_gpu_count()); `backend`: the server's --backend (auto, cpu or cuda).
StatusOr<std::vector<InstancePlacement>> place_instances(const inference::ModelConfig& config,
                                                         int visible_gpus,
                                                         std::string_view backend = "auto");

// The instance groups as placed, in Triton's normalized form (what the model's /config shows):
// one entry per group, named, with kind KIND_GPU (gpus: the GPUs it runs on) or KIND_CPU, and
// count the number of instances per GPU (KIND_GPU) or in all (KIND_CPU).
std::vector<inference::ModelInstanceGroup> placed_instance_groups(
    std::span<const InstancePlacement> instances);

// The number of GPUs this process can use: 0 without a driver, a GPU, or CUDA in the build.
int visible_gpu_count();

// What identifies the GPU `device_index` for cached engines (engines are built per GPU model and
// architecture, not per index): "NVIDIA-H100-80GB-HBM3-sm90". UNAVAILABLE when the GPU cannot be
// used (or the build has no CUDA).
StatusOr<std::string> gpu_model_key(int device_index);

}  // namespace kestrel::serve
