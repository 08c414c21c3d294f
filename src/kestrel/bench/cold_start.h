// --cold-start: starts a server process and times it from process start to ready
// (/v2/health/ready or ServerReady) to its first successful answer, while sampling the peak host
// memory of its process tree (VmHWM from /proc) and, where nvidia-smi exists, its GPU memory.
//
// The server keeps running after measure_cold_start() returns, so that the load can be measured
// on it; ServerProcess's destructor stops it (SIGTERM, then SIGKILL after 10 s).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/bench/client.h"
#include "kestrel/bench/report.h"

namespace kestrel::bench {

// A child process and a thread that samples its memory until it is stopped.
class ServerProcess {
 public:
  // Starts `command` (argv[0] looked up in PATH) in its own process group. UNAVAILABLE when it
  // cannot be started. From then on SIGINT, SIGTERM and SIGHUP stop the server before they end
  // the bench, so an interrupted bench leaves no server behind.
  static StatusOr<std::unique_ptr<ServerProcess>> start(const std::vector<std::string>& command);
  ~ServerProcess();

  pid_t pid() const { return pid_; }
  // When fork() was called: the start of the cold start.
  std::chrono::steady_clock::time_point started() const { return started_; }
  // False once the child exited (it is reaped then).
  bool running();
  // The peaks seen so far.
  int64_t peak_rss_bytes() const { return peak_rss_; }
  std::optional<int64_t> peak_gpu_bytes() const;
  // Stops the child (SIGTERM, SIGKILL after `grace_ms`) and the sampler.
  void stop(int grace_ms = 10000);

 private:
  ServerProcess(pid_t pid, std::chrono::steady_clock::time_point started);
  void sample_loop();

  pid_t pid_;
  std::chrono::steady_clock::time_point started_;
  bool reaped_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> peak_rss_{0};
  std::atomic<int64_t> peak_gpu_{-1};
  std::thread sampler_;
};

// Waits for `client.server_ready()`, then for `first_answer()` to succeed (both retried every
// 20 ms), at most `timeout_s` from `server`'s start. DEADLINE_EXCEEDED on timeout, UNAVAILABLE
// when the server exits first; an INVALID_ARGUMENT or UNIMPLEMENTED answer is returned at once.
StatusOr<ColdStartResult> measure_cold_start(ServerProcess& server, Client& client,
                                             const std::function<Status()>& first_answer,
                                             double timeout_s);

// The resident-set peak (VmHWM) of `pid` and its descendants, summed, from /proc; 0 if gone.
int64_t process_tree_peak_rss(pid_t pid);

}  // namespace kestrel::bench
