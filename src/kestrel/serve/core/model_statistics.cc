// ModelStatistics (see model_statistics.h).
#include "kestrel/serve/core/model_statistics.h"

#include <chrono>

namespace kestrel::serve {
namespace {

void add(inference::StatisticDuration* d, uint64_t ns) {
  d->set_count(d->count() + 1);
  d->set_ns(d->ns() + ns);
}

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

void Histogram::observe(double value) {
  for (size_t i = 0; i < bounds.size(); ++i)
    if (value <= bounds[i]) ++buckets[i];
  ++count;
  sum += value;
}

ModelStatistics::ModelStatistics() {
  batch_sizes_.bounds = {1, 2, 4, 8, 16, 32, 64, 128};
  // Latency from 100 us to 10 s, roughly x2.5 apart.
  latency_seconds_.bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                             0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  batch_sizes_.buckets.assign(batch_sizes_.bounds.size(), 0);
  latency_seconds_.buckets.assign(latency_seconds_.bounds.size(), 0);
}

void ModelStatistics::record_success(uint64_t total_ns, uint64_t queue_ns, int64_t rows) {
  std::lock_guard lock(mutex_);
  auto* s = proto_.mutable_inference_stats();
  add(s->mutable_success(), total_ns);
  add(s->mutable_queue(), queue_ns);
  proto_.set_inference_count(proto_.inference_count() + static_cast<uint64_t>(rows));
  proto_.set_last_inference(now_ms());
  latency_seconds_.observe(static_cast<double>(total_ns) * 1e-9);
}

void ModelStatistics::record_failure(uint64_t total_ns) {
  std::lock_guard lock(mutex_);
  add(proto_.mutable_inference_stats()->mutable_fail(), total_ns);
  proto_.set_last_inference(now_ms());
  latency_seconds_.observe(static_cast<double>(total_ns) * 1e-9);
}

void ModelStatistics::record_execution(int64_t batch_size, uint64_t input_ns, uint64_t infer_ns,
                                       uint64_t output_ns) {
  std::lock_guard lock(mutex_);
  proto_.set_execution_count(proto_.execution_count() + 1);
  auto* s = proto_.mutable_inference_stats();
  add(s->mutable_compute_input(), input_ns);
  add(s->mutable_compute_infer(), infer_ns);
  add(s->mutable_compute_output(), output_ns);
  inference::InferBatchStatistics& b = batches_[batch_size];
  b.set_batch_size(static_cast<uint64_t>(batch_size));
  add(b.mutable_compute_input(), input_ns);
  add(b.mutable_compute_infer(), infer_ns);
  add(b.mutable_compute_output(), output_ns);
  batch_sizes_.observe(static_cast<double>(batch_size));
}

void ModelStatistics::record_decode(int64_t images, uint64_t wait_ns, uint64_t decode_ns) {
  std::lock_guard lock(mutex_);
  images_decoded_ += static_cast<uint64_t>(images);
  decode_wait_ns_ += wait_ns;
  decode_ns_ += decode_ns;
}

ModelStatistics::Snapshot ModelStatistics::snapshot() const {
  std::lock_guard lock(mutex_);
  Snapshot s;
  s.proto = proto_;
  // Every duration is present even when zero, as Triton reports them.
  auto* st = s.proto.mutable_inference_stats();
  st->mutable_success();
  st->mutable_fail();
  st->mutable_queue();
  st->mutable_compute_input();
  st->mutable_compute_infer();
  st->mutable_compute_output();
  for (const auto& [size, b] : batches_) *s.proto.add_batch_stats() = b;
  s.batch_sizes = batch_sizes_;
  s.latency_seconds = latency_seconds_;
  s.images_decoded = images_decoded_;
  s.decode_wait_ns = decode_wait_ns_;
  s.decode_ns = decode_ns_;
  return s;
}

}  // namespace kestrel::serve
