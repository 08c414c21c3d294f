// GPU utilization, memory and power for the metrics endpoint, under Triton's names so that existing
// dashboards work: nv_gpu_utilization (0..1), nv_gpu_memory_total_bytes, nv_gpu_memory_used_bytes
// and nv_gpu_power_usage (watts), each labelled gpu_uuid.
//
// The figures come from NVML, the library the NVIDIA driver installs (libnvidia-ml.so.1). It is
// loaded at run time (dlopen), not linked: the same binary starts on machines without a driver (CI,
// CPU-only servers), where there simply are no GPU metrics.
//
// Thread safety: sample() may be called concurrently (NVML is thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kestrel::serve {

struct GpuSample {
  std::string uuid;        // "GPU-8c5b..."
  double utilization = 0;  // share of the last sample period a kernel ran, 0..1
  uint64_t memory_total_bytes = 0;
  uint64_t memory_used_bytes = 0;
  double power_watts = -1;  // -1 when the GPU does not report it
};

class GpuMonitor {
 public:
  // Null when NVML cannot be loaded or initialized, or sees no GPU.
  static std::unique_ptr<GpuMonitor> open();
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  // One sample per GPU; a GPU whose queries fail is left out.
  std::vector<GpuSample> sample() const;

 private:
  struct Api;
  explicit GpuMonitor(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

// The four metric families for `gpus` in Prometheus text format (nothing for no GPU).
std::string render_gpu_metrics(std::span<const GpuSample> gpus);

}  // namespace kestrel::serve
