// System shared memory on the client side (`kestrel bench --shared-memory system`): the objects
// the bench creates, where each tensor of a request lives in them, and the bytes each output needs.
// The HTTP and gRPC clients register the regions with the server in their own protocol.
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

// A POSIX shared-memory object this process created and mapped; unlinked when destroyed.
class ShmBuffer {
 public:
  // Creates `key` ("/name"), replacing one left over by a run that was killed.
  static StatusOr<std::unique_ptr<ShmBuffer>> create(std::string key, size_t bytes);
  ~ShmBuffer();
  ShmBuffer(const ShmBuffer&) = delete;
  ShmBuffer& operator=(const ShmBuffer&) = delete;

  const std::string& key() const { return key_; }
  char* data() { return static_cast<char*>(data_); }
  size_t size() const { return bytes_; }

 private:
  ShmBuffer(std::string key, void* data, size_t bytes)
      : key_(std::move(key)), data_(data), bytes_(bytes) {}
  std::string key_;
  void* data_;
  size_t bytes_;
};

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
StatusOr<ShmInputs> write_shm_inputs(std::span<const Sample> samples, const std::string& region);

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
                                      const std::string& region);

}  // namespace kestrel::bench
