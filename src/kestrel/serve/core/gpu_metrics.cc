// GPU metrics through NVML, loaded with dlopen (see gpu_metrics.h).
#include "kestrel/serve/core/gpu_metrics.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include "kestrel/serve/core/metrics.h"

namespace kestrel::serve {
namespace {

// The few NVML declarations used here, as nvml.h (NVML API version 2+) defines them; NVML keeps
// these entry points and structures stable across driver versions.
using NvmlReturn = int;  // nvmlReturn_t; 0 is NVML_SUCCESS
using NvmlDevice = struct NvmlDeviceOpaque*;
struct NvmlUtilization {
  unsigned int gpu;
  unsigned int memory;
};
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

}  // namespace

struct GpuMonitor::Api {
  void* library = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*get_count)(unsigned int*) = nullptr;
  NvmlReturn (*get_handle)(unsigned int, NvmlDevice*) = nullptr;
  NvmlReturn (*get_uuid)(NvmlDevice, char*, unsigned int) = nullptr;
  NvmlReturn (*get_utilization)(NvmlDevice, NvmlUtilization*) = nullptr;
  NvmlReturn (*get_memory)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*get_power)(NvmlDevice, unsigned int*) = nullptr;
};

std::unique_ptr<GpuMonitor> GpuMonitor::open() {
  auto api = std::make_unique<Api>();
  api->library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (api->library == nullptr) return nullptr;
  auto find = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api->library, name));
    return fn != nullptr;
  };
  NvmlReturn (*init)() = nullptr;
  const bool found = find(init, "nvmlInit_v2") && find(api->shutdown, "nvmlShutdown") &&
                     find(api->get_count, "nvmlDeviceGetCount_v2") &&
                     find(api->get_handle, "nvmlDeviceGetHandleByIndex_v2") &&
                     find(api->get_uuid, "nvmlDeviceGetUUID") &&
                     find(api->get_utilization, "nvmlDeviceGetUtilizationRates") &&
                     find(api->get_memory, "nvmlDeviceGetMemoryInfo") &&
                     find(api->get_power, "nvmlDeviceGetPowerUsage");
  unsigned int count = 0;
  if (!found || init() != 0) {
    dlclose(api->library);
    return nullptr;
  }
  if (api->get_count(&count) != 0 || count == 0) {
    api->shutdown();
    dlclose(api->library);
    return nullptr;
  }
  return std::unique_ptr<GpuMonitor>(new GpuMonitor(std::move(api)));
}

GpuMonitor::GpuMonitor(std::unique_ptr<Api> api) : api_(std::move(api)) {}

GpuMonitor::~GpuMonitor() {
  api_->shutdown();
  dlclose(api_->library);
}

std::vector<GpuSample> GpuMonitor::sample() const {
  std::vector<GpuSample> out;
  unsigned int count = 0;
  if (api_->get_count(&count) != 0) return out;
  for (unsigned int i = 0; i < count; ++i) {
    NvmlDevice device = nullptr;
    char uuid[96] = {};
    NvmlUtilization utilization{};
    NvmlMemory memory{};
    if (api_->get_handle(i, &device) != 0 || api_->get_uuid(device, uuid, sizeof uuid) != 0 ||
        api_->get_utilization(device, &utilization) != 0 ||
        api_->get_memory(device, &memory) != 0) {
      continue;
    }
    GpuSample s;
    s.uuid = uuid;
    s.utilization = utilization.gpu / 100.0;
    s.memory_total_bytes = memory.total;
    s.memory_used_bytes = memory.used;
    unsigned int milliwatts = 0;
    if (api_->get_power(device, &milliwatts) == 0) s.power_watts = milliwatts / 1000.0;
    out.push_back(std::move(s));
  }
  return out;
}

std::string render_gpu_metrics(std::span<const GpuSample> gpus) {
  if (gpus.empty()) return "";
  std::string out;
  auto family = [&](std::string_view name, std::string_view help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
    for (const GpuSample& g : gpus) {
      const double v = value(g);
      if (v < 0) continue;
      out += fmt::format("{}{{gpu_uuid=\"{}\"}} {}\n", name, escape_label_value(g.uuid), v);
    }
  };
  family("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)",
         [](const GpuSample& g) { return g.utilization; });
  family("nv_gpu_memory_total_bytes", "GPU total memory, in bytes",
         [](const GpuSample& g) { return static_cast<double>(g.memory_total_bytes); });
  family("nv_gpu_memory_used_bytes", "GPU used memory, in bytes",
         [](const GpuSample& g) { return static_cast<double>(g.memory_used_bytes); });
  family("nv_gpu_power_usage", "GPU power usage in watts",
         [](const GpuSample& g) { return g.power_watts; });
  return out;
}

}  // namespace kestrel::serve
