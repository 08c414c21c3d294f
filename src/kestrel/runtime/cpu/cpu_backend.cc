#include "kestrel/runtime/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"

namespace kestrel::runtime {
namespace {

using cpu::KernelEntry;

const std::vector<KernelEntry>& kernel_table() {
  static const std::vector<KernelEntry> table = [] {
    std::vector<KernelEntry> all;
    for (auto family :
         {cpu::onednn_kernels,    cpu::onednn_pool_kernels, cpu::unary_kernels,
          cpu::cast_kernels,      cpu::binary_kernels,      cpu::reshape_kernels,
          cpu::transpose_kernels, cpu::concat_kernels,      cpu::split_kernels,
          cpu::slice_kernels,     cpu::gather_kernels,      cpu::expand_kernels,
          cpu::pad_kernels,       cpu::generator_kernels,   cpu::conv_kernels,
          cpu::pool_kernels,      cpu::batch_norm_kernels,  cpu::matmul_kernels,
          cpu::softmax_kernels,   cpu::resize_kernels,      cpu::reduce_kernels,
          cpu::top_k_kernels,     cpu::nms_kernels,         cpu::fused_elementwise_kernels}) {
      for (const KernelEntry& e : family()) all.push_back(e);
    }
    // Fast implementations first; stable, so each family's own order is kept.
    std::stable_sort(all.begin(), all.end(), [](const KernelEntry& a, const KernelEntry& b) {
      return !a.reference && b.reference;
    });
    return all;
  }();
  return table;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options) : options_(options) {}

  std::string_view name() const override { return "cpu"; }
  Device device() const override { return Device::cpu(); }
  // The reference kernels and oneDNN choose nothing by measurement: any CPU runs any CPU engine.
  std::map<std::string, std::string> target() const override { return {{"backend", "cpu"}}; }

  StatusOr<std::unique_ptr<Kernel>> create_kernel(const KernelDef& def) override {
    Status last = unimplemented("the CPU backend has no kernel for {}", def.describe());
    for (const KernelEntry& e : kernel_table()) {
      if (e.op_type != def.op_type || (options_.reference_only && !e.reference)) continue;
      StatusOr<std::unique_ptr<Kernel>> k = e.create(def);
      if (k.ok() || k.status().code() != StatusCode::kUnimplemented) return k;
      last = k.status();
    }
    StatusOr<std::unique_ptr<Kernel>> extension = create_extension_kernel(name(), def);
    if (extension.ok() || extension.status().code() != StatusCode::kUnimplemented) {
      return extension;
    }
    return last;
  }

  StatusOr<Tensor> allocate(DType dtype, const Shape& shape) override {
    return Tensor::allocate(dtype, shape);
  }

  Status copy(const Tensor& src, Tensor& dst) override {
    if (src.dtype() != dst.dtype() || src.num_elements() != dst.num_elements()) {
      return invalid_argument("copy between {}{} and {}{}", src.dtype(), src.shape(), dst.dtype(),
                              dst.shape());
    }
    if (!src.is_cpu() || !dst.is_cpu())
      return invalid_argument("the CPU backend copies host memory");
    if (src.nbytes() > 0) std::memmove(dst.raw_data(), src.raw_data(), src.nbytes());
    return Status();
  }

  Status synchronize() override { return Status(); }

 private:
  CpuBackendOptions options_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

std::vector<std::string_view> cpu_supported_ops() {
  std::vector<std::string_view> ops;
  for (const KernelEntry& e : kernel_table()) ops.push_back(e.op_type);
  std::sort(ops.begin(), ops.end());
  ops.erase(std::unique(ops.begin(), ops.end()), ops.end());
  return ops;
}

}  // namespace kestrel::runtime
