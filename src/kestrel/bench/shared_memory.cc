// Client-side system shared memory (see shared_memory.h).
#include "kestrel/bench/shared_memory.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kestrel::bench {

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
  return std::unique_ptr<ShmBuffer>(new ShmBuffer(std::move(key), p, bytes));
}

ShmBuffer::~ShmBuffer() {
  munmap(data_, bytes_);
  shm_unlink(key_.c_str());
}

std::string shm_region_name(std::string_view what) {
  return fmt::format("kestrel_bench_{}_{}", getpid(), what);
}

std::string shm_key(std::string_view region) { return fmt::format("/{}", region); }

StatusOr<ShmInputs> write_shm_inputs(std::span<const Sample> samples, const std::string& region) {
  size_t bytes = 0;
  for (const Sample& s : samples)
    for (const InputTensor& t : s.inputs) bytes += shm_align(t.data.size());
  ShmInputs out;
  KS_ASSIGN_OR_RETURN(out.buffer, ShmBuffer::create(shm_key(region), std::max<size_t>(bytes, 64)));
  size_t offset = 0;
  for (const Sample& s : samples) {
    std::vector<ShmTensorRef>& refs = out.refs.emplace_back();
    for (const InputTensor& t : s.inputs) {
      std::memcpy(out.buffer->data() + offset, t.data.data(), t.data.size());
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
                                      const std::string& region) {
  ShmOutputs out;
  size_t offset = 0;
  for (const auto& [name, size] : sizes) {
    out.refs.push_back({name, {region, offset, static_cast<size_t>(size)}});
    offset += shm_align(static_cast<size_t>(size));
  }
  KS_ASSIGN_OR_RETURN(out.buffer, ShmBuffer::create(shm_key(region), std::max<size_t>(offset, 64)));
  return out;
}

}  // namespace kestrel::bench
