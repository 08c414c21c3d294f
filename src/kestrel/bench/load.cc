// The load generator (see load.h).
#include "kestrel/bench/load.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace kestrel::bench {
namespace {

using Clock = std::chrono::steady_clock;

// One finished request, in ns since the point's start.
struct Record {
  int64_t start_ns = 0;  // the scheduled send time (open loop) or the actual one (closed loop)
  int64_t end_ns = 0;
  int64_t send_ns = 0, recv_ns = 0;
  bool late = false;
  Status status;
};

// Records of one worker, handed over to the coordinator under a lock held only for a swap.
struct WorkerLog {
  std::mutex mu;
  std::vector<Record> records;
};

class PointRun {
 public:
  PointRun(Client& client, LoadMode mode, double level, const LoadOptions& options)
      : client_(client),
        mode_(mode),
        level_(level),
        options_(options),
        schedule_(options.distribution, mode == LoadMode::kRequestRate ? level : 1.0,
                  options.seed) {}

  StatusOr<PointResult> run(const ProgressCallback& progress) {
    const int workers = mode_ == LoadMode::kConcurrency ? static_cast<int>(level_)
                                                        : std::max(1, options_.max_threads);
    std::vector<std::unique_ptr<Connection>> connections;
    for (int i = 0; i < workers; ++i) {
      KS_ASSIGN_OR_RETURN(std::unique_ptr<Connection> c, client_.connect());
      connections.push_back(std::move(c));
    }
    logs_ = std::vector<WorkerLog>(workers);
    start_ = Clock::now();
    std::vector<std::thread> threads;
    // Over an asynchronous transport no thread waits for an answer. Closed loop: each slot's
    // next request leaves from the previous one's answer, on the transport's threads. Open loop:
    // one thread sends each request at its scheduled time on a free connection.
    const bool asynchronous = connections[0]->asynchronous();
    if (asynchronous) {
      slots_ = std::vector<Slot>(workers);
      for (int i = 0; i < workers; ++i) slots_[i].connection = connections[i].get();
    }
    if (asynchronous && mode_ == LoadMode::kConcurrency) {
      in_flight_ = workers;
      // From a thread of its own: a transport that fails a call at once (a server that went
      // away) may answer on the thread that started it, which then carries that slot's chain
      // until stop_.
      threads.emplace_back([this, workers] {
        for (int i = 0; i < workers; ++i) send(i);
      });
    } else if (asynchronous) {
      for (int i = workers - 1; i >= 0; --i) free_.push_back(i);
      for (int i = 0; i < dispatchers(workers); ++i) threads.emplace_back([this] { dispatch(); });
    } else {
      for (int i = 0; i < workers; ++i) {
        threads.emplace_back([this, i, c = connections[i].get()] { work(i, *c); });
      }
    }
    PointResult result = measure(progress);
    {
      std::lock_guard lock(in_flight_mu_);  // the dispatcher may be waiting for a connection
      stop_ = true;
    }
    in_flight_cv_.notify_all();
    for (std::thread& t : threads) t.join();
    {
      std::unique_lock lock(in_flight_mu_);
      in_flight_cv_.wait(lock, [this] { return in_flight_ == 0; });
    }
    std::lock_guard lock(answers_mu_);
    result.answers = std::move(answers_);
    return result;
  }

 private:
  int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count();
  }

  // Chained closed loop: slot `slot` sends its next request.
  void send(int slot) {
    Slot& s = slots_[slot];
    s.sample = next_sample_.fetch_add(1);
    s.start_ns = now_ns();
    s.connection->start(s.sample, [this, slot](CallResult c) { answered(slot, std::move(c)); });
  }

  void answered(int slot, CallResult c) {
    const Slot& s = slots_[slot];
    Record r;
    r.start_ns = s.start_ns;
    r.end_ns = now_ns();
    file(slot, s.sample, std::move(r), std::move(c));
    if (!stop_) return send(slot);
    std::lock_guard lock(in_flight_mu_);
    if (--in_flight_ == 0) in_flight_cv_.notify_all();
  }

