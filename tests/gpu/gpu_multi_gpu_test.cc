// A served model whose instance group lists two GPUs (`gpus: [0, 1]`): one instance and one engine
// on each, loaded and warmed up at once; under concurrent requests every answer equals the
// one-GPU model's, also for inputs that arrive in GPU 0's memory and run on GPU 1. Skips on a
// machine with fewer than two GPUs (the lent nvidia-h200-x2 has two).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <vector>

#include "kestrel/engine/backends.h"
#include "kestrel/serve/core/model_config.h"
#include "kestrel/serve/core/served_model.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

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

// The same contents in GPU 0's memory (freed with the tensor).
Tensor on_gpu0(const Tensor& host) {
  void* p = nullptr;
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
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

TEST(GpuMultiGpuTest, InstancesOnTwoGpusAnswerAsOneGpu) {
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
  int gpus = 0;
  ASSERT_EQ(cudaGetDeviceCount(&gpus), cudaSuccess);
  if (gpus < 2) GTEST_SKIP() << "needs two GPUs (" << gpus << " here): run on nvidia-h200-x2";
  const fs::path model = shared_dir() / "models" / "yolov5n.onnx";
  if (!fs::exists(model)) GTEST_SKIP() << "needs ../shared (set KESTREL_SHARED)";
  serve::LoadOptions options;
  options.backend = "cuda";

  inference::ModelConfig one_gpu = serve::default_model_config("yolov5n", 4);
  auto reference = serve::ServedModel::load(one_gpu, 1, model.string(), options);
  ASSERT_TRUE(reference.ok()) << reference.status();

  inference::ModelConfig config = serve::default_model_config("yolov5n", 4);
  config.mutable_dynamic_batching()->set_max_queue_delay_microseconds(2000);
  config.clear_instance_group();
  auto* group = config.add_instance_group();
  group->set_count(1);
  group->set_kind(inference::ModelInstanceGroup::KIND_GPU);
  group->add_gpus(0);
  group->add_gpus(1);
  auto two = serve::ServedModel::load(config, 1, model.string(), options);
  ASSERT_TRUE(two.ok()) << two.status();
  const auto& placed = (*two)->instances();
  ASSERT_EQ(placed.size(), 2u);
  EXPECT_EQ(placed[0].device_index, 0);
  EXPECT_EQ(placed[1].device_index, 1);

  const std::string input_name = (*two)->config().input(0).name();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<Tensor> images, expected;
  for (int k = 0; k < 6; ++k) {
    std::vector<float> v(3 * 640 * 640);
    for (float& x : v) x = uniform(rng);
    images.push_back(Tensor::from_vector<float>(Shape{1, 3, 640, 640}, v));
    serve::InferRequest r;
    r.inputs.push_back({input_name, images.back()});
    StatusOr<serve::InferResponse> answer = infer(**reference, std::move(r));
    ASSERT_TRUE(answer.ok()) << answer.status();
    expected.push_back(answer->outputs[0].tensor);
  }
  // Four rounds of all six at once, in host memory and in GPU 0's: the batcher hands the batches
  // to whichever instance is idle, so both GPUs run some, and GPU 1 reads GPU 0's memory.
  for (bool in_gpu_memory : {false, true}) {
    for (int round = 0; round < 4; ++round) {
      std::vector<std::future<StatusOr<serve::InferResponse>>> futures;
      for (const Tensor& image : images) {
        Tensor input = in_gpu_memory ? on_gpu0(image) : image;
        futures.push_back(std::async(std::launch::async, [&, input] {
          serve::InferRequest r;
          r.inputs.push_back({input_name, input});
          return infer(**two, std::move(r));
        }));
      }
      for (size_t k = 0; k < futures.size(); ++k) {
        StatusOr<serve::InferResponse> r = futures[k].get();
        ASSERT_TRUE(r.ok()) << r.status();
        const Tensor& got = r->outputs[0].tensor;
        ASSERT_EQ(got.shape(), expected[k].shape());
        EXPECT_LT(relative_l2(got, expected[k]), 1e-4)
            << "image " << k << (in_gpu_memory ? " from GPU 0's memory" : "");
      }
    }
  }
}

}  // namespace
}  // namespace kestrel
