// Cold-start measurement of a server process (see cold_start.h).
#include "kestrel/bench/cold_start.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace kestrel::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Parent pid of every process, from /proc/<pid>/stat ("pid (comm) state ppid ...").
std::map<pid_t, pid_t> parents() {
  std::map<pid_t, pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "stat");
    std::string stat;
    std::getline(f, stat);
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid = 0;
    if (rest >> state >> ppid) out[std::stoi(name)] = ppid;
  }
  return out;
}

std::vector<pid_t> process_tree(pid_t root) {
  const std::map<pid_t, pid_t> parent = parents();
  std::vector<pid_t> tree = {root};
  // Parents precede children in no particular order: repeat until nothing is added.
  for (bool added = true; added;) {
    added = false;
    for (const auto& [pid, ppid] : parent) {
      if (std::find(tree.begin(), tree.end(), pid) == tree.end() &&
          std::find(tree.begin(), tree.end(), ppid) != tree.end()) {
        tree.push_back(pid);
        added = true;
      }
    }
  }
  return tree;
}

int64_t vm_hwm_bytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "... kB"
  }
  return 0;
}

// GPU memory of the given processes from nvidia-smi; -1 when there is no nvidia-smi.
int64_t gpu_bytes(const std::vector<pid_t>& pids) {
  FILE* p = popen(
      "nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits "
      "2>/dev/null",
      "r");
  if (!p) return -1;
  int64_t total = 0;
  char line[256];
  while (std::fgets(line, sizeof line, p)) {
    long pid = 0, mib = 0;
    if (std::sscanf(line, "%ld, %ld", &pid, &mib) == 2 &&
        std::find(pids.begin(), pids.end(), static_cast<pid_t>(pid)) != pids.end()) {
      total += int64_t{mib} << 20;
    }
  }
  const int rc = pclose(p);
  return rc == 0 ? total : -1;
}

bool has_nvidia_smi() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (access((dir + "/nvidia-smi").c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace

int64_t process_tree_peak_rss(pid_t pid) {
  int64_t total = 0;
  for (pid_t p : process_tree(pid)) total += vm_hwm_bytes(p);
  return total;
}

namespace {

// The process group of the server being measured, for the signal handler: a bench that is
// interrupted or killed with SIGTERM stops its server first instead of leaving it running.
std::atomic<pid_t> g_server_group{0};

void stop_server_and_die(int sig) {
  const pid_t group = g_server_group.load();
  if (group > 0) kill(-group, SIGTERM);
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

ServerProcess::ServerProcess(pid_t pid, Clock::time_point started) : pid_(pid), started_(started) {
  sampler_ = std::thread([this] { sample_loop(); });
}

StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::start(
    const std::vector<std::string>& command) {
  if (command.empty()) return invalid_argument("--cold-start needs a server command after '--'");
  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto started = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) return unavailable("fork failed");
  if (pid == 0) {
    // Its own process group, so that stopping it reaches the processes it starts.
    setpgid(0, 0);
    execvp(argv[0], argv.data());
    std::perror(argv[0]);
    _exit(127);
  }
  setpgid(pid, pid);
  g_server_group = pid;
  struct sigaction action {};
  action.sa_handler = stop_server_and_die;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
  return std::unique_ptr<ServerProcess>(new ServerProcess(pid, started));
}

ServerProcess::~ServerProcess() { stop(); }

bool ServerProcess::running() {
  if (reaped_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) reaped_ = true;
  return !reaped_;
}

std::optional<int64_t> ServerProcess::peak_gpu_bytes() const {
  const int64_t v = peak_gpu_;
  return v < 0 ? std::nullopt : std::optional(v);
}

void ServerProcess::sample_loop() {
  const bool gpu = has_nvidia_smi();
  int tick = 0;
  while (!stopping_) {
    const std::vector<pid_t> tree = process_tree(pid_);
    int64_t rss = 0;
    for (pid_t p : tree) rss += vm_hwm_bytes(p);
    if (rss > peak_rss_) peak_rss_ = rss;
    // nvidia-smi takes tens of milliseconds: every 10th tick.
    if (gpu && tick++ % 10 == 0) {
      const int64_t g = gpu_bytes(tree);
      if (g > peak_gpu_) peak_gpu_ = g;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void ServerProcess::stop(int grace_ms) {
  if (g_server_group == pid_) g_server_group = 0;
  if (!reaped_) {
    kill(-pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::milliseconds(grace_ms);
    while (running() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (running()) {
      kill(-pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      reaped_ = true;
    }
  }
  stopping_ = true;
  if (sampler_.joinable()) sampler_.join();
}

StatusOr<ColdStartResult> measure_cold_start(ServerProcess& server, Client& client,
                                             const std::function<Status()>& first_answer,
                                             double timeout_s) {
  const auto start = server.started();
  const auto deadline = start + std::chrono::duration<double>(timeout_s);
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  ColdStartResult r;
  Status last;
  while (!(last = client.server_ready()).ok()) {
    if (!server.running()) return unavailable("the server exited before it was ready");
    if (Clock::now() > deadline) {
      return deadline_exceeded("server not ready after {} s: {}", timeout_s, last.to_string());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.ready_s = seconds();
  while (!(last = first_answer()).ok()) {
    // A request the server refuses will not become acceptable by waiting.
    const StatusCode code = last.code();
    if (code == StatusCode::kInvalidArgument || code == StatusCode::kUnimplemented ||
        code == StatusCode::kFailedPrecondition || code == StatusCode::kUnauthenticated ||
        code == StatusCode::kPermissionDenied) {
      return last.with_context("first request");
    }
    if (!server.running()) return unavailable("the server exited before it answered");
    if (Clock::now() > deadline) {
      return deadline_exceeded("no successful answer after {} s: {}", timeout_s, last.to_string());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.first_answer_s = seconds();
  // One more sample of the memory after the first answer, which is when engines are built.
  r.peak_rss_bytes = std::max(server.peak_rss_bytes(), process_tree_peak_rss(server.pid()));
  r.peak_gpu_bytes = server.peak_gpu_bytes();
  return r;
}

}  // namespace kestrel::bench
