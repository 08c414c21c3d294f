// The bench's outputs: the terminal table, perf_analyzer's CSV, a JSON file with every
// measurement, and a self-contained HTML report (inline SVG, no scripts, no fonts to fetch) that
// overlays several runs: throughput and latency (p50, p99) against concurrency or request rate.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/bench/load.h"

namespace kestrel::bench {

// The mAP of the server's /detect answers (--accuracy).
struct AccuracyResult {
  int64_t images = 0, labels = 0, detections = 0;
  double map50 = 0, map50_95 = 0;
};

// Process start -> ready -> first answer of a server (--cold-start).
struct ColdStartResult {
  std::string command;
  double ready_s = 0;                     // from process start to /v2/health/ready answering 200
  double first_answer_s = 0;              // from process start to the first successful inference
  int64_t peak_rss_bytes = 0;             // the child's peak resident set (VmHWM)
  std::optional<int64_t> peak_gpu_bytes;  // from nvidia-smi, when there is one
};

// Everything one `kestrel bench` run measured.
struct BenchRun {
  std::string label;                          // the name in the report's legend
  std::string url, model, protocol, request;  // request: "infer" or "detect"
  std::string command_line, date;
  int64_t batch_size = 1;
  double percentile = -1;
  std::vector<PointResult> points;
  std::optional<AccuracyResult> accuracy;
  std::optional<ColdStartResult> cold_start;
};

// perf_analyzer's exact header (the first column is "Request Rate" for open-loop runs, as
// perf_analyzer writes it), then one row per point, times in microseconds.
inline constexpr std::string_view kCsvHeader =
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,"
    "p90 latency,p95 latency,p99 latency";
std::string csv_report(const BenchRun& run);

// One row of the terminal table (the header first when `header`).
std::string table_header(LoadMode mode, double percentile);
std::string table_row(const PointResult& point, double percentile);

std::string json_report(const BenchRun& run);

// The plotted figures of one run, read from a bench JSON file or taken from a BenchRun.
struct Series {
  std::string label;
  LoadMode mode = LoadMode::kConcurrency;
  struct Point {
    double level = 0, throughput = 0, p50_us = 0, p99_us = 0;
    int64_t errors = 0;
  };
  std::vector<Point> points;
};
Series series_of(const BenchRun& run);
StatusOr<Series> parse_series(std::string_view bench_json, std::string_view fallback_label);

// A complete HTML page with both plots and a table per run. REQUIRES: !runs.empty().
std::string html_report(std::span<const Series> runs, std::string_view title);

}  // namespace kestrel::bench
