// The real YOLOv5 models on the GPU engine (optimized graph, CUDA kernels): the float32 engine
// reproduces PyTorch's float64 output on bus.jpg with relative L2 error below 1e-4, at batch 1 and
// inside a batch of 4; every node runs on the GPU; float16 engines run and stay close to float32;
// running out of GPU memory is an error the engine survives.
// Skips without a GPU or without ../shared (set KESTREL_SHARED to the data folder).
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "kestrel/base/npy.h"
#include "kestrel/engine/backends.h"
#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine_file.h"
#include "kestrel/onnx/importer.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

fs::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? fs::path(dir) : fs::path("../shared");
}

#define REQUIRE_GPU_AND_DATA()                                                          \
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine"; \
  if (!fs::exists(shared_dir() / "reference" / "bus_output.npy")) {                     \
    GTEST_SKIP() << "needs ../shared (set KESTREL_SHARED)";                             \
  }

Tensor bus_input(int64_t copies) {
  const Tensor hwc = read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value();
  const int64_t h = hwc.shape()[0], w = hwc.shape()[1];
  Tensor out = Tensor::allocate(DType::kFloat32, Shape{copies, 3, h, w}).value();
  for (int64_t n = 0; n < copies; ++n) {
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t i = 0; i < h * w; ++i) {
        out.data<float>()[(n * 3 + c) * h * w + i] = hwc.data<uint8_t>()[i * 3 + c] / 255.0f;
      }
    }
  }
  return out;
}

double relative_l2(const double* a, const double* b, size_t n) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < n; ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return std::sqrt(diff / norm);
}

std::unique_ptr<engine::Engine> build(const std::string& model, const std::string& precision,
                                      const std::string& layout = "auto",
                                      const std::string& backend = "cuda") {
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / model).string());
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return nullptr;
  engine::BuildOptions options;
  options.engine.backend = backend;
  options.precision = precision;
  options.layout = layout;
  engine::BuildReport report;
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::build_engine(std::move(g).value(), options, &report);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return nullptr;
  fmt::print("{} {} {}: {} | runs on {}\n", model, precision, layout, report.to_string(),
             (*e)->backend_summary());
  return std::move(e).value();
}

TEST(GpuModelTest, Float32EngineMatchesTheFloat64ReferenceInBothLayoutsAtBatchOneAndFour) {
  REQUIRE_GPU_AND_DATA();
  const Tensor want = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  const std::vector<double> ref = want.to_double_vector();
  for (const char* layout : {"nchw", "nhwc"}) {
    auto e = build("yolov5n.onnx", "fp32", layout);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->backend_summary(), "cuda") << "some nodes fell back to the CPU";
    for (int64_t batch : {1, 4}) {
      StatusOr<std::vector<Tensor>> out = e->run({{"images", bus_input(batch)}});
      ASSERT_TRUE(out.ok()) << out.status();
      ASSERT_EQ((*out)[0].shape(), (Shape{batch, 25200, 85}));
      const std::vector<double> got = (*out)[0].to_double_vector();
      for (int64_t n = 0; n < batch; ++n) {
        const double err = relative_l2(got.data() + n * ref.size(), ref.data(), ref.size());
        fmt::print("yolov5n fp32 {} batch {} image {}: relative L2 {:.3g}\n", layout, batch, n,
                   err);
        EXPECT_LT(err, 1e-4);
      }
    }
  }
}

TEST(GpuModelTest, Float16EngineStaysCloseToFloat32) {
  REQUIRE_GPU_AND_DATA();
  auto e = build("yolov5n.onnx", "fp16");
  ASSERT_TRUE(e);
  const Tensor want = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  StatusOr<std::vector<Tensor>> out = e->run({{"images", bus_input(2)}});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ((*out)[0].dtype(), DType::kFloat32);
  const std::vector<double> got = (*out)[0].to_double_vector();
  const std::vector<double> ref = want.to_double_vector();
  const double err = relative_l2(got.data(), ref.data(), ref.size());
  fmt::print("yolov5n fp16: relative L2 {:.3g} against the float64 reference\n", err);
  // Detection accuracy (mAP) is the real criterion; this only catches a broken engine.
  EXPECT_LT(err, 2e-2);
  EXPECT_EQ(std::memcmp(got.data(), got.data() + ref.size(), ref.size() * sizeof(double)), 0)
      << "the two identical images of the batch differ";
}

