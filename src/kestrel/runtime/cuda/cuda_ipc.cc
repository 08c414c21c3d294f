// CUDA IPC memory (see cuda_ipc.h).
#include "kestrel/runtime/cuda/cuda_ipc.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstring>

#include "kestrel/runtime/cuda/cuda_backend.h"
#include "kestrel/runtime/cuda/cuda_check.h"

namespace kestrel::runtime {
namespace {

// The driver's cuMemGetAddressRange, found through the runtime so that Kestrel needs no link to
// libcuda (which machines without a driver lack); null when the driver does not offer it.
using GetAddressRange = CUresult (*)(CUdeviceptr* base, size_t* size, CUdeviceptr ptr);

GetAddressRange get_address_range() {
  static const GetAddressRange fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &p, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return GetAddressRange{nullptr};
    }
    return reinterpret_cast<GetAddressRange>(p);
  }();
  return fn;
}

// Makes `device` current on this thread until the scope ends.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    status_ = cudaSetDevice(device);
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  cudaError_t status() const { return status_; }

 private:
  int previous_ = -1;
  cudaError_t status_;
};

}  // namespace

StatusOr<std::shared_ptr<void>> open_cuda_ipc_memory(std::span<const std::byte> handle, int device,
                                                     size_t byte_size) {
  static_assert(sizeof(cudaIpcMemHandle_t) == kCudaIpcHandleBytes);
  if (handle.size() != kCudaIpcHandleBytes)
    return invalid_argument("a CUDA IPC handle has {} bytes, not {}", kCudaIpcHandleBytes,
                            handle.size());
  const int count = cuda_device_count();
  if (count == 0) return failed_precondition("no CUDA device is available to this server");
  if (device < 0 || device >= count)
    return invalid_argument("CUDA device {} does not exist ({} present)", device, count);
  DeviceScope scope(device);
  KS_CUDA_RETURN_IF_ERROR(scope.status());
  cudaIpcMemHandle_t h;
  std::memcpy(&h, handle.data(), sizeof(h));
  void* p = nullptr;
  const cudaError_t opened = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
  if (opened != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: clear it so that the next call does not see it
    return invalid_argument(
        "the CUDA IPC handle does not open on device {}: {} (a handle must come from "
        "cudaIpcGetMemHandle in another process on this machine, whose memory is still allocated)",
        device, cudaGetErrorString(opened));
  }
  std::shared_ptr<void> memory(p, [device](void* q) {
    DeviceScope close(device);
    cudaIpcCloseMemHandle(q);
  });
  if (GetAddressRange range = get_address_range()) {
    CUdeviceptr base = 0;
    size_t size = 0;
    if (range(&base, &size, reinterpret_cast<CUdeviceptr>(p)) != CUDA_SUCCESS)
      return internal_error("cuMemGetAddressRange failed on an opened CUDA IPC handle");
    const size_t available = size - (reinterpret_cast<CUdeviceptr>(p) - base);
    if (byte_size > available)
      return invalid_argument(
          "byte_size {} is larger than the {} bytes the CUDA IPC handle's allocation holds",
          byte_size, available);
  }
  return memory;
}

Status cuda_copy_bytes(void* dst, const void* src, size_t bytes) {
  // On a stream of this thread's own that waits for nothing else. cudaMemcpy would use the legacy
  // default stream, which waits for the work of every thread's default stream and holds it up in
  // turn: a server's many request threads writing outputs would stall the instances' batches.
  struct OwnStream {
    cudaStream_t stream = nullptr;
    ~OwnStream() {
      if (stream) cudaStreamDestroy(stream);
    }
  };
  thread_local OwnStream own;
  if (!own.stream)
    KS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&own.stream, cudaStreamNonBlocking));
  KS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, own.stream));
  KS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(own.stream));
  return Status();
}

}  // namespace kestrel::runtime
