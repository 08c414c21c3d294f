// Statistics on known data: percentiles, window stability, arrival schedules.
#include "kestrel/bench/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

namespace kestrel::bench {
namespace {

TEST(Percentile, NearestRankOverIntervalsLikePerfAnalyzer) {
  std::vector<int64_t> v(101);
  std::iota(v.begin(), v.end(), 0);  // 0..100: percentile p is exactly p
  EXPECT_EQ(percentile_of_sorted(v, 0), 0);
  EXPECT_EQ(percentile_of_sorted(v, 50), 50);
  EXPECT_EQ(percentile_of_sorted(v, 99), 99);
  EXPECT_EQ(percentile_of_sorted(v, 100), 100);
  const std::vector<int64_t> four = {10, 20, 30, 40};  // index round(p * 3)
  EXPECT_EQ(percentile_of_sorted(four, 50), 30);       // round(1.5) = 2
  EXPECT_EQ(percentile_of_sorted(four, 90), 40);       // round(2.7) = 3
  EXPECT_EQ(percentile_of_sorted(four, 10), 10);       // round(0.3) = 0
}

TEST(Percentile, EmptyAndSingle) {
  EXPECT_EQ(percentile_of_sorted({}, 50), 0);
  const std::vector<int64_t> one = {7};
  EXPECT_EQ(percentile_of_sorted(one, 99), 7);
}

TEST(SummarizeLatencies, KnownDistribution) {
  // 1..1000 ms shuffled: mean 500.5, p50 = round(0.5 * 999) = index 500 -> 501.
  std::vector<int64_t> v;
  for (int i = 1000; i >= 1; --i) v.push_back(i * 1'000'000LL);
  LatencySummary s = summarize_latencies(v, 99.9);
  EXPECT_EQ(s.count, 1000);
  EXPECT_DOUBLE_EQ(s.mean_ns, 500.5e6);
  EXPECT_EQ(s.min_ns, 1'000'000);
  EXPECT_EQ(s.max_ns, 1000'000'000);
  EXPECT_EQ(s.p50_ns, 501'000'000);
  EXPECT_EQ(s.p90_ns, 900'000'000);     // round(899.1) = 899 -> 900
  EXPECT_EQ(s.p95_ns, 950'000'000);     // round(949.05) = 949 -> 950
  EXPECT_EQ(s.p99_ns, 990'000'000);     // round(989.01) = 989 -> 990
  EXPECT_EQ(s.custom_ns, 999'000'000);  // round(998.001) = 998 -> 999
  EXPECT_NEAR(s.stddev_ns, 288.675e6, 0.01e6);
}

TEST(WindowsStable, ThreeWindowsWithinTolerance) {
  const std::vector<WindowFigures> w = {{50, 1}, {100, 10}, {104, 10.2}, {98, 9.9}};
  EXPECT_TRUE(windows_stable(w, 10));
  EXPECT_FALSE(windows_stable(w, 2));  // 104 vs mean 100.67 is 3.3% off
}

TEST(WindowsStable, NeedsThreeWindows) {
  const std::vector<WindowFigures> w = {{100, 10}, {100, 10}};
  EXPECT_FALSE(windows_stable(w, 10));
}

TEST(WindowsStable, LatencyMustAgreeToo) {
  const std::vector<WindowFigures> w = {{100, 10}, {100, 10}, {100, 20}};
  EXPECT_FALSE(windows_stable(w, 10));
}

TEST(WindowsStable, OnlyTheLastThreeCount) {
  const std::vector<WindowFigures> w = {{1, 100}, {100, 10}, {101, 10}, {99, 10}};
  EXPECT_TRUE(windows_stable(w, 5));
}

TEST(WindowsStable, NothingAnsweredIsNotStable) {
  const std::vector<WindowFigures> w = {{0, 0}, {0, 0}, {0, 0}};
  EXPECT_FALSE(windows_stable(w, 10));
}

TEST(ArrivalSchedule, ConstantIsEvenlySpaced) {
  ArrivalSchedule s(Distribution::kConstant, 1000, 1);
  EXPECT_EQ(s.next_ns(), 1'000'000);
  EXPECT_EQ(s.next_ns(), 2'000'000);
  for (int i = 3; i <= 1000; ++i) s.next_ns();
  EXPECT_EQ(s.next_ns(), 1'001'000'000);
}

TEST(ArrivalSchedule, PoissonIsSeededAndDeterministic) {
  ArrivalSchedule a(Distribution::kPoisson, 500, 42), b(Distribution::kPoisson, 500, 42),
      c(Distribution::kPoisson, 500, 43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const int64_t x = a.next_ns();
    EXPECT_EQ(x, b.next_ns());
    differs |= x != c.next_ns();
  }
  EXPECT_TRUE(differs);
}

TEST(ArrivalSchedule, PoissonGapsAreExponentialWithTheRate) {
  const double rate = 2000;  // mean gap 0.5 ms
  const int n = 200000;
  ArrivalSchedule s(Distribution::kPoisson, rate, 7);
  std::vector<double> gaps;
  int64_t previous = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t t = s.next_ns();
    gaps.push_back(static_cast<double>(t - previous) * 1e-9);
    previous = t;
  }
  // Mean 1/rate, standard deviation 1/rate (an exponential's), within a few standard errors.
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / n;
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  const double sd = std::sqrt(var / n);
  EXPECT_NEAR(mean * rate, 1.0, 4.0 / std::sqrt(n));
  EXPECT_NEAR(sd * rate, 1.0, 0.02);
  // The distribution function: P(gap <= x) = 1 - exp(-rate x) at a few quantiles (a coarse
  // Kolmogorov-Smirnov check: the largest deviation stays below 1.63 / sqrt(n), the 1% level).
  std::sort(gaps.begin(), gaps.end());
  double worst = 0;
  for (int i = 0; i < n; i += 97) {
    const double expected = 1 - std::exp(-rate * gaps[i]);
    worst = std::max(worst, std::abs(expected - static_cast<double>(i + 1) / n));
  }
  EXPECT_LT(worst, 1.63 / std::sqrt(n));
  // Memorylessness in counts: the number of arrivals per 10 ms bin has variance equal to its mean.
  ArrivalSchedule t(Distribution::kPoisson, rate, 9);
  std::vector<int> bins(2000, 0);
  for (int64_t x = t.next_ns(); x < 20'000'000'000; x = t.next_ns()) ++bins[x / 10'000'000];
  const double bin_mean = std::accumulate(bins.begin(), bins.end(), 0.0) / bins.size();
  double bin_var = 0;
  for (int b : bins) bin_var += (b - bin_mean) * (b - bin_mean);
  bin_var /= bins.size();
  EXPECT_NEAR(bin_mean, 20, 0.5);
  EXPECT_NEAR(bin_var / bin_mean, 1.0, 0.1);
}

TEST(OpenLoopLatency, CountsFromTheScheduledTime) {
  // A request scheduled at 10 ms that a busy worker only sent at 60 ms and that was answered at
  // 65 ms waited 55 ms from the user's point of view, not 5 ms.
  EXPECT_EQ(open_loop_latency_ns(10'000'000, 65'000'000), 55'000'000);
}

}  // namespace
}  // namespace kestrel::bench
