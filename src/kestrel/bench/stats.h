// Statistics of a load test: latency percentiles, stability of repeated measurement windows, and
// the arrival schedules of open-loop load.
//
// Everything here is pure (no clocks, no I/O), so it is unit-tested on known data; the load
// generator (load.h) feeds it what it measured.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace kestrel::bench {

// The value at percentile `p` (0..100) of `sorted` (ascending), by nearest rank over the n-1
// intervals the way perf_analyzer reads it: sorted[round(p / 100 * (n - 1))]. 0 for no values.
int64_t percentile_of_sorted(std::span<const int64_t> sorted, double p);

// Latencies of one measurement, in nanoseconds.
struct LatencySummary {
  int64_t count = 0;
  double mean_ns = 0;
  double stddev_ns = 0;
  int64_t min_ns = 0, p50_ns = 0, p90_ns = 0, p95_ns = 0, p99_ns = 0, max_ns = 0;
  // The latency at --percentile, when one was asked for (otherwise equal to p99).
  int64_t custom_ns = 0;
  double custom_percentile = 99;
};

// Summarizes `latencies_ns` (any order; sorted in place). `custom_percentile` is --percentile.
LatencySummary summarize_latencies(std::vector<int64_t>& latencies_ns,
                                   double custom_percentile = 99);

// What stability is judged on, per measurement window.
struct WindowFigures {
  double throughput = 0;  // inferences per second
  double latency = 0;     // the mean latency, or the --percentile latency when one is set
};

// True when every one of `windows` lies within `tolerance_percent` of their mean, for throughput
// and latency both (perf_analyzer's criterion). Fewer than `required` (3) windows are not stable;
// only the last `required` windows are judged. Zero throughput in all windows (a server that
// answers nothing) is not stable either.
bool windows_stable(std::span<const WindowFigures> windows, double tolerance_percent,
                    size_t required = 3);

// Open-loop arrivals: the time from one request's scheduled send to the next.
enum class Distribution { kConstant, kPoisson };

// A deterministic schedule of send times at `rate` requests per second. Poisson arrivals draw
// exponential gaps from a seeded mt19937_64 (whose output the standard fixes) through
// inverse-transform sampling, -ln(1 - u) / rate, so a seed gives the same schedule everywhere,
// unlike std::exponential_distribution whose algorithm each standard library chooses.
//
// Thread safety: none; the load generator hands out slots under its own lock.
class ArrivalSchedule {
 public:
  // REQUIRES: rate > 0.
  ArrivalSchedule(Distribution distribution, double rate, uint64_t seed);

  // The scheduled send time of the next request, in nanoseconds from the schedule's start. The
  // first request is scheduled one gap after the start.
  int64_t next_ns();

 private:
  Distribution distribution_;
  double rate_;
  std::mt19937_64 rng_;
  double elapsed_ns_ = 0;
};

// The latency of one open-loop request, free of coordinated omission: measured from the time the
// schedule wanted it sent, not from when a (possibly late) worker sent it, so a stalled server is
// charged for the requests that queued behind the stall.
inline int64_t open_loop_latency_ns(int64_t scheduled_ns, int64_t completed_ns) {
  return completed_ns - scheduled_ns;
}

}  // namespace kestrel::bench
