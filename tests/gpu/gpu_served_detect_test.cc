// The server's detect path on the GPU (serve/core/served_model.h): decoded uint8 images queued
// through the dynamic batcher, letterboxed on the GPU by the image executor, the FP32 engine, NMS;
// its detections must be the CPU backend's (the same model served on the CPU), for images of
// different sizes in one request and for concurrent requests batched together.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "kestrel/base/file.h"
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

std::shared_ptr<serve::ServedModel> load(const std::string& backend) {
  serve::LoadOptions options;
  options.backend = backend;
  StatusOr<std::unique_ptr<serve::ServedModel>> m =
      serve::ServedModel::load(serve::default_model_config("yolov5n", 8), 1,
                               (shared_dir() / "models" / "yolov5n.onnx").string(), options);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::shared_ptr<serve::ServedModel>(std::move(m).value()) : nullptr;
}

std::future<StatusOr<std::vector<serve::DetectResult>>> detect(
    serve::ServedModel& m, const std::vector<std::string_view>& images) {
  auto promise = std::make_shared<std::promise<StatusOr<std::vector<serve::DetectResult>>>>();
  auto future = promise->get_future();
  m.detect(images, m.detection_defaults(), nullptr,
           [promise](StatusOr<std::vector<serve::DetectResult>> r) {
             promise->set_value(std::move(r));
           });
  return future;
}

void expect_same(const std::vector<serve::DetectResult>& gpu,
                 const std::vector<serve::DetectResult>& cpu) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < gpu.size(); ++i) {
    EXPECT_EQ(gpu[i].width, cpu[i].width);
    ASSERT_EQ(gpu[i].detections.size(), cpu[i].detections.size()) << "image " << i;
    for (size_t k = 0; k < gpu[i].detections.size(); ++k) {
      const vision::Detection& a = gpu[i].detections[k];
      const vision::Detection& b = cpu[i].detections[k];
      EXPECT_EQ(a.class_id, b.class_id) << "image " << i << " detection " << k;
      EXPECT_NEAR(a.score, b.score, 1e-3);
      EXPECT_NEAR(a.x1, b.x1, 0.5);
      EXPECT_NEAR(a.y1, b.y1, 0.5);
      EXPECT_NEAR(a.x2, b.x2, 0.5);
      EXPECT_NEAR(a.y2, b.y2, 0.5);
    }
  }
}

TEST(GpuServedDetectTest, TheGpuPathDetectsWhatTheCpuPathDoes) {
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
  if (!fs::exists(shared_dir() / "images" / "bus.jpg")) {
    GTEST_SKIP() << "needs ../shared (set KESTREL_SHARED)";
  }
  const std::string bus = read_file((shared_dir() / "images/bus.jpg").string()).value();
  const std::string zidane = read_file((shared_dir() / "images/zidane.jpg").string()).value();
  std::shared_ptr<serve::ServedModel> gpu = load("cuda");
  std::shared_ptr<serve::ServedModel> cpu = load("cpu");
  ASSERT_TRUE(gpu && cpu);

  // Two images of different sizes in one request.
  auto g = detect(*gpu, {bus, zidane}).get();
  auto c = detect(*cpu, {bus, zidane}).get();
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_FALSE((*c)[0].detections.empty());
  expect_same(*g, *c);

  // Concurrent requests, batched together on the GPU: each gets its own image's detections.
  std::vector<std::future<StatusOr<std::vector<serve::DetectResult>>>> futures;
  for (int i = 0; i < 12; ++i)
    futures.push_back(detect(*gpu, {i % 2 ? std::string_view(zidane) : std::string_view(bus)}));
  for (int i = 0; i < 12; ++i) {
    auto r = futures[static_cast<size_t>(i)].get();
    ASSERT_TRUE(r.ok()) << r.status();
    expect_same(*r, {(*c)[static_cast<size_t>(i % 2)]});
  }
}

}  // namespace
}  // namespace kestrel