  // Open loop over an asynchronous transport: the threads that send, in turns. The send is
  // gRPC's work on the calling thread, and one thread sent 39,000 of 50,000 requests/s asked on
  // the H100 machine; a quarter of the cores, at most 8 and no more than the connections.
  static int dispatchers(int connections) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return std::clamp(cores / 4, 1, std::min(8, connections));
  }

  // One dispatcher: takes the next scheduled request, sends it at its time on a free connection
  // (waiting for one when every connection has a request in flight: the request is then late,
  // and its latency still counts from the scheduled time).
  void dispatch() {
    while (!stop_) {
      int64_t at = 0;
      size_t sample = 0;
      {
        std::lock_guard lock(schedule_mu_);
        at = schedule_.next_ns();
        sample = next_sample_++;
      }
      // Sleep while the time is far, then yield: a sleep overshoots by tens of microseconds,
      // more than the gap between requests at tens of thousands per second.
      while (!stop_) {
        const int64_t left = at - now_ns();
        if (left <= 0) break;
        if (left > 200'000) {
          std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<int64_t>(
              left - 100'000, 50'000'000)));  // short steps: stopping stays prompt
        } else {
          std::this_thread::yield();
        }
      }
      int slot = 0;
      {
        std::unique_lock lock(in_flight_mu_);
        in_flight_cv_.wait(lock, [this] { return stop_ || !free_.empty(); });
        if (stop_) return;
        slot = free_.back();
        free_.pop_back();
        ++in_flight_;
      }
      Slot& s = slots_[slot];
      s.sample = sample;
      s.start_ns = at;
      s.late = now_ns() - at > 1'000'000;
      s.connection->start(sample, [this, slot](CallResult c) { returned(slot, std::move(c)); });
    }
  }

  void returned(int slot, CallResult c) {
    const Slot& s = slots_[slot];
    Record r;
    r.start_ns = s.start_ns;
    r.end_ns = now_ns();
    r.late = s.late;
    file(slot, s.sample, std::move(r), std::move(c));
    {
      std::lock_guard lock(in_flight_mu_);
      free_.push_back(slot);
      --in_flight_;
    }
    in_flight_cv_.notify_all();
  }

  // Files the result `c` of sample `sample` (`r` has its start and end) in log `log`.
  void file(int log, size_t sample, Record r, CallResult c) {
    r.send_ns = c.send_ns;
    r.recv_ns = c.recv_ns;
    r.status = std::move(c.status);
    if (options_.keep_answers && r.status.ok()) {
      std::lock_guard lock(answers_mu_);
      answers_.try_emplace(sample, std::move(c.body));
    }
    std::lock_guard lock(logs_[log].mu);
    logs_[log].records.push_back(std::move(r));
  }

  void work(int worker, Connection& connection) {
    while (!stop_) {
      Record r;
      size_t sample = 0;
      if (mode_ == LoadMode::kRequestRate) {
        {
          std::lock_guard lock(schedule_mu_);
          r.start_ns = schedule_.next_ns();
          sample = next_sample_++;
        }
        // Sleep in short steps so that stopping is prompt at low rates.
        while (!stop_ && now_ns() < r.start_ns) {
          const int64_t wait = std::min<int64_t>(r.start_ns - now_ns(), 50'000'000);
          std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
        }
        if (stop_) break;
        r.late = now_ns() - r.start_ns > 1'000'000;
      } else {
        sample = next_sample_.fetch_add(1);
        r.start_ns = now_ns();
      }
      CallResult c = connection.call(sample);
      r.end_ns = now_ns();
      file(worker, sample, std::move(r), std::move(c));
    }
  }

  // Moves every finished record out of the workers' logs.
  void drain(std::vector<Record>& out) {
    for (WorkerLog& log : logs_) {
      std::vector<Record> taken;
      {
        std::lock_guard lock(log.mu);
        taken.swap(log.records);
      }
      std::move(taken.begin(), taken.end(), std::back_inserter(out));
    }
  }

  // Sleeps until `end_ns`, reporting progress; returns the records so far.
  void wait_window(int64_t begin_ns, int64_t end_ns, int trial, const ProgressCallback& progress,
                   const std::optional<WindowFigures>& last, std::vector<Record>& pending) {
    while (true) {
      const int64_t now = now_ns();
      if (now >= end_ns) break;
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<int64_t>(end_ns - now, 2e8)));
      if (progress) {
        drain(pending);
        Progress p;
        p.mode = mode_;
        p.level = level_;
        p.trial = trial;
        p.max_trials = options_.max_trials;
        p.window_fraction = std::min(
            1.0, static_cast<double>(now_ns() - begin_ns) / static_cast<double>(end_ns - begin_ns));
        for (const Record& r : pending) {
          if (r.end_ns < begin_ns) continue;
          (r.status.ok() ? p.requests : p.errors) += 1;
        }
        p.last = last;
        progress(p);
      }
    }
  }

  std::optional<ServerStats> read_stats() {
    if (!options_.server_stats || stats_failed_) return std::nullopt;
    StatusOr<ServerStats> s = client_.model_stats();
    if (!s.ok()) {
      stats_failed_ = true;  // a server without statistics: no breakdown, not an error
      return std::nullopt;
    }
    return *s;
  }

  PointResult measure(const ProgressCallback& progress) {
    PointResult result;
    result.mode = mode_;
    result.level = level_;
    const int64_t interval_ns = options_.measurement_interval_ms * 1'000'000;
    std::vector<Record> pending;
    std::vector<WindowFigures> figures;
    // Warm-up: one window whose requests are dropped.
    wait_window(0, interval_ns, 0, progress, std::nullopt, pending);
    int64_t window_begin = interval_ns;
    std::optional<ServerStats> stats_before = read_stats();
    for (int trial = 1; trial <= std::max(1, options_.max_trials); ++trial) {
      const int64_t window_end = window_begin + interval_ns;
      wait_window(window_begin, window_end, trial, progress,
                  figures.empty() ? std::nullopt : std::optional(figures.back()), pending);
      const int64_t measured_end = now_ns();
      std::optional<ServerStats> stats_after = read_stats();
      drain(pending);
      Measurement m;
      m.duration_s = static_cast<double>(measured_end - window_begin) * 1e-9;
      std::vector<Record> later;
      double send_ns = 0, recv_ns = 0;
      for (Record& r : pending) {
        if (r.end_ns < window_begin) continue;
        if (r.end_ns >= measured_end) {
          later.push_back(std::move(r));
          continue;
        }
        if (r.late) ++m.delayed;
        if (r.status.ok()) {
          ++m.requests;
          m.latencies_ns.push_back(open_loop_latency_ns(r.start_ns, r.end_ns));
          send_ns += static_cast<double>(r.send_ns);
          recv_ns += static_cast<double>(r.recv_ns);
        } else {
          ++m.errors;
          ++m.error_counts[r.status.to_string()];
        }
      }
      pending = std::move(later);
      if (m.requests > 0) {
        m.client_send_us = send_ns / static_cast<double>(m.requests) / 1e3;
        m.client_recv_us = recv_ns / static_cast<double>(m.requests) / 1e3;
      }
      m.throughput = static_cast<double>(m.requests * options_.batch_size) / m.duration_s;
      std::vector<int64_t> sorted = m.latencies_ns;
      m.latency = summarize_latencies(sorted, options_.percentile < 0 ? 99 : options_.percentile);
      if (stats_before && stats_after) m.server = stats_delta(*stats_before, *stats_after);
      stats_before = stats_after;
      figures.push_back({m.throughput, options_.percentile < 0
                                           ? m.latency.mean_ns
                                           : static_cast<double>(m.latency.custom_ns)});
      result.windows.push_back(std::move(m));
      window_begin = measured_end;
      if (windows_stable(figures, options_.stability_percent)) {
        result.stable = true;
        break;
      }
    }
    const size_t n = std::min<size_t>(3, result.windows.size());
    result.summary = merge_measurements(std::span(result.windows).last(n), options_.percentile,
                                        options_.batch_size);
    for (Measurement& w : result.windows) w.latencies_ns.clear();
    result.summary.latencies_ns.clear();
    return result;
  }

  Client& client_;
  const LoadMode mode_;
  const double level_;
  const LoadOptions& options_;
  Clock::time_point start_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> next_sample_{0};
  std::mutex schedule_mu_;
  ArrivalSchedule schedule_;
  std::vector<WorkerLog> logs_;
  // Over an asynchronous transport: a slot per connection with its request in flight, the free
  // ones (open loop), and how many requests are in flight.
  struct Slot {
    Connection* connection = nullptr;
    size_t sample = 0;
    int64_t start_ns = 0;
    bool late = false;
  };
  std::vector<Slot> slots_;
  std::mutex in_flight_mu_;
  std::condition_variable in_flight_cv_;
  std::vector<int> free_;
  int in_flight_ = 0;
  bool stats_failed_ = false;
  std::mutex answers_mu_;
  std::map<size_t, std::string> answers_;
};

}  // namespace

