// DynamicBatcher: the per-model request queue and the scheduler that turns queued requests into
// batches for the model's instances.
//
// Requests wait in one FIFO queue per priority level (level 1 is served first). `instance_count`
// worker threads each take the next batch and run it through the executor concurrently. The
// request tensors of a batch are concatenated along the batch axis (axis 0) and each output is
// split back by the rows each request brought.
//
// The batch rule (choose_batch(), with dynamic batching on). An idle worker lines up the queued
// requests whose non-batch input shapes agree, in queue order, up to max_batch_size rows; the
// batch can be any prefix of that line. Then, in this order:
//   1. the line holds max_batch_size rows: all of it runs;
//   2. the oldest queued request has waited max_queue_delay_us (or the delay is 0): all of it
//      runs, whatever its size;
//   3. some prefix has a preferred size: the largest such prefix runs now, the rest stays queued;
//   4. otherwise the worker waits for more requests, at most until rule 2 applies.
// The preferred sizes are the configured preferred_batch_size values; when the configuration has
// none, the sizes the engine is warm for (warm_batch_sizes: those with a recorded CUDA graph on
// the GPU), 2 and more: so with 5 requests queued, max 16 and graphs at 4, 8 and 16, a batch of
// 4 runs at once rather than an odd 5 that has no graph (which would be planned and recorded in
// the middle of serving), unless they have waited the delay already, in which case all 5 run.
// Size 1 never counts as warm: preferring it would send every lone request at once instead of
// waiting for company. Under rule 3 Kestrel behaves as Triton does with preferred sizes.
//
// Image requests (InferRequest::images, the detect endpoint) batch with each other only: the image
// executor takes every image of the batch at once and makes the model input itself (the letterbox,
// on the GPU when the model runs there), so images of any size share a batch.
//
// Queue policy: a request is refused immediately with UNAVAILABLE when the queue holds
// max_queue_size requests, and one that waited longer than its timeout is answered UNAVAILABLE
// (timeout action REJECT) or moved behind every request that has not timed out (DELAY). A cancelled
// request is dropped from the queue and answered CANCELLED; it never reaches the model.
//
// Running on the caller's thread. A request that finds the model idle (nothing queued, no other
// request running this way, an instance free) and that the batch rule would run at once (no
// batching, a delay of 0, or a full or preferred batch on its own) runs inside enqueue(), on the
// caller's thread, and its callback is called there before enqueue() returns. This saves the two
// thread hand-offs of the worker path (frontend -> instance thread -> frontend), which were most
// of the server's own latency at concurrency 1 (about 40 us of wake-up on a 2-core machine).
// At most one request of a model runs this way at a time, so a frontend's I/O threads are never
// all held by inference; under load the queue is rarely empty and the workers do the work.
//
// Thread safety: enqueue() and pending() may be called from any thread. stop() drains: it refuses
// new requests, runs every queued one, and joins the workers; the destructor calls it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/serve/core/model_statistics.h"
#include "kestrel/serve/core/request.h"

