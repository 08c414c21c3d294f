// Prometheus text exposition of the server's metrics, with Triton's metric names so that existing
// dashboards work: nv_inference_request_success, nv_inference_request_failure, nv_inference_count,
// nv_inference_exec_count, nv_inference_request_duration_us, nv_inference_queue_duration_us,
// nv_inference_compute_{input,infer,output}_duration_us (counters) and
// nv_inference_pending_request_count (gauge), each labelled model and version; plus Kestrel's
// histograms kestrel_inference_batch_size (executed batch sizes) and
// kestrel_inference_request_duration_seconds (request latency). GPU utilization, memory and power
// come from gpu_metrics.h.
//
// Metrics are computed when scraped from each model's statistics, so recording a request costs
// nothing beyond ModelStatistics. Note that `promtool check metrics` lints Triton's names (no
// "_total" suffix, "_us" units); the text itself is valid exposition format.
#pragma once

#include <span>
#include <string>

#include "kestrel/serve/core/model_statistics.h"

namespace kestrel::serve {

struct ModelMetrics {
  std::string model;
  std::string version;
  ModelStatistics::Snapshot stats;
  size_t pending = 0;
};

std::string render_metrics(std::span<const ModelMetrics> models);

// A label value escaped for the exposition format (backslash, double quote, newline).
std::string escape_label_value(std::string_view value);

}  // namespace kestrel::serve
