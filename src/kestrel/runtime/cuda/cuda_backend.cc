#include "kestrel/runtime/cuda/cuda_backend.h"

#include "kestrel/runtime/cuda/cuda_check.h"

namespace kestrel::runtime {
namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {}

  std::string_view name() const override { return "cuda"; }
  Device device() const override { return Device::cuda(device_); }

  StatusOr<std::unique_ptr<Kernel>> create_kernel(const KernelDef& def) override {
    return unimplemented("the CUDA backend has no kernel for {} yet", def.describe());
  }

  StatusOr<Tensor> allocate(DType dtype, const Shape& shape) override {
    KS_ASSIGN_OR_RETURN(int64_t n, checked_num_elements(shape.dims()));
    const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    void* p = nullptr;
    KS_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
    const int device = device_;
    std::shared_ptr<void> storage(p, [device](void* q) {
      cudaSetDevice(device);
      cudaFree(q);
    });
    return Tensor::wrap(dtype, shape, std::move(storage), p, Device::cuda(device_));
  }

  Status copy(const Tensor& src, Tensor& dst) override {
    if (src.dtype() != dst.dtype() || src.num_elements() != dst.num_elements()) {
      return invalid_argument("copy between {}{} and {}{}", src.dtype(), src.shape(), dst.dtype(),
                              dst.shape());
    }
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    KS_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(dst.raw_data(), src.raw_data(), src.nbytes(), cudaMemcpyDefault));
    return Status();
  }

  Status synchronize() override {
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    KS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return Status();
  }

 private:
  int device_;
};

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

StatusOr<std::unique_ptr<Backend>> create_cuda_backend(int device_index) {
  const int count = cuda_device_count();
  if (count == 0) return unavailable("no CUDA device is available");
  if (device_index < 0 || device_index >= count) {
    return unavailable("CUDA device {} does not exist ({} present)", device_index, count);
  }
  KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index));
  KS_CUDA_RETURN_IF_ERROR(cudaFree(nullptr));  // Creates the context now, not on first use.
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(device_index));
}

}  // namespace kestrel::runtime
