// Inputs that arrive in GPU memory (the server's CUDA shared-memory extension):
//   - the SharedMemoryManager opens GPU memory that another process exported with CUDA IPC, reads
//     the exporter's input from it and writes an output into it that the exporter then sees
//     (the exporter is this binary run with --export-cuda-ipc, see gpu_main.cc);
//   - a served model given inputs in GPU memory, batched on the GPU, answers what it answers for
//     the same inputs in host memory, and a model on the CPU refuses them.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "kestrel/base/base64.h"
#include "kestrel/engine/backends.h"
#include "kestrel/runtime/cuda/cuda_ipc.h"
#include "kestrel/serve/core/model_config.h"
#include "kestrel/serve/core/served_model.h"
#include "kestrel/serve/core/shared_memory.h"

extern char** environ;

namespace kestrel {

constexpr size_t kIpcFloats = 4096;

float ipc_pattern(size_t i) { return std::sin(static_cast<float>(i) * 0.37f) * 100.0f; }

// The exporting process: two blocks of GPU memory, the input filled with ipc_pattern, their
// handles printed in base64 on two lines; after a line on stdin, checks that the output block
// holds twice the input. Returns the exit status.
int export_cuda_ipc() {
  float* in = nullptr;
  float* out = nullptr;
  std::vector<float> host(kIpcFloats);
  for (size_t i = 0; i < kIpcFloats; ++i) host[i] = ipc_pattern(i);
  cudaIpcMemHandle_t hin, hout;
  if (cudaSetDevice(0) != cudaSuccess || cudaMalloc(&in, kIpcFloats * 4) != cudaSuccess ||
      cudaMalloc(&out, kIpcFloats * 4) != cudaSuccess ||
      cudaMemcpy(in, host.data(), kIpcFloats * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemset(out, 0, kIpcFloats * 4) != cudaSuccess ||
      cudaIpcGetMemHandle(&hin, in) != cudaSuccess ||
      cudaIpcGetMemHandle(&hout, out) != cudaSuccess) {
    std::fprintf(stderr, "exporter: CUDA failed: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 2;
  }
  std::printf("%s\n%s\n", base64_encode({reinterpret_cast<const char*>(&hin), sizeof(hin)}).c_str(),
              base64_encode({reinterpret_cast<const char*>(&hout), sizeof(hout)}).c_str());
  std::fflush(stdout);
  char line[64];
  if (!std::fgets(line, sizeof(line), stdin)) return 3;
  std::vector<float> back(kIpcFloats);
  if (cudaMemcpy(back.data(), out, kIpcFloats * 4, cudaMemcpyDeviceToHost) != cudaSuccess) return 4;
  for (size_t i = 0; i < kIpcFloats; ++i)
    if (back[i] != 2 * host[i]) {
      std::fprintf(stderr, "exporter: output %zu is %g, not %g\n", i, back[i], 2 * host[i]);
      return 1;
    }
  return 0;
}

namespace {

namespace fs = std::filesystem;

// The exporter as a child process with pipes to its stdin and from its stdout.
class Exporter {
 public:
  Exporter() {
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from[1], 1);
    posix_spawn_file_actions_addclose(&actions, to[1]);
    posix_spawn_file_actions_addclose(&actions, from[0]);
    std::string self = fs::read_symlink("/proc/self/exe").string();
    char* argv[] = {self.data(), const_cast<char*>("--export-cuda-ipc"), nullptr};
    if (posix_spawn(&pid_, self.c_str(), &actions, nullptr, argv, environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(to[0]);
    close(from[1]);
    in_ = fdopen(to[1], "w");
    out_ = fdopen(from[0], "r");
  }
  ~Exporter() {
    if (in_) std::fclose(in_);
    if (out_) std::fclose(out_);
    if (pid_ > 0 && !waited_) waitpid(pid_, nullptr, 0);
  }
  std::string read_line() {
    char buf[256];
    if (!out_ || !std::fgets(buf, sizeof(buf), out_)) return "";
    std::string s(buf);
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  // Tells it to check, and returns its exit status.
  int finish() {
    std::fputs("check\n", in_);
    std::fflush(in_);
    int status = 0;
    waitpid(pid_, &status, 0);
    waited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  bool started() const { return pid_ > 0 && in_ && out_; }

 private:
  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
  bool waited_ = false;
};

TEST(GpuSharedMemoryTest, CudaIpcRegionsReadAndWriteTheExportersMemory) {
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
  Exporter exporter;
  ASSERT_TRUE(exporter.started());
  StatusOr<std::string> hin = base64_decode(exporter.read_line());
  StatusOr<std::string> hout = base64_decode(exporter.read_line());
  ASSERT_TRUE(hin.ok() && hout.ok()) << "the exporter printed no handles";
  constexpr uint64_t kBytes = kIpcFloats * 4;

  serve::SharedMemoryManager shm(true);
  EXPECT_TRUE(shm.cuda_available());
  // A byte_size past the exported allocation is refused before anything reads it.
  Status too_big = shm.register_cuda_region({"big", *hin, 0, uint64_t{1} << 30});
  EXPECT_EQ(too_big.code(), StatusCode::kInvalidArgument) << too_big;
  ASSERT_TRUE(shm.register_cuda_region({"in", *hin, 0, kBytes}).ok());
  ASSERT_TRUE(shm.register_cuda_region({"out", *hout, 0, kBytes}).ok());
  auto regions = shm.cuda_status("");
  ASSERT_TRUE(regions.ok());
  ASSERT_EQ(regions->size(), 2u);
  EXPECT_EQ((*regions)[0].byte_size, kBytes);
  EXPECT_TRUE((*regions)[0].raw_handle.empty());

  // The input is a tensor on the GPU, viewing the exporter's memory (here from float 1024 on).
  const Shape shape{3072};
  StatusOr<Tensor> input = shm.input({"in", 1024 * 4, 3072 * 4}, DType::kFloat32, shape, "x");
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->device(), Device::cuda(0));
  std::vector<float> seen(3072);
  ASSERT_TRUE(runtime::cuda_copy_bytes(seen.data(), input->raw_data(), 3072 * 4).ok());
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], ipc_pattern(1024 + i)) << i;
  EXPECT_EQ(shm.input({"in", kBytes - 8, 16}, DType::kFloat32, Shape{4}, "x").status().code(),
            StatusCode::kInvalidArgument);

  // The output goes into the exporter's memory, which it checks.
  std::vector<float> doubled(kIpcFloats);
  for (size_t i = 0; i < kIpcFloats; ++i) doubled[i] = 2 * ipc_pattern(i);
  Tensor y = Tensor::from_vector<float>(Shape{static_cast<int64_t>(kIpcFloats)}, doubled);
  ASSERT_TRUE(shm.write_output({"out", 0, kBytes}, y, "y").ok());
  EXPECT_EQ(shm.write_output({"out", 4, kBytes}, y, "y").code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(shm.unregister("", serve::SharedMemoryManager::Kind::kCuda).ok());
  *input = Tensor();  // the last view of the region: the handle closes
  EXPECT_EQ(exporter.finish(), 0);
}

fs::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? fs::path(dir) : fs::path("../shared");
}

StatusOr<serve::InferResponse> infer(serve::ServedModel& m, serve::InferRequest r) {
  std::promise<StatusOr<serve::InferResponse>> p;
  auto f = p.get_future();
  m.infer(std::move(r), [&p](StatusOr<serve::InferResponse> res) { p.set_value(std::move(res)); });
  return f.get();
}

// A tensor with the same contents in GPU memory (cudaMalloc'ed, freed with the tensor).
Tensor on_gpu(const Tensor& host) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, host.nbytes()), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, host.raw_data(), host.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  return Tensor::wrap(host.dtype(), host.shape(), std::shared_ptr<void>(p, cudaFree), p,
                      Device::cuda(0));
}

double relative_l2(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    const double d = a.data<float>()[i] - b.data<float>()[i];
    num += d * d;
    den += static_cast<double>(b.data<float>()[i]) * b.data<float>()[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

TEST(GpuSharedMemoryTest, InputsInGpuMemoryGiveTheHostInputsResults) {
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
  const fs::path model = shared_dir() / "models" / "yolov5n.onnx";
  if (!fs::exists(model)) GTEST_SKIP() << "needs ../shared (set KESTREL_SHARED)";
  inference::ModelConfig config = serve::default_model_config("yolov5n", 4);
  config.mutable_dynamic_batching()->set_max_queue_delay_microseconds(300000);
  serve::LoadOptions options;
  options.backend = "cuda";
  auto gpu = serve::ServedModel::load(config, 1, model.string(), options);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::string input_name = (*gpu)->config().input(0).name();

  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<Tensor> images;
  for (int k = 0; k < 3; ++k) {
    std::vector<float> v(3 * 640 * 640);
    for (float& x : v) x = uniform(rng);
    images.push_back(Tensor::from_vector<float>(Shape{1, 3, 640, 640}, v));
  }
  auto request = [&](const Tensor& t) {
    serve::InferRequest r;
    r.inputs.push_back({input_name, t});
    return r;
  };
  std::vector<Tensor> expected;
  for (const Tensor& image : images) {
    StatusOr<serve::InferResponse> r = infer(**gpu, request(image));
    ASSERT_TRUE(r.ok()) << r.status();
    expected.push_back(r->outputs[0].tensor);
  }
  // Three requests at once: batched (the delay is long), gathered on the GPU.
  std::vector<std::future<StatusOr<serve::InferResponse>>> futures;
  for (const Tensor& image : images) {
    Tensor device = on_gpu(image);
    futures.push_back(
        std::async(std::launch::async, [&, device] { return infer(**gpu, request(device)); }));
  }
  for (size_t k = 0; k < futures.size(); ++k) {
    StatusOr<serve::InferResponse> r = futures[k].get();
    ASSERT_TRUE(r.ok()) << r.status();
    const Tensor& got = r->outputs[0].tensor;
    ASSERT_EQ(got.shape(), expected[k].shape());
    EXPECT_LT(relative_l2(got, expected[k]), 1e-4) << "request " << k;
  }
  bool batched = false;
  const inference::ModelStatistics stats = (*gpu)->statistics();
  for (const auto& b : stats.batch_stats()) batched |= b.batch_size() > 1;
  EXPECT_TRUE(batched) << "the requests in GPU memory never ran as one batch";

  // A model on the CPU cannot read GPU memory: a clear refusal.
  options.backend = "cpu";
  auto cpu = serve::ServedModel::load(config, 1, model.string(), options);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  StatusOr<serve::InferResponse> refused = infer(**cpu, request(on_gpu(images[0])));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status();
}

}  // namespace
}  // namespace kestrel
