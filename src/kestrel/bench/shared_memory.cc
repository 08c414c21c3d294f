// Client-side shared memory (see shared_memory.h).
#include "kestrel/bench/shared_memory.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#ifdef KESTREL_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace kestrel::bench {

#ifdef KESTREL_WITH_CUDA
namespace {

Status cuda_error(cudaError_t e, std::string_view what) {
  (void)cudaGetLastError();
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice)
    return failed_precondition("{}: {}", what, cudaGetErrorString(e));
  return internal_error("{}: {}", what, cudaGetErrorString(e));
}

}  // namespace
#endif

StatusOr<std::unique_ptr<ShmBuffer>> ShmBuffer::create_cuda(size_t bytes, int device) {
#ifdef KESTREL_WITH_CUDA
  std::unique_ptr<ShmBuffer> b(new ShmBuffer());
  b->cuda_ = true;
  b->device_ = device;
  b->bytes_ = bytes;
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return failed_precondition("--shared-memory cuda: no GPU is visible to the bench ({})",
                               e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  }
  if (device < 0 || device >= count)
    return failed_precondition("--shared-memory-device {}: the bench sees {} GPU(s)", device,
                               count);
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess)
    return cuda_error(e, fmt::format("GPU {} for CUDA shared memory", device));
  if (cudaError_t e = cudaMalloc(&b->data_, bytes); e != cudaSuccess)
    return cuda_error(e, fmt::format("allocating {} bytes on GPU {}", bytes, device));
  cudaIpcMemHandle_t handle;
  if (cudaError_t e = cudaIpcGetMemHandle(&handle, b->data_); e != cudaSuccess)
    return cuda_error(e, "cudaIpcGetMemHandle");
  b->raw_handle_.assign(reinterpret_cast<const char*>(&handle), sizeof(handle));
  return b;
#else
  (void)bytes;
  (void)device;
  return failed_precondition("--shared-memory cuda: this build of Kestrel has no CUDA support");
#endif
}

Status ShmBuffer::write(size_t offset, std::string_view bytes) {
  if (offset > bytes_ || bytes.size() > bytes_ - offset)
    return internal_error("{} bytes at {} do not fit a buffer of {}", bytes.size(), offset, bytes_);
  if (!cuda_) {
    std::memcpy(static_cast<char*>(data_) + offset, bytes.data(), bytes.size());
    return Status();
  }
#ifdef KESTREL_WITH_CUDA
  cudaSetDevice(device_);
  if (cudaError_t e = cudaMemcpy(static_cast<char*>(data_) + offset, bytes.data(), bytes.size(),
                                 cudaMemcpyHostToDevice);
      e != cudaSuccess)
    return cuda_error(e, "copying an input to the GPU");
#endif
  return Status();
}

StatusOr<std::unique_ptr<ShmBuffer>> create_shm_buffer(ShmPlace place, const std::string& region,
                                                       size_t bytes) {
  bytes = std::max<size_t>(bytes, 64);
  return place.cuda ? ShmBuffer::create_cuda(bytes, place.device)
                    : ShmBuffer::create(shm_key(region), bytes);
}

StatusOr<std::unique_ptr<ShmBuffer>> ShmBuffer::create(std::string key, size_t bytes) {
  shm_unlink(key.c_str());  // left over from a run that was killed
  int fd = shm_open(key.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return internal_error("shm_open {}: {}", key, std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    int e = errno;
    close(fd);
    shm_unlink(key.c_str());
    return internal_error("cannot size shared memory {} to {} bytes: {}", key, bytes,
                          std::strerror(e));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(key.c_str());
    return internal_error("cannot map shared memory {}: {}", key, std::strerror(e));
  }
  std::unique_ptr<ShmBuffer> b(new ShmBuffer());
  b->key_ = std::move(key);
  b->data_ = p;
  b->bytes_ = bytes;
  return b;
}

ShmBuffer::~ShmBuffer() {
  if (cuda_) {
#ifdef KESTREL_WITH_CUDA
    if (data_) {
      cudaSetDevice(device_);
      cudaFree(data_);
    }
#endif
    return;
  }
  munmap(data_, bytes_);
  shm_unlink(key_.c_str());
}

std::string shm_region_name(std::string_view what) {
  return fmt::format("kestrel_bench_{}_{}", getpid(), what);
}

std::string shm_key(std::string_view region) { return fmt::format("/{}", region); }

StatusOr<ShmInputs> write_shm_inputs(std::span<const Sample> samples, const std::string& region,
                                     ShmPlace place) {
  size_t bytes = 0;
  for (const Sample& s : samples)
    for (const InputTensor& t : s.inputs) bytes += shm_align(t.data.size());
  ShmInputs out;
  KS_ASSIGN_OR_RETURN(out.buffer, create_shm_buffer(place, region, bytes));
  size_t offset = 0;
  for (const Sample& s : samples) {
    std::vector<ShmTensorRef>& refs = out.refs.emplace_back();
    for (const InputTensor& t : s.inputs) {
      KS_RETURN_IF_ERROR(out.buffer->write(offset, t.data));
      refs.push_back({region, offset, t.data.size()});
      offset += shm_align(t.data.size());
    }
  }
  return out;
}

StatusOr<std::vector<std::pair<std::string, int64_t>>> shm_output_sizes(const ModelMetadata& m,
                                                                        int64_t batch,
                                                                        int64_t fixed) {
  std::vector<std::pair<std::string, int64_t>> sizes;
  for (const TensorSpec& t : m.outputs) {
    if (fixed > 0) {
      sizes.emplace_back(t.name, fixed);
      continue;
    }
    int64_t bytes = datatype_size(t.datatype);
    for (size_t d = 0; d < t.shape.size(); ++d) {
      const int64_t dim = t.shape[d] < 0 && d == 0 ? batch : t.shape[d];
      if (dim < 0 || bytes == 0) {
        return invalid_argument(
            "output '{}' ({}) has no fixed size: give --output-shared-memory-size", t.name,
            t.datatype);
      }
      bytes *= dim;
    }
    sizes.emplace_back(t.name, bytes);
  }
  return sizes;
}

StatusOr<ShmOutputs> make_shm_outputs(std::span<const std::pair<std::string, int64_t>> sizes,
                                      const std::string& region, ShmPlace place) {
  ShmOutputs out;
  size_t offset = 0;
  for (const auto& [name, size] : sizes) {
    out.refs.push_back({name, {region, offset, static_cast<size_t>(size)}});
    offset += shm_align(static_cast<size_t>(size));
  }
  KS_ASSIGN_OR_RETURN(out.buffer, create_shm_buffer(place, region, offset));
  return out;
}

}  // namespace kestrel::bench
