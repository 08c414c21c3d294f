// The load generator against an in-process fake client: counting, errors, stability, and
// open-loop latency that includes the time requests waited behind a stall.
#include "kestrel/bench/load.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace kestrel::bench {
namespace {

// Answers after `service` (one request at a time per connection); every `fail_every`-th request
// fails; one request, the `stall_at`-th, takes `stall` instead.
struct FakeServer {
  std::chrono::microseconds service{1000};
  // Connections answer start() on a thread of their own, as gRPC's do.
  bool asynchronous = false;
  int fail_every = 0;
  int stall_at = -1;
  std::chrono::milliseconds stall{0};
  std::atomic<int> calls{0};
};

class FakeConnection : public Connection {
 public:
  explicit FakeConnection(FakeServer& server) : server_(server) {
    if (server_.asynchronous) transport_ = std::thread([this] { answer(); });
  }
  ~FakeConnection() override {
    if (!transport_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_one();
    transport_.join();
  }

  bool asynchronous() const override { return server_.asynchronous; }
  void start(size_t index, CallDone done) override {
    if (!server_.asynchronous) return done(call(index));
    std::lock_guard lock(mu_);
    EXPECT_FALSE(pending_) << "two calls in flight on one connection";
    pending_ = std::move(done);
    cv_.notify_one();
  }

  CallResult call(size_t) override {
    const int n = server_.calls.fetch_add(1);
    std::this_thread::sleep_for(n == server_.stall_at ? std::chrono::microseconds(server_.stall)
                                                      : server_.service);
    CallResult r;
    if (server_.fail_every > 0 && n % server_.fail_every == server_.fail_every - 1) {
      r.status = unavailable("overloaded");
    }
    return r;
  }

 private:
  // The transport's thread: answers each start() after the service time.
  void answer() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return closing_ || pending_; });
      if (!pending_) return;
      CallDone done = std::move(pending_);
      pending_ = nullptr;
      lock.unlock();
      done(call(0));  // may start the next call, from here
      lock.lock();
    }
  }

  FakeServer& server_;
  std::thread transport_;
  std::mutex mu_;
  std::condition_variable cv_;
  CallDone pending_;
  bool closing_ = false;
};

class FakeClient : public Client {
 public:
  explicit FakeClient(FakeServer& server) : server_(server) {}
  Status server_ready() override { return Status(); }
  StatusOr<ModelMetadata> model_metadata() override { return ModelMetadata{}; }
  StatusOr<ServerStats> model_stats() override {
    // Every request so far spent 1 ms queued and 2 ms computing.
    ServerStats s;
    s.success_count = s.queue_count = s.compute_infer_count = server_.calls;
    s.queue_ns = 1'000'000LL * server_.calls;
    s.compute_infer_ns = 2'000'000LL * server_.calls;
    return s;
  }
  Status prepare(std::span<const Sample>) override { return Status(); }
  StatusOr<std::unique_ptr<Connection>> connect() override {
    return std::unique_ptr<Connection>(new FakeConnection(server_));
  }

 private:
  FakeServer& server_;
};

// Every test runs over a blocking transport (a thread per slot) and an asynchronous one (closed
// loop: each slot's requests chained from the answers' callbacks; open loop: a few threads send).
class RunPoint : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Transports, RunPoint, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Asynchronous" : "Threads"; });

TEST_P(RunPoint, ClosedLoopThroughputFollowsConcurrency) {
  FakeServer server;
  server.asynchronous = GetParam();
  server.service = std::chrono::microseconds(2000);
  FakeClient client(server);
  LoadOptions o;
  o.measurement_interval_ms = 200;
  o.stability_percent = 50;
  o.max_trials = 5;
  o.batch_size = 2;
  StatusOr<PointResult> r = run_point(client, LoadMode::kConcurrency, 4, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->stable);
  EXPECT_GE(r->windows.size(), 3u);
  // 4 workers, 2 ms each, 2 inferences per request: at most 4000 inferences/s (sleep overshoot
  // makes it less).
  EXPECT_GT(r->summary.throughput, 1500);
  EXPECT_LT(r->summary.throughput, 4100);
  EXPECT_GE(r->summary.latency.p50_ns, 2'000'000);
  EXPECT_EQ(r->summary.errors, 0);
  ASSERT_TRUE(r->summary.server.has_value());
  EXPECT_GT(r->summary.server->success_count, 0);
}

TEST_P(RunPoint, ErrorsAreCountedWithTheirMessage) {
  FakeServer server;
  server.asynchronous = GetParam();
  server.fail_every = 4;
  FakeClient client(server);
  LoadOptions o;
  o.measurement_interval_ms = 100;
  o.max_trials = 3;
  StatusOr<PointResult> r = run_point(client, LoadMode::kConcurrency, 2, o);
  ASSERT_TRUE(r.ok()) << r.status();
  const Measurement& m = r->summary;
  ASSERT_GT(m.errors, 0);
  EXPECT_EQ(m.error_counts.at("UNAVAILABLE: overloaded"), m.errors);
  // One in four fails (give or take the window edges).
  EXPECT_NEAR(static_cast<double>(m.errors) / (m.errors + m.requests), 0.25, 0.05);
}

TEST_P(RunPoint, UnstableLoadStopsAtMaxTrials) {
  FakeServer server;
  server.asynchronous = GetParam();
  FakeClient client(server);
  LoadOptions o;
  o.measurement_interval_ms = 50;
  o.stability_percent = 0;  // nothing is ever that stable
  o.max_trials = 4;
  StatusOr<PointResult> r = run_point(client, LoadMode::kConcurrency, 1, o);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->stable);
  EXPECT_EQ(r->windows.size(), 4u);
}

TEST_P(RunPoint, OpenLoopRateIsKept) {
  FakeServer server;
  server.asynchronous = GetParam();
  FakeClient client(server);
  LoadOptions o;
  o.measurement_interval_ms = 300;
  o.stability_percent = 30;
  o.max_trials = 6;
  o.distribution = Distribution::kConstant;
  o.max_threads = 4;
  StatusOr<PointResult> r = run_point(client, LoadMode::kRequestRate, 200, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->summary.throughput, 200, 20);
  EXPECT_LT(r->summary.latency.p50_ns, 20'000'000);
}

TEST_P(RunPoint, OpenLoopLatencyIsFreeOfCoordinatedOmission) {
  // One worker, 100 requests/s, 1 ms service time, and one request stalled for 300 ms. A
  // closed-loop view would see one slow request; the requests scheduled during the stall waited
  // too, so about 30 requests (10% of three windows at least) have latencies above 100 ms.
  FakeServer server;
  server.stall_at = 30;  // after the 300 ms warm-up, inside the first window
  server.stall = std::chrono::milliseconds(300);
  server.asynchronous = GetParam();
  FakeClient client(server);
  LoadOptions o;
  o.measurement_interval_ms = 300;
  o.stability_percent = 100;
  o.max_trials = 3;
  o.distribution = Distribution::kConstant;
  o.max_threads = 1;
  StatusOr<PointResult> r = run_point(client, LoadMode::kRequestRate, 100, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->summary.latency.max_ns, 290'000'000);
  EXPECT_GE(r->summary.latency.p90_ns, 100'000'000);
  EXPECT_GT(r->summary.delayed, 20);
}

}  // namespace
}  // namespace kestrel::bench
