#include "kestrel/runtime/cuda/cuda_backend.h"

#include <cudnn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kestrel/base/logging.h"
#include "kestrel/runtime/cuda/cuda_check.h"
#include "kestrel/runtime/cuda/cuda_kernels.h"

namespace kestrel::runtime {
namespace {

using cuda::KernelEntry;

const std::vector<KernelEntry>& kernel_table() {
  static const std::vector<KernelEntry> table = [] {
    std::vector<KernelEntry> all;
    for (auto family : {cuda::elementwise_kernels, cuda::movement_kernels, cuda::pool_kernels,
                        cuda::resize_kernels, cuda::conv_kernels, cuda::fused_concat_kernels,
                        cuda::fused_elementwise_kernels}) {
      for (const KernelEntry& e : family()) all.push_back(e);
    }
    return all;
  }();
  return table;
}

class CudaEventMark final : public TimingMark {
 public:
  ~CudaEventMark() override {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  static StatusOr<std::unique_ptr<TimingMark>> record(cudaStream_t stream) {
    auto m = std::make_unique<CudaEventMark>();
    KS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&m->event_));
    KS_CUDA_RETURN_IF_ERROR(cudaEventRecord(m->event_, stream));
    return std::unique_ptr<TimingMark>(std::move(m));
  }
  StatusOr<double> ms_since(const TimingMark& earlier) const override {
    const auto* e = dynamic_cast<const CudaEventMark*>(&earlier);
    if (e == nullptr) return invalid_argument("timing marks of different backends");
    KS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(event_));
    float ms = 0;
    KS_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, e->event_, event_));
    return static_cast<double>(ms);
  }

 private:
  cudaEvent_t event_ = nullptr;
};

class CudaStream final : public Stream {
 public:
  CudaStream(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  ~CudaStream() override {
    cudaSetDevice(device_);
    cudaStreamDestroy(stream_);
  }
  void* handle() const override { return stream_; }
  Status synchronize() override {
    KS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status();
  }
  StatusOr<std::unique_ptr<TimingMark>> mark() override {
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    return CudaEventMark::record(stream_);
  }

 private:
  int device_;
  cudaStream_t stream_;
};

// A captured CUDA graph, instantiated once, launched on any stream of the device.
class CudaGraph final : public Recording {
 public:
  explicit CudaGraph(cudaGraphExec_t exec) : exec_(exec) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  Status replay(Stream& stream) override {
    KS_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec_, static_cast<cudaStream_t>(stream.handle())));
    return Status();
  }

 private:
  cudaGraphExec_t exec_;
};

// Pinned host buffers, reused: cudaMallocHost costs milliseconds (a 320 MiB buffer, one batch of
// 32 of yolov5n's float32 raw outputs, hundreds of them), so freed buffers wait in a free list (by
// size class) for the next request instead of going back to the driver. Bounded: beyond
// max_cached_bytes(), freed buffers are released.
//
// The bound must hold what is in flight at once: each instance's batch, and the batches whose
// outputs are still being sent (a response holds its rows of the batch's buffer). With 2 GiB and
// power-of-two classes, yolov5n at concurrency 64 (512 MiB outputs + 256 MiB inputs per batch of
// 32) went past it, and every batch paid cudaMallocHost and cudaFreeHost: 100 inferences/s
// instead of 1,400 (docs/benchmarks/2026-11-22-h100-idle-requests-and-async-bench.md).
class PinnedPool : public std::enable_shared_from_this<PinnedPool> {
 public:
  // An eighth of the host's memory, between 2 and 16 GiB.
  static size_t max_cached_bytes() {
    static const size_t bytes = [] {
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
      const size_t total = pages > 0 && page > 0 ? static_cast<size_t>(pages) * page : 0;
      return std::clamp(total / 8, size_t{2} << 30, size_t{16} << 30);
    }();
    return bytes;
  }

