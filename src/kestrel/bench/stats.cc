// Latency percentiles, window stability and arrival schedules (see stats.h).
#include "kestrel/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kestrel::bench {

int64_t percentile_of_sorted(std::span<const int64_t> sorted, double p) {
  if (sorted.empty()) return 0;
  const double clamped = std::clamp(p, 0.0, 100.0);
  const auto index =
      static_cast<size_t>(std::llround(clamped / 100.0 * static_cast<double>(sorted.size() - 1)));
  return sorted[std::min(index, sorted.size() - 1)];
}

LatencySummary summarize_latencies(std::vector<int64_t>& latencies_ns, double custom_percentile) {
  LatencySummary s;
  s.custom_percentile = custom_percentile;
  if (latencies_ns.empty()) return s;
  std::sort(latencies_ns.begin(), latencies_ns.end());
  const std::span<const int64_t> v(latencies_ns);
  s.count = static_cast<int64_t>(v.size());
  const double sum = std::accumulate(v.begin(), v.end(), 0.0);
  s.mean_ns = sum / static_cast<double>(s.count);
  double squares = 0;
  for (int64_t x : v) squares += (static_cast<double>(x) - s.mean_ns) * (x - s.mean_ns);
  s.stddev_ns = std::sqrt(squares / static_cast<double>(s.count));
  s.min_ns = v.front();
  s.max_ns = v.back();
  s.p50_ns = percentile_of_sorted(v, 50);
  s.p90_ns = percentile_of_sorted(v, 90);
  s.p95_ns = percentile_of_sorted(v, 95);
  s.p99_ns = percentile_of_sorted(v, 99);
  s.custom_ns = percentile_of_sorted(v, custom_percentile);
  return s;
}

bool windows_stable(std::span<const WindowFigures> windows, double tolerance_percent,
                    size_t required) {
  if (required == 0 || windows.size() < required) return false;
  const std::span<const WindowFigures> last = windows.last(required);
  double throughput = 0, latency = 0;
  for (const WindowFigures& w : last) {
    throughput += w.throughput;
    latency += w.latency;
  }
  throughput /= static_cast<double>(required);
  latency /= static_cast<double>(required);
  if (throughput <= 0) return false;
  const double tolerance = tolerance_percent / 100.0;
  for (const WindowFigures& w : last) {
    if (std::abs(w.throughput - throughput) > tolerance * throughput) return false;
    if (std::abs(w.latency - latency) > tolerance * latency) return false;
  }
  return true;
}

ArrivalSchedule::ArrivalSchedule(Distribution distribution, double rate, uint64_t seed)
    : distribution_(distribution), rate_(rate), rng_(seed) {}

int64_t ArrivalSchedule::next_ns() {
  const double mean_gap_ns = 1e9 / rate_;
  if (distribution_ == Distribution::kConstant) {
    elapsed_ns_ += mean_gap_ns;
  } else {
    // u in [0, 1) with 53 random bits; 1 - u is in (0, 1], so the logarithm is finite.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    elapsed_ns_ += -std::log(1.0 - u) * mean_gap_ns;
  }
  return static_cast<int64_t>(elapsed_ns_);
}

}  // namespace kestrel::bench