Measurement merge_measurements(std::span<const Measurement> windows, double percentile,
                               int64_t batch_size) {
  Measurement m;
  double send = 0, recv = 0;
  bool all_server = !windows.empty();
  ServerStats server;
  for (const Measurement& w : windows) {
    m.duration_s += w.duration_s;
    m.requests += w.requests;
    m.errors += w.errors;
    m.delayed += w.delayed;
    for (const auto& [message, count] : w.error_counts) m.error_counts[message] += count;
    send += w.client_send_us * static_cast<double>(w.requests);
    recv += w.client_recv_us * static_cast<double>(w.requests);
    m.latencies_ns.insert(m.latencies_ns.end(), w.latencies_ns.begin(), w.latencies_ns.end());
    if (!w.server) {
      all_server = false;
    } else {
      const ServerStats& s = *w.server;
      server.success_count += s.success_count;
      server.success_ns += s.success_ns;
      server.fail_count += s.fail_count;
      server.fail_ns += s.fail_ns;
      server.queue_count += s.queue_count;
      server.queue_ns += s.queue_ns;
      server.compute_input_count += s.compute_input_count;
      server.compute_input_ns += s.compute_input_ns;
      server.compute_infer_count += s.compute_infer_count;
      server.compute_infer_ns += s.compute_infer_ns;
      server.compute_output_count += s.compute_output_count;
      server.compute_output_ns += s.compute_output_ns;
      server.inference_count += s.inference_count;
      server.execution_count += s.execution_count;
    }
  }
  if (m.requests > 0) {
    m.client_send_us = send / static_cast<double>(m.requests);
    m.client_recv_us = recv / static_cast<double>(m.requests);
  }
  if (m.duration_s > 0) {
    m.throughput = static_cast<double>(m.requests * batch_size) / m.duration_s;
  }
  std::vector<int64_t> sorted = m.latencies_ns;
  m.latency = summarize_latencies(sorted, percentile < 0 ? 99 : percentile);
  if (all_server) m.server = server;
  return m;
}

StatusOr<PointResult> run_point(Client& client, LoadMode mode, double level,
                                const LoadOptions& options, const ProgressCallback& progress) {
  if (mode == LoadMode::kConcurrency && level < 1) {
    return invalid_argument("concurrency must be at least 1, not {}", level);
  }
  if (mode == LoadMode::kRequestRate && !(level > 0)) {
    return invalid_argument("request rate must be positive, not {}", level);
  }
  if (options.measurement_interval_ms <= 0) {
    return invalid_argument("measurement interval must be positive");
  }
  PointRun run(client, mode, level, options);
  return run.run(progress);
}

}  // namespace kestrel::bench