// An engine file made on the GPU: the loaded engine reuses the measured cuDNN choices and
// computes the same result.
TEST(GpuModelTest, EngineFileRoundTripOnTheGpu) {
  REQUIRE_GPU_AND_DATA();
  auto e = build("yolov5n.onnx", "fp16");
  ASSERT_TRUE(e);
  const Tensor x = bus_input(1);
  StatusOr<std::vector<Tensor>> want = e->run({{"images", x}});
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_FALSE(e->tuning_entries().empty()) << "the first run measured no cuDNN algorithm";
  const std::string path =
      (std::filesystem::temp_directory_path() / "kestrel_gpu_engine_file_test.kplan").string();
  engine::EngineFileInfo info;
  info.precision = "fp16";
  info.layout = "auto";
  info.max_batch = 32;
  ASSERT_TRUE(engine::save_engine_file(path, *e, info).ok());
  const auto start = std::chrono::steady_clock::now();
  engine::EngineFileInfo loaded_info;
  StatusOr<std::unique_ptr<engine::Engine>> loaded =
      engine::load_engine_file(path, {}, &loaded_info);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  fmt::print("engine file: loaded in {:.1f} ms, target gpu '{}', {} tuned choices\n", ms,
             loaded_info.target["gpu"], loaded_info.tuning.size());
  StatusOr<std::vector<Tensor>> got = (*loaded)->run({{"images", x}});
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<double> a = (*got)[0].to_double_vector(), b = (*want)[0].to_double_vector();
  EXPECT_LT(relative_l2(a.data(), b.data(), b.size()), 1e-6);
  std::filesystem::remove(path);
}

// A batch run padded into a larger execution context (what the server does for engines with
// cuDNN graph kernels, which compile per batch size): each given image gets the result of the
// unpadded run, with the input on the host or already on the GPU.
TEST(GpuModelTest, PaddedBatchGivesEachImageItsUnpaddedResult) {
  REQUIRE_GPU_AND_DATA();
  const Tensor zidane_hwc =
      read_npy((shared_dir() / "reference/zidane_input_rgb_u8.npy").string()).value();
  Tensor two = bus_input(2);  // bus, then zidane in the second row
  const int64_t plane = zidane_hwc.shape()[0] * zidane_hwc.shape()[1];
  ASSERT_EQ(two.num_elements(), 2 * 3 * plane) << "the reference inputs differ in size";
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < plane; ++i)
      two.data<float>()[(3 + c) * plane + i] = zidane_hwc.data<uint8_t>()[i * 3 + c] / 255.0f;
  for (const char* precision : {"fp32", "fp16"}) {
    auto e = build("yolov5n.onnx", precision);
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->compiles_per_batch_size()) << "built with cuDNN graph kernels allowed";
    StatusOr<std::vector<Tensor>> plain = e->run({{"images", two}});
    ASSERT_TRUE(plain.ok()) << plain.status();
    const Tensor on_gpu = e->to_device(two).value();
    for (const Tensor& input : {two, on_gpu}) {
      StatusOr<std::vector<Tensor>> padded = e->run({{"images", input}}, {.pad_batch_to = 5});
      ASSERT_TRUE(padded.ok()) << padded.status();
      ASSERT_EQ((*padded)[0].shape(), (Shape{2, 25200, 85}));
      const std::vector<double> a = (*padded)[0].to_double_vector();
      const std::vector<double> b = (*plain)[0].to_double_vector();
      const double err = relative_l2(a.data(), b.data(), b.size());
      fmt::print("yolov5n {} padded 2 -> 5 ({}): relative L2 {:.3g} against batch 2\n", precision,
                 input.is_cpu() ? "host input" : "device input", err);
      // Batch 5 may run other cuDNN algorithms than batch 2: float32 within rounding, float16
      // within the op harness's tolerance.
      EXPECT_LT(err, std::string(precision) == "fp32" ? 1e-5 : 2e-3);
    }
    const std::vector<int64_t> warm = e->warm_batch_sizes();
    EXPECT_NE(std::find(warm.begin(), warm.end(), 5), warm.end());
  }
}

TEST(GpuModelTest, Float16ModelRunsOnTheGpu) {
  REQUIRE_GPU_AND_DATA();
  auto e = build("yolov5s-randw-fp16.onnx", "fp32");
  ASSERT_TRUE(e);
  Tensor x = Tensor::allocate(DType::kFloat16, Shape{2, 3, 640, 640}).value();
  const Tensor bus = bus_input(2);
  for (int64_t i = 0; i < x.num_elements(); ++i) x.data<Half>()[i] = Half(bus.data<float>()[i]);
  StatusOr<std::vector<Tensor>> out = e->run({{"images", x}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 25200, 85}));
}

