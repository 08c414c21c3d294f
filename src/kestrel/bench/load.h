// The load generator: closed-loop concurrency (a slot per concurrent request, each sending its
// next request as soon as the previous one is answered: from the answer's callback over an
// asynchronous transport (gRPC), else on a thread of its own) and open-loop request rates (requests
// sent on a Poisson or constant schedule whatever the server does, latency measured from the
// scheduled time so that coordinated omission cannot hide a stall; over an asynchronous transport
// a few threads send them in turns, else each of max_threads workers sends its next one).
//
// One load level ("point") is measured in windows of --measurement-interval: a warm-up window is
// discarded, then windows are repeated until three consecutive ones agree within
// --stability-percentage on throughput and latency, or --max-trials windows were taken. The
// point's figures are those of the last three windows merged (fewer when it never settled, and
// then `stable` is false). Every request is counted: answered, or failed with its error.
//
// Thread safety: run_point() blocks the caller and runs its own worker threads; the Client must
// outlive it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kestrel/bench/client.h"
#include "kestrel/bench/stats.h"

namespace kestrel::bench {

enum class LoadMode { kConcurrency, kRequestRate };

struct LoadOptions {
  int64_t measurement_interval_ms = 5000;
  double stability_percent = 10;
  int max_trials = 10;
  // Judge stability (and report) on this latency percentile; negative: on the mean latency, as
  // perf_analyzer does without --percentile.
  double percentile = -1;
  // Inferences per request (-b), for inferences per second.
  int64_t batch_size = 1;
  // Open loop: the arrival process, its seed, and how many requests may be in flight (one per
  // connection; a thread per connection over a blocking transport).
  Distribution distribution = Distribution::kPoisson;
  uint64_t seed = 1;
  int max_threads = 16;
  // Read the server's statistics around each window (the server-side breakdown).
  bool server_stats = true;
  // Keep one answer per sample (for --accuracy); see PointResult::answers.
  bool keep_answers = false;
};

// One measurement window, or several merged.
struct Measurement {
  double duration_s = 0;
  int64_t requests = 0;  // answered successfully
  int64_t errors = 0;    // failed; each failure is counted under its message in error_counts
  std::map<std::string, int64_t> error_counts;
  double throughput = 0;  // inferences per second (requests * batch size / duration)
  LatencySummary latency;
  double client_send_us = 0, client_recv_us = 0;  // means over the answered requests
  // Open loop: requests a worker sent more than 1 ms after their scheduled time (too few workers,
  // or a client that cannot keep up; their latency still counts from the scheduled time).
  int64_t delayed = 0;
  // The server's own counters over the window, when it has a statistics endpoint.
  std::optional<ServerStats> server;
  // Latencies in ns, kept until windows are merged; not reported.
  std::vector<int64_t> latencies_ns;
};

struct PointResult {
  LoadMode mode = LoadMode::kConcurrency;
  double level = 0;  // the concurrency, or the request rate in requests per second
  bool stable = false;
  std::vector<Measurement> windows;  // every window after warm-up, in order
  Measurement summary;               // the merged last (up to) three windows
  // keep_answers: the first successful answer body of each sample index that got one.
  std::map<size_t, std::string> answers;
};

// What the progress display shows, several times a second.
struct Progress {
  LoadMode mode = LoadMode::kConcurrency;
  double level = 0;
  int trial = 0;  // 0 during warm-up, then 1..max_trials
  int max_trials = 0;
  double window_fraction = 0;         // of the current window
  int64_t requests = 0, errors = 0;   // so far in this window
  std::optional<WindowFigures> last;  // the previous window's figures
};
using ProgressCallback = std::function<void(const Progress&)>;

// Merges measurements: counts and durations add up, latencies are pooled and summarized again.
Measurement merge_measurements(std::span<const Measurement> windows, double percentile,
                               int64_t batch_size);

// Measures one load level. REQUIRES: client.prepare() was called; level >= 1 for concurrency,
// > 0 for a rate. Fails only when no worker can connect at all; request errors are counted.
StatusOr<PointResult> run_point(Client& client, LoadMode mode, double level,
                                const LoadOptions& options, const ProgressCallback& progress = {});

}  // namespace kestrel::bench
