// The GPU NMS (vision/nms_cuda.h) against the CPU's batched_nms(), which it must reproduce exactly:
// same detection counts, and the padded boxes, scores and classes equal bit for bit. Random YOLO
// outputs in both layouts and both float types, batch sizes 1..64, images without a single
// candidate, thousands of candidates, quantized scores (ties) and duplicate boxes, best-class and
// multi-label, class-aware and agnostic, small top_k and max_detections. Then the engine path:
// yolov5n built with NMS on the GPU against the CPU's NMS of the same GPU engine's raw output.
//
// Perf mode (`gpu_tests --perf`): the GPU NMS of yolov5n's real output at batch 32 (the same
// [32, 25200, 85] as yolov5s's; ../shared's yolov5s has random weights, whose scores are not a
// realistic load), for detect.py's and val.py's settings, median of repeated runs (CUDA events).
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "kestrel/base/half.h"
#include "kestrel/engine/backends.h"
#include "kestrel/engine/builder.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/runtime/cuda/cuda_backend.h"
#include "kestrel/vision/detector.h"
#include "kestrel/vision/image.h"
#include "kestrel/vision/nms.h"
#include "kestrel/vision/nms_cuda.h"

namespace kestrel {
extern bool g_perf;

namespace vision {
namespace {

namespace fs = std::filesystem;

fs::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? fs::path(dir) : fs::path("../shared");
}

#define REQUIRE_GPU() \
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine"

struct RandomOutput {
  YoloLayout layout = YoloLayout::kV5;
  DType dtype = DType::kFloat32;
  int64_t batch = 1, anchors = 1000, classes = 8;
  double busy = 0.05;      // share of anchors with a high objectness / class score
  bool quantized = false;  // scores and coordinates on a coarse grid: ties and duplicate boxes
  int empty_every = 0;     // every k-th image has no candidate at all (0: none)
};

// A raw output in `r.layout` with boxes clustered around a few centres, so that NMS has work.
Tensor random_output(const RandomOutput& r, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const int64_t channels = (r.layout == YoloLayout::kV5 ? 5 : 4) + r.classes;
  const Shape shape = r.layout == YoloLayout::kV5 ? Shape{r.batch, r.anchors, channels}
                                                  : Shape{r.batch, channels, r.anchors};
  std::vector<float> v(static_cast<size_t>(shape.num_elements()));
  auto q = [&](float x, float step) { return r.quantized ? std::round(x / step) * step : x; };
  for (int64_t b = 0; b < r.batch; ++b) {
    const bool empty = r.empty_every > 0 && b % r.empty_every == 0;
    float centres[8][2];
    for (auto& c : centres) c[0] = 40 + 560 * u(rng), c[1] = 40 + 560 * u(rng);
    for (int64_t a = 0; a < r.anchors; ++a) {
      float row[256];
      const auto* c = centres[rng() % 8];
      row[0] = q(c[0] + 30 * (u(rng) - 0.5f), 8);
      row[1] = q(c[1] + 30 * (u(rng) - 0.5f), 8);
      row[2] = q(20 + 100 * u(rng), 16);
      row[3] = q(20 + 100 * u(rng), 16);
      const bool busy = !empty && u(rng) < r.busy;
      int64_t k = 4;
      if (r.layout == YoloLayout::kV5) row[k++] = busy ? q(0.3f + 0.7f * u(rng), 0.125f) : 0.01f;
      for (int64_t cl = 0; cl < r.classes; ++cl) {
        row[k++] = busy ? q(u(rng), 0.125f) : (empty ? 0.0f : 0.02f * u(rng));
      }
      for (int64_t ch = 0; ch < channels; ++ch) {
        const int64_t i = r.layout == YoloLayout::kV5 ? (b * r.anchors + a) * channels + ch
                                                      : (b * channels + ch) * r.anchors + a;
        v[static_cast<size_t>(i)] = row[ch];
      }
    }
  }
  Tensor t = Tensor::allocate(r.dtype, shape).value();
  for (size_t i = 0; i < v.size(); ++i) {
    if (r.dtype == DType::kFloat32) {
      t.data<float>()[i] = v[i];
    } else {
      t.data<Half>()[i] = Half(v[i]);
    }
  }
  return t;
}

class GpuNmsTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
    backend_ = runtime::create_cuda_backend(0).value();
  }

