// ModelStatistics: the cumulative counters of one model version, as Triton reports them
// (inference::ModelStatistics: success/fail counts and durations, queue,
// compute_input/infer/output, per-batch-size statistics) plus the histograms Kestrel exports to
// Prometheus (executed batch sizes, request latency).
//
// Thread safety: every method may be called concurrently (one mutex; recording is a few additions).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "kestrel/protocol/grpc_service.pb.h"

namespace kestrel::serve {

// Cumulative histogram with fixed upper bounds (Prometheus semantics: bucket i counts values <=
// bounds[i]; the implicit +Inf bucket is `count`).
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> buckets;  // same size as bounds, cumulative
  uint64_t count = 0;
  double sum = 0;
  void observe(double value);
};

class ModelStatistics {
 public:
  ModelStatistics();

  // One request answered: `total_ns` from arrival to answer, `queue_ns` spent waiting for a batch.
  void record_success(uint64_t total_ns, uint64_t queue_ns, int64_t rows);
  void record_failure(uint64_t total_ns);
  // One model execution of `batch_size` rows, with the time to gather the inputs, run the model and
  // scatter the outputs.
  void record_execution(int64_t batch_size, uint64_t input_ns, uint64_t infer_ns,
                        uint64_t output_ns);

  // The images of one /detect request decoded: `wait_ns` the request waited for a preprocessing
  // thread, `decode_ns` the decoding took.
  void record_decode(int64_t images, uint64_t wait_ns, uint64_t decode_ns);

  struct Snapshot {
    inference::ModelStatistics proto;  // name and version left empty
    // /detect's work before the queue (record_decode), cumulative.
    uint64_t images_decoded = 0;
    uint64_t decode_wait_ns = 0;
    uint64_t decode_ns = 0;
    Histogram batch_sizes;
    Histogram latency_seconds;
  };
  Snapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  inference::ModelStatistics proto_;
  std::map<int64_t, inference::InferBatchStatistics> batches_;
  Histogram batch_sizes_;
  Histogram latency_seconds_;
  uint64_t images_decoded_ = 0, decode_wait_ns_ = 0, decode_ns_ = 0;
};

}  // namespace kestrel::serve