  StatusOr<std::shared_ptr<void>> get(size_t bytes) {
    const size_t size = size_class(bytes);
    {
      // The smallest free buffer of this class or a larger one up to twice the size: batches of
      // several sizes then share buffers instead of each size pinning its own.
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = free_.lower_bound(size); it != free_.end() && it->first <= 2 * size; ++it) {
        if (it->second.empty()) continue;
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= it->first;
        return wrap(p, it->first);
      }
    }
    void* p = nullptr;
    KS_CUDA_HOST_ALLOC_RETURN_IF_ERROR(cudaMallocHost(&p, size), size);
    log::debug("pinned host memory: {:.1f} MiB allocated ({:.1f} MiB cached)",
               static_cast<double>(size) / (1 << 20),
               static_cast<double>(cached_bytes()) / (1 << 20));
    return wrap(p, size);
  }

  ~PinnedPool() {
    for (auto& [size, list] : free_) {
      for (void* p : list) cudaFreeHost(p);
    }
  }

 private:
  // From 64 KiB, four classes per power of two (at most 25% waste; powers of two alone made a
  // 262 MiB batch output take 512 MiB).
  static size_t size_class(size_t bytes) {
    size_t s = size_t{64} << 10;
    while (s < bytes) s <<= 1;
    if (s == size_t{64} << 10) return s;
    const size_t step = s / 8;
    size_t c = s / 2 + step;
    while (c < bytes) c += step;
    return c;
  }

  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }

  std::shared_ptr<void> wrap(void* p, size_t size) {
    std::weak_ptr<PinnedPool> pool = weak_from_this();
    return std::shared_ptr<void>(p, [pool, size](void* q) {
      if (auto self = pool.lock()) {
        std::lock_guard<std::mutex> lock(self->mutex_);
        if (self->cached_bytes_ + size <= max_cached_bytes()) {
          self->free_[size].push_back(q);
          self->cached_bytes_ += size;
          return;
        }
      }
      cudaFreeHost(q);
    });
  }

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device), pinned_(std::make_shared<PinnedPool>()) {}

  std::string_view name() const override { return "cuda"; }
  Device device() const override { return Device::cuda(device_); }
  std::map<std::string, std::string> target() const override {
    std::map<std::string, std::string> t = {{"backend", "cuda"}};
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device_) == cudaSuccess) {
      t["gpu"] = prop.name;
      t["compute_capability"] = std::to_string(prop.major * 10 + prop.minor);
      t["sm_count"] = std::to_string(prop.multiProcessorCount);
    }
    int version = 0;
    if (cudaRuntimeGetVersion(&version) == cudaSuccess) t["cuda_runtime"] = std::to_string(version);
    if (cudaDriverGetVersion(&version) == cudaSuccess) t["cuda_driver"] = std::to_string(version);
    t["cudnn"] = std::to_string(cudnnGetVersion());
    return t;
  }

  StatusOr<std::unique_ptr<Kernel>> create_kernel(const KernelDef& def) override {
    Status last = unimplemented("the CUDA backend has no kernel for {}", def.describe());
    for (const KernelEntry& e : kernel_table()) {
      if (e.op_type != def.op_type) continue;
      KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
      StatusOr<std::unique_ptr<Kernel>> k = e.create(def);
      if (k.ok() || k.status().code() != StatusCode::kUnimplemented) return k;
      last = k.status();
    }
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    StatusOr<std::unique_ptr<Kernel>> extension = create_extension_kernel(name(), def);
    if (extension.ok() || extension.status().code() != StatusCode::kUnimplemented) {
      return extension;
    }
    return last;
  }

  // Stream-ordered allocations from the device's memory pool: no device-wide synchronization, and
  // freed blocks are reused by later runs. Out of memory is RESOURCE_EXHAUSTED naming the bytes;
  // nothing is left allocated and the device stays usable.
  StatusOr<Tensor> allocate(DType dtype, const Shape& shape) override {
    KS_ASSIGN_OR_RETURN(int64_t n, checked_num_elements(shape.dims()));
    const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    void* p = nullptr;
    KS_CUDA_ALLOC_RETURN_IF_ERROR(cudaMallocAsync(&p, bytes == 0 ? 1 : bytes, cudaStreamPerThread),
                                  bytes);
    const int device = device_;
    std::shared_ptr<void> storage(p, [device](void* q) {
      cudaSetDevice(device);
      cudaFreeAsync(q, cudaStreamPerThread);
    });
    return Tensor::wrap(dtype, shape, std::move(storage), p, Device::cuda(device_));
  }

  StatusOr<Tensor> allocate_host(DType dtype, const Shape& shape) override {
    KS_ASSIGN_OR_RETURN(int64_t n, checked_num_elements(shape.dims()));
    const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
    if (bytes > max_tensor_bytes()) {
      return resource_exhausted("host tensor of {} bytes is over the limit", bytes);
    }
    KS_ASSIGN_OR_RETURN(std::shared_ptr<void> storage, pinned_->get(bytes));
    void* p = storage.get();
    return Tensor::wrap(dtype, shape, std::move(storage), p, Device::cpu());
  }

  Status copy(const Tensor& src, Tensor& dst) override {
    if (src.dtype() != dst.dtype() || src.num_elements() != dst.num_elements()) {
      return invalid_argument("copy between {}{} and {}{}", src.dtype(), src.shape(), dst.dtype(),
                              dst.shape());
    }
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    KS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(),
                                            cudaMemcpyDefault, cudaStreamPerThread));
    KS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cudaStreamPerThread));
    return Status();
  }

  Status synchronize() override {
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    KS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cudaStreamPerThread));
    return Status();
  }

  StatusOr<std::unique_ptr<Stream>> create_stream() override {
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    cudaStream_t s = nullptr;
    KS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return std::unique_ptr<Stream>(std::make_unique<CudaStream>(device_, s));
  }

  Status copy_async(const Tensor& src, Tensor& dst, Stream& stream) override {
    if (src.dtype() != dst.dtype() || src.num_elements() != dst.num_elements()) {
      return invalid_argument("copy between {}{} and {}{}", src.dtype(), src.shape(), dst.dtype(),
                              dst.shape());
    }
    KS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(),
                                            cudaMemcpyDefault,
                                            static_cast<cudaStream_t>(stream.handle())));
    return Status();
  }

  StatusOr<std::unique_ptr<Recording>> record(Stream& stream,
                                              const std::function<Status()>& work) override {
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    auto s = static_cast<cudaStream_t>(stream.handle());
    // Thread-local mode: other threads' work on the device is not affected by this capture.
    KS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    const Status status = work();
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(s, &graph);
    if (!status.ok()) {
      if (graph) cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      return status.with_context("while recording a CUDA graph");
    }
    KS_CUDA_RETURN_IF_ERROR(ended);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    KS_CUDA_RETURN_IF_ERROR(made);
    return std::unique_ptr<Recording>(std::make_unique<CudaGraph>(exec));
  }

 private:
  int device_;
  std::shared_ptr<PinnedPool> pinned_;
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
  // Keep freed memory in the pool instead of returning it to the driver at each synchronization.
  cudaMemPool_t pool;
  KS_CUDA_RETURN_IF_ERROR(cudaDeviceGetDefaultMemPool(&pool, device_index));
  uint64_t keep = UINT64_MAX;
  KS_CUDA_RETURN_IF_ERROR(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(device_index));
}

}  // namespace kestrel::runtime