  // The GPU's results for `output` (host), copied back.
  NmsOutput gpu_nms(const Tensor& output, const DetectionOptions& o) {
    const int64_t b = output.shape()[0], m = o.max_detections;
    Tensor device = backend_->allocate(output.dtype(), output.shape()).value();
    EXPECT_TRUE(backend_->copy(output, device).ok());
    NmsOutput d{backend_->allocate(DType::kFloat32, Shape{b, m, 4}).value(),
                backend_->allocate(DType::kFloat32, Shape{b, m}).value(),
                backend_->allocate(DType::kInt32, Shape{b, m}).value(),
                backend_->allocate(DType::kInt32, Shape{b}).value()};
    const Status run = cuda_batched_nms(device, o, d, nullptr);
    EXPECT_TRUE(run.ok()) << run;
    EXPECT_EQ(cudaStreamSynchronize(cudaStreamPerThread), cudaSuccess);
    NmsOutput h{Tensor::allocate(DType::kFloat32, Shape{b, m, 4}).value(),
                Tensor::allocate(DType::kFloat32, Shape{b, m}).value(),
                Tensor::allocate(DType::kInt32, Shape{b, m}).value(),
                Tensor::allocate(DType::kInt32, Shape{b}).value()};
    EXPECT_TRUE(backend_->copy(d.boxes, h.boxes).ok());
    EXPECT_TRUE(backend_->copy(d.scores, h.scores).ok());
    EXPECT_TRUE(backend_->copy(d.classes, h.classes).ok());
    EXPECT_TRUE(backend_->copy(d.num_dets, h.num_dets).ok());
    return h;
  }

  // CPU and GPU agree exactly; returns the total number of detections.
  int64_t expect_same(const Tensor& output, const DetectionOptions& o, const std::string& what) {
    const NmsOutput cpu = batched_nms(output, o).value();
    const NmsOutput gpu = gpu_nms(output, o);
    int64_t total = 0;
    for (int64_t i = 0; i < output.shape()[0]; ++i) {
      const int32_t n = cpu.num_dets.data<int32_t>()[i];
      EXPECT_EQ(gpu.num_dets.data<int32_t>()[i], n) << what << " image " << i;
      total += n;
    }
    EXPECT_EQ(std::memcmp(cpu.boxes.raw_data(), gpu.boxes.raw_data(), cpu.boxes.nbytes()), 0)
        << what << ": boxes differ";
    EXPECT_EQ(std::memcmp(cpu.scores.raw_data(), gpu.scores.raw_data(), cpu.scores.nbytes()), 0)
        << what << ": scores differ";
    EXPECT_EQ(std::memcmp(cpu.classes.raw_data(), gpu.classes.raw_data(), cpu.classes.nbytes()), 0)
        << what << ": classes differ";
    return total;
  }

  std::unique_ptr<runtime::Backend> backend_;
};

TEST_F(GpuNmsTest, MatchesTheCpuOnRandomOutputs) {
  uint32_t seed = 1;
  int64_t total = 0;
  for (const YoloLayout layout : {YoloLayout::kV5, YoloLayout::kV8}) {
    for (const DType dtype : {DType::kFloat32, DType::kFloat16}) {
      for (const int64_t batch : {1, 2, 3, 7, 16, 33, 64}) {
        RandomOutput r{.layout = layout, .dtype = dtype, .batch = batch, .empty_every = 3};
        r.quantized = batch % 2 == 1;
        const Tensor out = random_output(r, seed++);
        DetectionOptions o;
        o.layout = layout;
        o.score_threshold = 0.25f;
        total += expect_same(out, o, fmt::format("{} {} b{}", int(layout), dtype, batch));
        o.multi_label = true;
        o.class_agnostic = batch % 3 == 0;
        total +=
            expect_same(out, o, fmt::format("multi-label {} {} b{}", int(layout), dtype, batch));
      }
    }
  }
  EXPECT_GT(total, 1000);  // the cases really detect things
}

