// Prometheus text rendering (see metrics.h).
#include "kestrel/serve/core/metrics.h"

#include <fmt/format.h>

#include <functional>

namespace kestrel::serve {

std::string escape_label_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

// Formats a floating-point sample the way Prometheus reads it.
std::string number(double v) { return fmt::format("{}", v); }

std::string labels(const ModelMetrics& m) {
  return fmt::format("model=\"{}\",version=\"{}\"", escape_label_value(m.model),
                     escape_label_value(m.version));
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::span<const ModelMetrics> models,
            const std::function<double(const ModelMetrics&)>& value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  for (const ModelMetrics& m : models)
    out += fmt::format("{}{{{}}} {}\n", name, labels(m), number(value(m)));
}

void histogram(std::string& out, std::string_view name, std::string_view help,
               std::span<const ModelMetrics> models,
               const std::function<const Histogram&(const ModelMetrics&)>& get) {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  for (const ModelMetrics& m : models) {
    const Histogram& h = get(m);
    std::string l = labels(m);
    for (size_t i = 0; i < h.bounds.size(); ++i)
      out +=
          fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, l, number(h.bounds[i]), h.buckets[i]);
    out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, l, h.count);
    out += fmt::format("{}_sum{{{}}} {}\n", name, l, number(h.sum));
    out += fmt::format("{}_count{{{}}} {}\n", name, l, h.count);
  }
}

double us(const inference::StatisticDuration& d) { return static_cast<double>(d.ns() / 1000); }

}  // namespace

std::string render_metrics(std::span<const ModelMetrics> models) {
  std::string out;
  auto st = [](const ModelMetrics& m) -> const inference::InferStatistics& {
    return m.stats.proto.inference_stats();
  };
  family(out, "nv_inference_request_success", "counter",
         "Number of successful inference requests, all batch sizes", models,
         [&](const ModelMetrics& m) { return static_cast<double>(st(m).success().count()); });
  family(out, "nv_inference_request_failure", "counter",
         "Number of failed inference requests, all batch sizes", models,
         [&](const ModelMetrics& m) { return static_cast<double>(st(m).fail().count()); });
  family(
      out, "nv_inference_count", "counter",
      "Number of inferences performed (does not include cached requests)", models,
      [](const ModelMetrics& m) { return static_cast<double>(m.stats.proto.inference_count()); });
  family(
      out, "nv_inference_exec_count", "counter",
      "Number of model executions performed (does not include cached requests)", models,
      [](const ModelMetrics& m) { return static_cast<double>(m.stats.proto.execution_count()); });
  family(out, "nv_inference_request_duration_us", "counter",
         "Cumulative inference request duration in microseconds (includes cached requests)", models,
         [&](const ModelMetrics& m) { return us(st(m).success()) + us(st(m).fail()); });
  family(out, "nv_inference_queue_duration_us", "counter",
         "Cumulative inference queuing duration in microseconds (includes cached requests)", models,
         [&](const ModelMetrics& m) { return us(st(m).queue()); });
  family(out, "nv_inference_compute_input_duration_us", "counter",
         "Cumulative compute input duration in microseconds (does not include cached requests)",
         models, [&](const ModelMetrics& m) { return us(st(m).compute_input()); });
  family(out, "nv_inference_compute_infer_duration_us", "counter",
         "Cumulative compute inference duration in microseconds (does not include cached requests)",
         models, [&](const ModelMetrics& m) { return us(st(m).compute_infer()); });
  family(out, "nv_inference_compute_output_duration_us", "counter",
         "Cumulative inference compute output duration in microseconds (does not include cached "
         "requests)",
         models, [&](const ModelMetrics& m) { return us(st(m).compute_output()); });
  family(out, "nv_inference_pending_request_count", "gauge",
         "Instantaneous number of pending requests awaiting execution per-model.", models,
         [](const ModelMetrics& m) { return static_cast<double>(m.pending); });
  family(out, "kestrel_detect_decoded_images_total", "counter",
         "Number of images /detect requests decoded", models,
         [](const ModelMetrics& m) { return static_cast<double>(m.stats.images_decoded); });
  family(out, "kestrel_detect_decode_seconds_total", "counter",
         "Cumulative time /detect requests spent decoding their images", models,
         [](const ModelMetrics& m) { return static_cast<double>(m.stats.decode_ns) * 1e-9; });
  family(out, "kestrel_detect_decode_wait_seconds_total", "counter",
         "Cumulative time /detect requests waited for a decoding thread", models,
         [](const ModelMetrics& m) { return static_cast<double>(m.stats.decode_wait_ns) * 1e-9; });
  histogram(out, "kestrel_inference_batch_size", "Batch sizes of the model executions", models,
            [](const ModelMetrics& m) -> const Histogram& { return m.stats.batch_sizes; });
  histogram(out, "kestrel_inference_request_duration_seconds",
            "Inference request latency from arrival to answer", models,
            [](const ModelMetrics& m) -> const Histogram& { return m.stats.latency_seconds; });
  return out;
}

}  // namespace kestrel::serve
