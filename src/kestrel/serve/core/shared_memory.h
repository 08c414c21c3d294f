// SharedMemoryManager: KServe v2's shared-memory extensions (Triton's "system_shared_memory" and
// "cuda_shared_memory"), shared by the HTTP and gRPC frontends.
//
// A client creates a POSIX shared-memory object (shm_open), registers a byte range of it under a
// region name, or exports a block of GPU memory (cudaIpcGetMemHandle) and registers the handle,
// then names the region in an input's or a requested output's parameters instead of sending the
// tensor's bytes:
//   "shared_memory_region" (string, required), "shared_memory_byte_size" (int64, required),
//   "shared_memory_offset" (int64, optional, 0 by default; relative to the region's start).
// An input is read in place: the request's tensor is a view of the mapping (copied only when the
// address is not 64-byte aligned). An output is copied into its range when the response is
// written, and the response then carries the output's name, datatype and shape but no data.
// An input in a CUDA region is a tensor on that GPU: the server copies it into the batch on the
// GPU, and it never crosses the bus; an output is copied to the GPU when the response is written.
// System and CUDA regions share one namespace of names.
//
// Off unless the server runs with --allow-client-shm (as tritonserver): a registered key maps
// memory that the server's user can read and write, and a client that shrinks the object after
// registering it can fault the server, so only trusted clients on the same host should use it.
//
// A mapping lives as long as a request uses it: unregistering a region while requests that name
// it are in flight is safe, and they complete with the old mapping.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"

namespace kestrel::serve {

// A registered region: `byte_size` bytes at `offset` in the shared-memory object `key`.
struct SharedMemoryRegion {
  std::string name;
  std::string key;  // shm_open's name: "/" followed by up to 254 characters, no other "/"
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// A registered CUDA region: the first `byte_size` bytes of a block of GPU memory on device
// `device_id`, which another process exported as `raw_handle` (a cudaIpcMemHandle_t's 64 bytes).
struct CudaSharedMemoryRegion {
  std::string name;
  std::string raw_handle;  // empty in what status() returns
  int64_t device_id = 0;
  uint64_t byte_size = 0;
};

// Where one tensor lives: `byte_size` bytes at `offset` in a registered region.
struct SharedMemoryRef {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// A tensor's shared-memory parameters as a frontend found them (absent ones unset).
struct SharedMemoryParams {
  std::optional<std::string> region;
  std::optional<int64_t> byte_size;
  std::optional<int64_t> offset;
};

// The reference the parameters make, or nullopt when they name no region and no size. Errors
// for half a reference (a region without a byte size or the other way round) and negative
// numbers; `what` names the tensor in the message ("input 'images'").
StatusOr<std::optional<SharedMemoryRef>> shared_memory_ref(const SharedMemoryParams& params,
                                                           std::string_view what);

class SharedMemoryManager {
 public:
  explicit SharedMemoryManager(bool enabled) : enabled_(enabled) {}
  ~SharedMemoryManager();
  SharedMemoryManager(const SharedMemoryManager&) = delete;
  SharedMemoryManager& operator=(const SharedMemoryManager&) = delete;

  bool enabled() const { return enabled_; }

  // Maps the range. ALREADY_EXISTS for a name in use; INVALID_ARGUMENT for a bad name or key, an
  // object that does not exist or is smaller than offset + byte_size; FAILED_PRECONDITION when
  // the extension is off.
  Status register_region(const SharedMemoryRegion& region);
  // Opens the GPU memory. ALREADY_EXISTS for a name in use; INVALID_ARGUMENT for a bad name, a
  // handle that does not open, a device that does not exist or a byte_size past the allocation;
  // FAILED_PRECONDITION without a GPU (or CUDA in this build) and when the extension is off.
  Status register_cuda_region(const CudaSharedMemoryRegion& region);
  // Whether CUDA regions can be registered: the extension is on and a GPU is visible.
  bool cuda_available() const;

  enum class Kind { kSystem, kCuda };
  // One region of `kind`, or every region of that kind when `name` is empty. Unknown names (and
  // regions of the other kind) are not an error (nothing to do), as in Triton.
  Status unregister(std::string_view name, Kind kind = Kind::kSystem);
  // One system region (NOT_FOUND when there is none of that name), or every system region when
  // `name` is empty, sorted by name.
  StatusOr<std::vector<SharedMemoryRegion>> status(std::string_view name) const;
  // The same for CUDA regions.
  StatusOr<std::vector<CudaSharedMemoryRegion>> cuda_status(std::string_view name) const;

  // Input `tensor_name` of `dtype` and `shape`, read from `ref`, whose byte_size must be the
  // tensor's size exactly. From a CUDA region, a tensor on that GPU.
  StatusOr<Tensor> input(const SharedMemoryRef& ref, DType dtype, const Shape& shape,
                         std::string_view tensor_name) const;
  // Copies output `tensor_name` (in host memory) into `ref`, in host or GPU memory; fails when the
  // range is smaller than the tensor.
  Status write_output(const SharedMemoryRef& ref, const Tensor& tensor,
                      std::string_view tensor_name) const;

 private:
  struct Mapping;
  // The mapping of ref.region and the address of [ref.offset, ref.offset + ref.byte_size), which
  // must lie inside the region.
  StatusOr<std::pair<std::shared_ptr<Mapping>, std::byte*>> locate(
      const SharedMemoryRef& ref) const;
  // Adds a mapping under `name`; ALREADY_EXISTS when the name is taken.
  Status insert(const std::string& name, std::shared_ptr<Mapping> mapping);

  const bool enabled_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Mapping>, std::less<>> regions_;
};

}  // namespace kestrel::serve