TEST_F(GpuNmsTest, ThousandsOfCandidatesTiesAndLimits) {
  // yolov5s's shape, a busy scene: thousands of candidates per image, many of them tied.
  RandomOutput r{.batch = 4, .anchors = 25200, .classes = 80, .busy = 0.2, .quantized = true};
  const Tensor out = random_output(r, 99);
  DetectionOptions o;
  EXPECT_GT(expect_same(out, o, "busy"), 100);
  o.score_threshold = 0.001f;
  o.iou_threshold = 0.65f;
  o.multi_label = true;  // val.py's settings: tens of thousands of candidates, top_k 30000 bites
  expect_same(out, o, "busy multi-label");
  o.top_k = 100;
  o.max_detections = 7;
  expect_same(out, o, "small top_k and max_det");
  o.top_k = 1;
  o.max_detections = 1;
  expect_same(out, o, "top_k 1");
  o = DetectionOptions();
  o.max_detections = 3000;
  o.iou_threshold = 1.0f;  // nothing suppressed: max_detections decides
  o.class_agnostic = true;
  expect_same(out, o, "iou 1");
  o.iou_threshold = 0.0f;  // every overlap suppresses
  expect_same(out, o, "iou 0");
}

TEST_F(GpuNmsTest, RefusesBadArguments) {
  const Tensor host = random_output({}, 5);
  DetectionOptions o;
  NmsOutput none;
  EXPECT_EQ(cuda_batched_nms(host, o, none, nullptr).code(), StatusCode::kInvalidArgument);
  Tensor device = backend_->allocate(host.dtype(), host.shape()).value();
  ASSERT_TRUE(backend_->copy(host, device).ok());
  EXPECT_EQ(cuda_batched_nms(device, o, none, nullptr).code(), StatusCode::kInvalidArgument);
  o.max_detections = 0;
  EXPECT_EQ(cuda_batched_nms(device, o, none, nullptr).code(), StatusCode::kInvalidArgument);
  const Tensor rank2 = backend_->allocate(DType::kFloat32, Shape{4, 85}).value();
  EXPECT_EQ(cuda_batched_nms(rank2, {}, none, nullptr).code(), StatusCode::kInvalidArgument);
}

// yolov5n on the GPU with NMS in the engine (FP32 and FP16), with the GPU letterbox, against the
// CPU letterbox and the CPU's NMS of the raw output of a GPU engine with the same kernel choices:
// identical detections.
TEST_F(GpuNmsTest, EngineWithNmsOnTheGpuEqualsHostNms) {
  if (!fs::exists(shared_dir() / "models/yolov5n.onnx")) GTEST_SKIP() << "needs ../shared";
  register_detection_kernels();
  const std::string model = (shared_dir() / "models/yolov5n.onnx").string();
  std::vector<Tensor> images;
  for (const char* name : {"bus.jpg", "zidane.jpg"}) {
    images.push_back(read_image((shared_dir() / "images" / name).string()).value());
  }
  for (const std::string precision : {"fp32", "fp16"}) {
    for (const bool val : {false, true}) {
      DetectionOptions o;
      if (val) o.score_threshold = 0.001f, o.iou_threshold = 0.65f, o.multi_label = true;
      engine::BuildOptions b;
      b.engine.backend = "cuda";
      b.precision = precision;
      b.max_batch = 4;
      auto raw_engine = engine::build_engine(onnx::import_model_file(model).value(), b).value();
      b.nms = yolo_nms_attributes(o);
      auto nms_engine = engine::build_engine(onnx::import_model_file(model).value(), b).value();
      EXPECT_EQ(nms_engine->backend_summary(), "cuda") << "NMS must run on the GPU";
      auto raw = Detector::create(*raw_engine).value();
      auto with_nms = Detector::create(*nms_engine).value();
      std::vector<LetterboxParams> params;
      const Tensor input = raw->preprocess(images, &params).value();
      const auto expected = raw->postprocess(raw->infer(input).value(), params, o).value();
      // The same convolution algorithms as the raw engine measured (the autotuner's choices could
      // differ between two builds, and with them the last bits of the raw output).
      nms_engine->seed_tuning(raw_engine->tuning_entries());
      for (int run = 0; run < 3; ++run) {  // the first run, then CUDA graph replays
        // The whole GPU path: letterbox on the GPU, the engine, NMS on the GPU.
        const auto got = with_nms->detect(images, o).value();
        for (size_t i = 0; i < images.size(); ++i) {
          ASSERT_EQ(got[i].size(), expected[i].size()) << precision << " val " << val;
          for (size_t k = 0; k < got[i].size(); ++k) {
            EXPECT_EQ(std::memcmp(&got[i][k], &expected[i][k], sizeof(Detection)), 0)
                << precision << " image " << i << " detection " << k;
          }
        }
      }
    }
  }
}

