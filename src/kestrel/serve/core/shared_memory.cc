// SharedMemoryManager (see shared_memory.h).
#include "kestrel/serve/core/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>

#include "kestrel/base/logging.h"

#ifdef KESTREL_WITH_CUDA
#include "kestrel/runtime/cuda/cuda_backend.h"
#include "kestrel/runtime/cuda/cuda_ipc.h"
#endif

namespace kestrel::serve {

// A registered region: a system one (mapped with mmap) or a CUDA one (an opened IPC handle).
struct SharedMemoryManager::Mapping {
  Kind kind = Kind::kSystem;
  SharedMemoryRegion region;           // kSystem
  CudaSharedMemoryRegion cuda_region;  // kCuda (raw_handle not kept)
  uint64_t byte_size = 0;
  void* base = nullptr;                 // kSystem: what mmap returned (page-aligned)
  size_t length = 0;                    // kSystem: what was mapped
  std::shared_ptr<void> device_memory;  // kCuda: the opened block
  std::byte* start = nullptr;  // the region's first byte (mmap: base + offset - aligned offset)

  ~Mapping() {
    if (base) munmap(base, length);
  }
};

namespace {

Status check_enabled(bool enabled) {
  if (!enabled)
    return failed_precondition(
        "client shared memory is disabled: start the server with --allow-client-shm");
  return Status();
}

bool valid_region_name(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

StatusOr<std::optional<SharedMemoryRef>> shared_memory_ref(const SharedMemoryParams& params,
                                                           std::string_view what) {
  if (!params.region && !params.byte_size) {
    if (params.offset)
      return invalid_argument("{}: shared_memory_offset without shared_memory_region", what);
    return std::optional<SharedMemoryRef>();
  }
  if (!params.region)
    return invalid_argument("{}: shared_memory_byte_size without shared_memory_region", what);
  if (!params.byte_size)
    return invalid_argument("{}: shared_memory_region without shared_memory_byte_size", what);
  if (*params.byte_size < 0 || params.offset.value_or(0) < 0)
    return invalid_argument("{}: negative shared_memory_byte_size or shared_memory_offset", what);
  return std::optional<SharedMemoryRef>(
      SharedMemoryRef{*params.region, static_cast<uint64_t>(params.offset.value_or(0)),
                      static_cast<uint64_t>(*params.byte_size)});
}

SharedMemoryManager::~SharedMemoryManager() = default;

Status SharedMemoryManager::register_region(const SharedMemoryRegion& region) {
  KS_RETURN_IF_ERROR(check_enabled(enabled_));
  if (!valid_region_name(region.name))
    return invalid_argument("bad shared-memory region name (1 to 200 printable characters)");
  const std::string& key = region.key;
  if (key.size() < 2 || key.size() > 255 || key[0] != '/' ||
      key.find('/', 1) != std::string::npos || key.find('\0') != std::string::npos)
    return invalid_argument(
        "shared-memory key '{}' must be '/' followed by a name without '/' (as shm_open takes)",
        key);
  if (region.byte_size == 0)
    return invalid_argument("shared-memory region '{}' has byte_size 0", region.name);
  if (region.offset > (uint64_t{1} << 48) || region.byte_size > (uint64_t{1} << 48))
    return invalid_argument("shared-memory region '{}': offset or byte_size is too large",
                            region.name);
  {
    std::lock_guard lock(mutex_);
    if (regions_.count(region.name))
      return already_exists("shared-memory region '{}' is already registered", region.name);
  }
  int fd = shm_open(key.c_str(), O_RDWR, 0);
  if (fd < 0)
    return invalid_argument("cannot open shared-memory key '{}': {}", key, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return internal_error("cannot stat shared-memory key '{}': {}", key, std::strerror(e));
  }
  const uint64_t end = region.offset + region.byte_size;
  if (static_cast<uint64_t>(st.st_size) < end) {
    close(fd);
    return invalid_argument(
        "shared-memory key '{}' holds {} bytes, less than offset {} + byte_size {} of region '{}'",
        key, st.st_size, region.offset, region.byte_size, region.name);
  }
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t aligned = region.offset / page * page;
  auto mapping = std::make_shared<Mapping>();
  mapping->region = region;
  mapping->byte_size = region.byte_size;
  mapping->length = static_cast<size_t>(end - aligned);
  void* base = mmap(nullptr, mapping->length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                    static_cast<off_t>(aligned));
  int e = errno;
  close(fd);
  if (base == MAP_FAILED)
    return invalid_argument("cannot map shared-memory key '{}': {}", key, std::strerror(e));
  mapping->base = base;
  mapping->start = static_cast<std::byte*>(base) + (region.offset - aligned);
  KS_RETURN_IF_ERROR(insert(region.name, std::move(mapping)));
  log::debug("registered shared-memory region '{}': key {}, offset {}, {} bytes", region.name, key,
             region.offset, region.byte_size);
  return Status();
}

Status SharedMemoryManager::insert(const std::string& name, std::shared_ptr<Mapping> mapping) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = regions_.emplace(name, std::move(mapping));
  if (!inserted)  // registered by a concurrent call meanwhile; this mapping is dropped
    return already_exists("shared-memory region '{}' is already registered", name);
  return Status();
}

bool SharedMemoryManager::cuda_available() const {
#ifdef KESTREL_WITH_CUDA
  return enabled_ && runtime::cuda_device_count() > 0;
#else
  return false;
#endif
}

Status SharedMemoryManager::register_cuda_region(const CudaSharedMemoryRegion& region) {
  KS_RETURN_IF_ERROR(check_enabled(enabled_));
  if (!valid_region_name(region.name))
    return invalid_argument("bad shared-memory region name (1 to 200 printable characters)");
  if (region.byte_size == 0)
    return invalid_argument("CUDA shared-memory region '{}' has byte_size 0", region.name);
  if (region.device_id < 0 || region.device_id > 1024)
    return invalid_argument("CUDA shared-memory region '{}': bad device_id {}", region.name,
                            region.device_id);
  {
    std::lock_guard lock(mutex_);
    if (regions_.count(region.name))
      return already_exists("shared-memory region '{}' is already registered", region.name);
  }
#ifdef KESTREL_WITH_CUDA
  StatusOr<std::shared_ptr<void>> memory =
      runtime::open_cuda_ipc_memory(std::as_bytes(std::span(region.raw_handle)),
                                    static_cast<int>(region.device_id), region.byte_size);
  if (!memory.ok())
    return memory.status().with_context(fmt::format("CUDA shared-memory region '{}'", region.name));
  auto mapping = std::make_shared<Mapping>();
  mapping->kind = Kind::kCuda;
  mapping->cuda_region = region;
  mapping->cuda_region.raw_handle.clear();
  mapping->byte_size = region.byte_size;
  mapping->device_memory = std::move(memory).value();
  mapping->start = static_cast<std::byte*>(mapping->device_memory.get());
  KS_RETURN_IF_ERROR(insert(region.name, std::move(mapping)));
  log::debug("registered CUDA shared-memory region '{}': device {}, {} bytes", region.name,
             region.device_id, region.byte_size);
  return Status();
#else
  return failed_precondition(
      "CUDA shared-memory region '{}': this build of Kestrel has no CUDA support", region.name);
#endif
}

Status SharedMemoryManager::unregister(std::string_view name, Kind kind) {
  KS_RETURN_IF_ERROR(check_enabled(enabled_));
  std::lock_guard lock(mutex_);
  if (name.empty()) {
    std::erase_if(regions_, [kind](const auto& entry) { return entry.second->kind == kind; });
  } else if (auto it = regions_.find(name); it != regions_.end() && it->second->kind == kind) {
    regions_.erase(it);
  }
  return Status();
}

StatusOr<std::vector<SharedMemoryRegion>> SharedMemoryManager::status(std::string_view name) const {
  KS_RETURN_IF_ERROR(check_enabled(enabled_));
  std::lock_guard lock(mutex_);
  std::vector<SharedMemoryRegion> out;
  if (!name.empty()) {
    auto it = regions_.find(name);
    if (it == regions_.end() || it->second->kind != Kind::kSystem)
      return not_found("no system shared-memory region named '{}' is registered", name);
    out.push_back(it->second->region);
    return out;
  }
  for (const auto& [n, m] : regions_)
    if (m->kind == Kind::kSystem) out.push_back(m->region);
  return out;
}

StatusOr<std::vector<CudaSharedMemoryRegion>> SharedMemoryManager::cuda_status(
    std::string_view name) const {
  KS_RETURN_IF_ERROR(check_enabled(enabled_));
  std::lock_guard lock(mutex_);
  std::vector<CudaSharedMemoryRegion> out;
  if (!name.empty()) {
    auto it = regions_.find(name);
    if (it == regions_.end() || it->second->kind != Kind::kCuda)
      return not_found("no CUDA shared-memory region named '{}' is registered", name);
    out.push_back(it->second->cuda_region);
    return out;
  }
  for (const auto& [n, m] : regions_)
    if (m->kind == Kind::kCuda) out.push_back(m->cuda_region);
  return out;
}

StatusOr<std::pair<std::shared_ptr<SharedMemoryManager::Mapping>, std::byte*>>
SharedMemoryManager::locate(const SharedMemoryRef& ref) const {
  KS_RETURN_IF_ERROR(check_enabled(enabled_));
  std::shared_ptr<Mapping> mapping;
  {
    std::lock_guard lock(mutex_);
    auto it = regions_.find(ref.region);
    if (it == regions_.end())
      return not_found("no shared-memory region named '{}' is registered", ref.region);
    mapping = it->second;
  }
  const uint64_t size = mapping->byte_size;
  if (ref.offset > size || ref.byte_size > size - ref.offset)
    return invalid_argument("shared-memory range [{}, {}) lies outside region '{}' of {} bytes",
                            ref.offset, ref.offset + ref.byte_size, ref.region, size);
  std::byte* p = mapping->start + ref.offset;
  return std::make_pair(std::move(mapping), p);
}

StatusOr<Tensor> SharedMemoryManager::input(const SharedMemoryRef& ref, DType dtype,
                                            const Shape& shape,
                                            std::string_view tensor_name) const {
  KS_ASSIGN_OR_RETURN(int64_t count, checked_num_elements(shape.vec()));
  const uint64_t bytes = static_cast<uint64_t>(count) * dtype_size(dtype);
  if (ref.byte_size != bytes)
    return invalid_argument(
        "input '{}': shared_memory_byte_size {} does not match shape {} of {} ({} bytes)",
        tensor_name, ref.byte_size, shape.to_string(), dtype, bytes);
  KS_ASSIGN_OR_RETURN(auto located, locate(ref));
  auto& [mapping, data] = located;
  if (mapping->kind == Kind::kCuda) {
    const Device device = Device::cuda(static_cast<int>(mapping->cuda_region.device_id));
    return Tensor::wrap(dtype, shape, std::move(mapping), data, device);
  }
  if (reinterpret_cast<uintptr_t>(data) % 64 == 0)
    return Tensor::wrap(dtype, shape, std::move(mapping), data);
  // Kernels and SIMD loads expect aligned tensors: copy the few inputs that are not.
  KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(dtype, shape));
  std::memcpy(t.raw_data(), data, bytes);
  return t;
}

Status SharedMemoryManager::write_output(const SharedMemoryRef& ref, const Tensor& tensor,
                                         std::string_view tensor_name) const {
  if (!tensor.is_cpu()) return internal_error("output '{}' is not in host memory", tensor_name);
  if (ref.byte_size < tensor.nbytes())
    return invalid_argument(
        "output '{}' has {} bytes (shape {}), more than its shared_memory_byte_size {}",
        tensor_name, tensor.nbytes(), tensor.shape().to_string(), ref.byte_size);
  KS_ASSIGN_OR_RETURN(auto located, locate(ref));
  if (located.first->kind == Kind::kCuda) {
#ifdef KESTREL_WITH_CUDA
    return runtime::cuda_copy_bytes(located.second, tensor.raw_data(), tensor.nbytes())
        .with_context(fmt::format("output '{}' into CUDA shared memory", tensor_name));
#else
    return internal_error("a CUDA region in a build without CUDA");
#endif
  }
  std::memcpy(located.second, tensor.raw_data(), tensor.nbytes());
  return Status();
}

}  // namespace kestrel::serve
