// Shared memory on the client side (`kestrel bench --shared-memory system|cuda`): the buffers the
// bench creates (POSIX shared-memory objects, or GPU memory exported with CUDA IPC), where each
// tensor of a request lives in them, and the bytes each output needs. The HTTP and gRPC clients
// register the regions with the server in their own protocol.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/bench/client.h"

namespace kestrel::bench {

// A buffer the server maps by its name: a POSIX shared-memory object this process created and
// mapped (unlinked when destroyed), or a block of GPU memory it allocated and exported with
// cudaIpcGetMemHandle (freed when destroyed).
class ShmBuffer {
 public:
  // Creates the object `key` ("/name"), replacing one left over by a run that was killed.
  static StatusOr<std::unique_ptr<ShmBuffer>> create(std::string key, size_t bytes);
  // Allocates `bytes` on CUDA device `device`; FAILED_PRECONDITION in a build without CUDA or on
  // a machine without that GPU.
  static StatusOr<std::unique_ptr<ShmBuffer>> create_cuda(size_t bytes, int device);
  ~ShmBuffer();
  ShmBuffer(const ShmBuffer&) = delete;
  ShmBuffer& operator=(const ShmBuffer&) = delete;

  bool cuda() const { return cuda_; }
  const std::string& key() const { return key_; }                // system memory
  const std::string& raw_handle() const { return raw_handle_; }  // GPU memory: 64 bytes
  int device() const { return device_; }                         // GPU memory
  size_t size() const { return bytes_; }
  // Copies `bytes` to `offset` (into GPU memory with a copy over the bus).
  Status write(size_t offset, std::string_view bytes);

 private:
  ShmBuffer() = default;
  bool cuda_ = false;
  std::string key_;
  std::string raw_handle_;
  int device_ = 0;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Which memory --shared-memory asks for, and on which GPU.
struct ShmPlace {
  bool cuda = false;
  int device = 0;
};

inline ShmPlace shm_place(const ClientOptions& o) {
  return {o.shared_memory == ClientOptions::SharedMemory::kCuda, o.shared_memory_device};
}

// A new buffer of `bytes` for region `region`, in `place`.
StatusOr<std::unique_ptr<ShmBuffer>> create_shm_buffer(ShmPlace place, const std::string& region,
                                                       size_t bytes);

// Where one tensor lives: a registered region and a byte range in it.
struct ShmTensorRef {
  std::string region;
  size_t offset = 0;
  size_t byte_size = 0;
};

// A region name unique to this process ("kestrel_bench_<pid>_<what>") and its object's key.
std::string shm_region_name(std::string_view what);
std::string shm_key(std::string_view region);

// Ranges in a region start on 64-byte boundaries (the server reads aligned inputs in place).
inline size_t shm_align(size_t n) { return (n + 63) / 64 * 64; }

// The inputs of every sample, written one after another into a new region `region`; refs[s][i]
// is where input i of sample s lives.
struct ShmInputs {
  std::unique_ptr<ShmBuffer> buffer;
  std::vector<std::vector<ShmTensorRef>> refs;
};
StatusOr<ShmInputs> write_shm_inputs(std::span<const Sample> samples, const std::string& region,
                                     ShmPlace place = {});

// The bytes of each output of a request of `batch` rows: `fixed` when positive, else from the
// metadata (only the first dimension may be variable).
StatusOr<std::vector<std::pair<std::string, int64_t>>> shm_output_sizes(const ModelMetadata& m,
                                                                        int64_t batch,
                                                                        int64_t fixed);

// One connection's output region: every output at its own aligned offset.
struct ShmOutputs {
  std::unique_ptr<ShmBuffer> buffer;
  std::vector<std::pair<std::string, ShmTensorRef>> refs;  // output name, where it goes
};
StatusOr<ShmOutputs> make_shm_outputs(std::span<const std::pair<std::string, int64_t>> sizes,
                                      const std::string& region, ShmPlace place = {});

}  // namespace kestrel::bench