// Detector::preprocess_on_device (GPU letterbox) makes exactly what preprocess() makes.
TEST_F(GpuNmsTest, DetectorLetterboxesOnTheGpuExactly) {
  if (!fs::exists(shared_dir() / "models/yolov5n.onnx")) GTEST_SKIP() << "needs ../shared";
  std::vector<Tensor> images;
  for (const char* name : {"bus.jpg", "zidane.jpg"}) {
    images.push_back(read_image((shared_dir() / "images" / name).string()).value());
  }
  for (const std::string precision : {"fp32", "fp16"}) {
    engine::BuildOptions b;
    b.engine.backend = "cuda";
    b.precision = precision;
    b.max_batch = 4;
    auto e =
        engine::build_engine(
            onnx::import_model_file((shared_dir() / "models/yolov5n.onnx").string()).value(), b)
            .value();
    auto detector = Detector::create(*e).value();
    std::vector<LetterboxParams> cpu_params, gpu_params;
    const Tensor cpu = detector->preprocess(images, &cpu_params).value();
    const Tensor gpu = detector->preprocess_on_device(images, &gpu_params).value();
    EXPECT_FALSE(gpu.is_cpu());
    const Tensor back = e->to_host(gpu).value();
    ASSERT_EQ(back.shape(), cpu.shape());
    ASSERT_EQ(back.dtype(), cpu.dtype());
    EXPECT_EQ(std::memcmp(back.raw_data(), cpu.raw_data(), cpu.nbytes()), 0) << precision;
    ASSERT_EQ(gpu_params.size(), 2u);
    EXPECT_EQ(gpu_params[1].pad_top, cpu_params[1].pad_top);
  }
}

// Perf: NMS of real raw outputs at batch 32 on the GPU.
TEST_F(GpuNmsTest, Perf) {
  if (!g_perf) GTEST_SKIP() << "timing only with --perf";
  register_detection_kernels();
  std::vector<Tensor> images;
  for (const auto& entry : fs::directory_iterator(shared_dir() / "images")) {
    StatusOr<Tensor> image = read_image(entry.path().string());
    if (image.ok()) images.push_back(*image);
  }
  ASSERT_FALSE(images.empty());
  while (images.size() < 32) images.push_back(images[images.size() % images.size()]);
  images.resize(32);
  for (const char* model : {"yolov5n.onnx"}) {
    engine::BuildOptions b;
    b.engine.backend = "cuda";
    b.precision = "fp16";
    auto e = engine::build_engine(
                 onnx::import_model_file((shared_dir() / "models" / model).string()).value(), b)
                 .value();
    auto detector = Detector::create(*e).value();
    std::vector<LetterboxParams> params;
    const Tensor input = detector->preprocess(images, &params).value();
    engine::Engine::RunOptions keep{.outputs_on_device = true};
    const Tensor raw = e->run({{e->inputs()[0].name, input}}, keep).value()[0];
    for (const bool val : {false, true}) {
      DetectionOptions o;
      if (val) o.score_threshold = 0.001f, o.iou_threshold = 0.65f, o.multi_label = true;
      NmsOutput d{backend_->allocate(DType::kFloat32, Shape{32, 300, 4}).value(),
                  backend_->allocate(DType::kFloat32, Shape{32, 300}).value(),
                  backend_->allocate(DType::kInt32, Shape{32, 300}).value(),
                  backend_->allocate(DType::kInt32, Shape{32}).value()};
      cudaEvent_t start, stop;
      cudaEventCreate(&start);
      cudaEventCreate(&stop);
      std::vector<float> ms;
      for (int i = 0; i < 60; ++i) {
        cudaEventRecord(start, cudaStreamPerThread);
        ASSERT_TRUE(cuda_batched_nms(raw, o, d, nullptr).ok());
        cudaEventRecord(stop, cudaStreamPerThread);
        cudaEventSynchronize(stop);
        float t = 0;
        cudaEventElapsedTime(&t, start, stop);
        if (i >= 10) ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      fmt::print("NMS {} b32 {} ({}): median {:.3f} ms, p90 {:.3f} ms\n", model,
                 val ? "conf 0.001 iou 0.65 multi-label" : "conf 0.25 iou 0.45", raw.dtype(),
                 ms[ms.size() / 2], ms[ms.size() * 9 / 10]);
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
    }
  }
}

}  // namespace
}  // namespace vision
}  // namespace kestrel