namespace kestrel::serve {

struct BatcherOptions {
  // 0: the model takes no batch axis; every request runs alone, as it is.
  int max_batch_size = 0;
  // Off: requests run one at a time even when max_batch_size > 0.
  bool dynamic_batching = false;
  std::vector<int> preferred_batch_sizes;
  // The batch sizes the model's engines are warm for (engine::Engine::warm_batch_sizes()):
  // preferred when preferred_batch_sizes is empty (sizes below 2 are ignored).
  std::vector<int> warm_batch_sizes;
  uint64_t max_queue_delay_us = 0;
  uint64_t priority_levels = 0;  // 0: one level
  uint64_t default_priority_level = 0;
  uint32_t max_queue_size = 0;      // 0: unlimited
  uint64_t default_timeout_us = 0;  // 0: none
  bool allow_timeout_override = false;
  bool delay_on_timeout = false;  // timeout action DELAY instead of REJECT
  int instance_count = 1;
  // Run a request that finds the model idle on the caller's thread (see above).
  bool run_when_idle = true;
};

// The batch rule of the header comment as a pure function. `rows[k]`: the rows of the batch made
// of the first k+1 lined-up requests (ascending, the last <= max_batch_size); `preferred`: the
// sizes rule 3 prefers; `delay_expired`: the oldest queued request has waited max_queue_delay_us.
// Returns how many of the lined-up requests run now; 0: wait.
size_t choose_batch(std::span<const int64_t> rows, int64_t max_batch_size,
                    std::span<const int> preferred, bool delay_expired);

// Runs one batch on instance `instance` (0..instance_count-1): inputs by name, outputs in the order
// of the batcher's output names.
using BatchExecutor = std::function<StatusOr<std::vector<Tensor>>(
    const std::map<std::string, Tensor>&, int instance)>;
// Turns the images of one batch's requests (in order, one row each) into the model's inputs on
// instance `instance` (the letterbox); the BatchExecutor runs them. The two are timed apart, as
// compute input and compute infer.
// Host memory for the rows of one input gathered from several requests, on instance `instance`
// (pinned memory for an engine on a GPU, so that the copy to the device runs at full speed).
using InputAllocator =
    std::function<StatusOr<Tensor>(DType dtype, const Shape& shape, int instance)>;
using ImageBatchPreparer = std::function<StatusOr<std::map<std::string, Tensor>>(
    std::span<const Tensor> images, int instance)>;
// Concatenates the rows of one input that several requests gave in GPU memory (CUDA shared
// memory) into one tensor on instance `instance`'s device, copying on the GPU.
using DeviceInputGatherer =
    std::function<StatusOr<Tensor>(std::span<const Tensor> parts, int instance)>;

class DynamicBatcher {
 public:
  // `output_names`: the model's outputs, in the order the executors return them. `stats`
  // (optional) must outlive the batcher. Without `image_preparer`, image requests are refused.
  // With `allocate_input`, every host input is gathered into memory it gives (even a single
  // request's); without, a batch of several requests is gathered into plain host memory. Inputs
  // in GPU memory batch only with inputs in GPU memory: a single request's go to the executor
  // as they are, several requests' are gathered by `gather_on_device` (without it, such batches
  // fail).
  static StatusOr<std::unique_ptr<DynamicBatcher>> create(
      const BatcherOptions& options, std::vector<std::string> output_names, BatchExecutor executor,
      ModelStatistics* stats, ImageBatchPreparer image_preparer = nullptr,
      InputAllocator allocate_input = nullptr, DeviceInputGatherer gather_on_device = nullptr);
  ~DynamicBatcher();

  // Queues `request` (inputs already validated against the model); `done` gets the outputs, on a
  // worker thread or, when the model is idle, on this thread before enqueue() returns.
  // UNAVAILABLE (and `done` is not called) when the queue is full or the batcher is stopping.
  Status enqueue(InferRequest request, InferCallback done);

  // Requests queued or running.
  size_t pending() const;
  void stop();

 private:
  struct Job {
    InferRequest request;
    InferCallback done;
    int64_t rows = 1;
    std::string signature;  // non-batch shapes and dtypes: jobs batch together only when equal
    std::chrono::steady_clock::time_point enqueued;
    std::chrono::steady_clock::time_point deadline;  // max() when none
    bool delayed = false;                            // timed out under DELAY
  };

  DynamicBatcher() = default;
  void worker(int instance);
  // REQUIRES: mutex_. Removes cancelled and (REJECT) timed-out jobs into `dropped`.
  void prune(std::chrono::steady_clock::time_point now, std::vector<Job>& dropped);
  // REQUIRES: mutex_. The lined-up jobs of the next batch, front first, as (level, index) pairs;
  // `rows` receives the rows of each prefix.
  std::vector<std::pair<size_t, size_t>> plan_batch(std::vector<int64_t>* rows) const;
  // REQUIRES: mutex_. How many of the lined-up jobs run now (choose_batch); 0: wait until `wake`.
  size_t batch_to_run(const std::vector<int64_t>& rows, std::chrono::steady_clock::time_point now,
                      std::chrono::steady_clock::time_point* wake) const;
  void execute(std::vector<Job> jobs, int instance);
  // REQUIRES: mutex_. Wakes a worker for queued work: all of them while an instance runs a
  // request on a caller's thread, since its own worker, if woken, cannot take the work.
  void wake_workers();
  static void finish(Job& job, StatusOr<InferResponse> result);

  BatcherOptions options_;
  std::vector<int> preferred_;  // the sizes rule 3 prefers
  std::vector<std::string> output_names_;
  BatchExecutor executor_;
  ImageBatchPreparer image_preparer_;
  InputAllocator allocate_input_;
  DeviceInputGatherer gather_on_device_;
  ModelStatistics* stats_ = nullptr;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::deque<Job>> queues_;  // by priority level, highest first
  size_t queued_ = 0;
  size_t running_ = 0;
  std::vector<char> busy_;  // by instance: running a batch (on its worker or a caller's thread)
  int running_inline_ = 0;  // requests running on callers' threads
  std::condition_variable inline_done_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace kestrel::serve