// GPU out-of-memory is an error the caller survives: a batch size whose planned arena is twice the
// GPU's memory makes memory_report (which creates that batch's execution context) answer
// RESOURCE_EXHAUSTED naming the bytes, leaves no sticky CUDA error and no half-made context, and
// batch 1 still runs right afterwards (the same output as the CPU engine).
TEST(GpuModelTest, OutOfMemoryIsAnErrorTheEngineSurvives) {
  REQUIRE_GPU_AND_DATA();
  auto e = build("yolov5n.onnx", "fp32");
  ASSERT_TRUE(e);
  const ir::SymDim& batch_dim = e->inputs()[0].type.shape[0];
  ASSERT_TRUE(batch_dim.is_symbolic());
  const std::string batch = batch_dim.symbol_name();
  StatusOr<engine::Engine::MemoryReport> one = e->memory_report({{batch, 1}});
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_GT(one->arena_bytes, 0u);
  size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  // Activations grow in proportion to the batch.
  const auto huge = static_cast<int64_t>(2 * total / one->arena_bytes + 1);
  for (int attempt = 0; attempt < 2; ++attempt) {
    StatusOr<engine::Engine::MemoryReport> too_big = e->memory_report({{batch, huge}});
    ASSERT_FALSE(too_big.ok()) << "batch " << huge << " planned " << too_big->arena_bytes
                               << " bytes on a GPU of " << total;
    fmt::print("batch {} (arena at batch 1: {} bytes, GPU: {} bytes): {}\n", huge, one->arena_bytes,
               total, too_big.status().to_string());
    EXPECT_EQ(too_big.status().code(), StatusCode::kResourceExhausted) << too_big.status();
    EXPECT_NE(too_big.status().message().find("bytes"), std::string::npos) << too_big.status();
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

  auto cpu = build("yolov5n.onnx", "fp32", "auto", "cpu");
  ASSERT_TRUE(cpu);
  const Tensor x = bus_input(1);
  StatusOr<std::vector<Tensor>> want = cpu->run({{"images", x}});
  ASSERT_TRUE(want.ok()) << want.status();
  StatusOr<std::vector<Tensor>> got = e->run({{"images", x}});
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<double> a = (*got)[0].to_double_vector(), b = (*want)[0].to_double_vector();
  ASSERT_EQ(a.size(), b.size());
  const double err = relative_l2(a.data(), b.data(), b.size());
  fmt::print("yolov5n fp32 batch 1 after the out-of-memory error: relative L2 {:.3g} vs the CPU\n",
             err);
  EXPECT_LT(err, 1e-4);
  StatusOr<engine::Engine::MemoryReport> again = e->memory_report({{batch, 1}});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->arena_bytes, one->arena_bytes);
}

// --tf32 (BuildOptions::tf32): every convolution is marked and channels-last, the engine runs on
// the GPU and stays within TF32's error of the float32 reference; it cannot be combined with fp16.
TEST(GpuModelTest, Tf32EngineMarksEveryConvolutionAndStaysClose) {
  REQUIRE_GPU_AND_DATA();
  auto load = [] {
    return onnx::import_model_file((shared_dir() / "models" / "yolov5n.onnx").string());
  };
  StatusOr<std::unique_ptr<ir::Graph>> g = load(), g16 = load();
  ASSERT_TRUE(g.ok() && g16.ok()) << g.status();
  engine::BuildOptions options;
  options.engine.backend = "cuda";
  options.tf32 = true;
  options.precision = "fp16";
  EXPECT_EQ(engine::build_engine(std::move(g16).value(), options).status().code(),
            StatusCode::kInvalidArgument);
  options.precision = "fp32";
  EXPECT_EQ(engine::precision_name(options), "tf32");
  engine::BuildReport report;
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::build_engine(std::move(g).value(), options, &report);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->backend_summary(), "cuda");
  int convolutions = 0;
  for (const ir::Node* n : (*e)->graph().nodes()) {
    if (n->op_type() != "Conv" && n->op_type() != "FusedConv") continue;
    ++convolutions;
    EXPECT_EQ(n->attrs().get_int("kestrel_tf32", 0), 1) << n->describe();
    // Layout auto: channels-last, where cuDNN's fused graph kernels run TF32.
    EXPECT_EQ(n->attrs().get_int("channels_last", 0), 1) << n->describe();
  }
  EXPECT_GT(convolutions, 0);
  EXPECT_EQ(report.tf32_convolutions, convolutions);
  const Tensor want = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  StatusOr<std::vector<Tensor>> out = (*e)->run({{"images", bus_input(1)}});
  ASSERT_TRUE(out.ok()) << out.status();
  const std::vector<double> got = (*out)[0].to_double_vector(), ref = want.to_double_vector();
  ASSERT_EQ(got.size(), ref.size());
  const double err = relative_l2(got.data(), ref.data(), ref.size());
  fmt::print("yolov5n tf32: relative L2 {:.3g} against the float64 reference\n", err);
  // TF32 keeps 10 mantissa bits of each product (float16's precision, float32's range).
  EXPECT_LT(err, 2e-2);
}

}  // namespace
}  // namespace kestrel
