// The real YOLOv5 models on the CPU backend against PyTorch's float64 reference output
// (../shared/reference): the reference kernels (the oracle) and the fast (oneDNN) path must both
// reproduce it with relative L2 error below 1e-5, at batch 1 and, for the fixed-batch export after
// re-batching, at batch 4. Skips with a message when ../shared is absent.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "kestrel/base/npy.h"
#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/optimize/optimizer.h"
#include "kestrel/optimize/rebatch.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;

fs::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? fs::path(dir) : fs::path("../shared");
}

#define REQUIRE_SHARED()                                                                  \
  if (!fs::exists(shared_dir() / "reference" / "bus_output.npy")) {                       \
    GTEST_SKIP() << "needs ../shared (models and reference outputs); set KESTREL_SHARED"; \
  }

// uint8 HWC RGB image -> float32 [1,3,H,W] in [0,1], as the reference pre-processing does.
Tensor to_model_input(const Tensor& hwc) {
  const int64_t h = hwc.shape()[0], w = hwc.shape()[1];
  Tensor out = Tensor::allocate(DType::kFloat32, Shape{1, 3, h, w}).value();
  const uint8_t* in = hwc.data<uint8_t>();
  float* o = out.data<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < h * w; ++i) o[c * h * w + i] = in[i * 3 + c] / 255.0f;
  }
  return out;
}

// Images stacked along the batch dimension.
Tensor stack(const std::vector<Tensor>& images) {
  const Shape& one = images[0].shape();
  Tensor out = Tensor::allocate(images[0].dtype(),
                                Shape{static_cast<int64_t>(images.size()), one[1], one[2], one[3]})
                   .value();
  for (size_t i = 0; i < images.size(); ++i) {
    std::memcpy(static_cast<char*>(out.raw_data()) + i * images[i].nbytes(), images[i].raw_data(),
                images[i].nbytes());
  }
  return out;
}

// Image i of a batched [N, ...] tensor.
Tensor slice_batch(const Tensor& t, int64_t i) {
  std::vector<int64_t> dims = t.shape().vec();
  const int64_t n = dims[0];
  dims[0] = 1;
  Tensor out = Tensor::allocate(t.dtype(), Shape(dims)).value();
  const size_t bytes = t.nbytes() / static_cast<size_t>(n);
  std::memcpy(out.raw_data(), static_cast<const char*>(t.raw_data()) + i * bytes, bytes);
  return out;
}

double relative_l2(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.shape(), want.shape());
  const std::vector<double> a = got.to_double_vector(), b = want.to_double_vector();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return std::sqrt(diff / norm);
}

std::unique_ptr<engine::Engine> load(const std::string& model, bool reference,
                                     bool dynamic_batch = false) {
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / model).string());
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return nullptr;
  if (dynamic_batch) {
    auto evaluator = engine::make_cpu_evaluator();
    const Status s = optimize::make_batch_dynamic(**g, evaluator.get());
    EXPECT_TRUE(s.ok()) << s;
  }
  StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::create(
      std::move(g).value(), {.backend = "cpu", .cpu_reference_only = reference});
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(e).value() : nullptr;
}

Tensor run_one(engine::Engine& e, const Tensor& input) {
  StatusOr<std::vector<Tensor>> out = e.run({{"images", input}});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0] : Tensor();
}

class YoloAccuracyTest : public ::testing::TestWithParam<bool> {};

TEST_P(YoloAccuracyTest, DynamicExportMatchesTheFloat64ReferenceOnBus) {
  REQUIRE_SHARED();
  const bool reference = GetParam();
  auto e = load("yolov5n.onnx", reference);
  ASSERT_TRUE(e);
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  const Tensor want = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  const Tensor got = run_one(*e, bus);
  ASSERT_TRUE(got.defined());
  const double err = relative_l2(got, want);
  RecordProperty("relative_l2", std::to_string(err));
  EXPECT_LT(err, 1e-5) << (reference ? "reference kernels" : "fast kernels");
}

TEST_P(YoloAccuracyTest, FixedBatchExportMatchesAtBatchOneAndAfterRebatchingToFour) {
  REQUIRE_SHARED();
  const bool reference = GetParam();
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  const Tensor zidane = to_model_input(
      read_npy((shared_dir() / "reference/zidane_input_rgb_u8.npy").string()).value());
  const Tensor want_bus = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();

  auto fixed = load("yolov5n-b1-op12.onnx", reference);
  ASSERT_TRUE(fixed);
  EXPECT_LT(relative_l2(run_one(*fixed, bus), want_bus), 1e-5);
  const Tensor zidane_one = run_one(*fixed, zidane);
  // A fixed-batch engine refuses a batch of 4 with a clear error.
  EXPECT_EQ(fixed->run({{"images", stack({bus, zidane})}}).status().code(),
            StatusCode::kInvalidArgument);

  auto dynamic = load("yolov5n-b1-op12.onnx", reference, /*dynamic_batch=*/true);
  ASSERT_TRUE(dynamic);
  const Tensor out = run_one(*dynamic, stack({bus, zidane, zidane, bus}));
  ASSERT_EQ(out.shape(), (Shape{4, 25200, 85}));
  EXPECT_LT(relative_l2(slice_batch(out, 0), want_bus), 1e-5);
  EXPECT_LT(relative_l2(slice_batch(out, 3), want_bus), 1e-5);
  // No image's result leaks into another's: the zidane rows equal zidane's batch-1 result.
  EXPECT_LT(relative_l2(slice_batch(out, 1), zidane_one), 1e-6);
  EXPECT_LT(relative_l2(slice_batch(out, 2), zidane_one), 1e-6);
}

// A batch run in a larger execution context (Engine::RunOptions::pad_batch_to, what the server
// does for engines whose new batch sizes are expensive) gives each given row the result of the
// unpadded run, returns only those rows, and plans the padded size.
TEST(BatchPaddingTest, PaddedRunReturnsTheGivenRowsResults) {
  REQUIRE_SHARED();
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  const Tensor zidane = to_model_input(
      read_npy((shared_dir() / "reference/zidane_input_rgb_u8.npy").string()).value());
  const Tensor want_bus = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  // Built as the server builds it (optimized, so planned: padding needs execution contexts).
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / "yolov5n.onnx").string());
  ASSERT_TRUE(g.ok()) << g.status();
  engine::BuildOptions build;
  build.engine.backend = "cpu";
  StatusOr<std::unique_ptr<engine::Engine>> built = engine::build_engine(std::move(*g), build);
  ASSERT_TRUE(built.ok()) << built.status();
  engine::Engine* e = built->get();
  EXPECT_TRUE(e->batch_symbol().ok()) << e->batch_symbol().status();
  EXPECT_FALSE(e->compiles_per_batch_size());  // the CPU compiles nothing per batch size
  const Tensor two = stack({bus, zidane});
  const Tensor plain = run_one(*e, two);
  EXPECT_LT(relative_l2(slice_batch(plain, 0), want_bus), 1e-4);
  StatusOr<std::vector<Tensor>> padded = e->run({{"images", two}}, {.pad_batch_to = 3});
  ASSERT_TRUE(padded.ok()) << padded.status();
  const Tensor& out = (*padded)[0];
  ASSERT_EQ(out.shape(), (Shape{2, 25200, 85}));
  EXPECT_LT(relative_l2(out, plain), 1e-6);
  const std::vector<int64_t> warm = e->warm_batch_sizes();
  EXPECT_NE(std::find(warm.begin(), warm.end(), 3), warm.end());
  // Padding to the batch itself is a plain run; to less is an error.
  StatusOr<std::vector<Tensor>> same = e->run({{"images", two}}, {.pad_batch_to = 2});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_LT(relative_l2((*same)[0], plain), 1e-6);
  StatusOr<std::vector<Tensor>> less = e->run({{"images", two}}, {.pad_batch_to = 1});
  EXPECT_EQ(less.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(less.status().message().find("cannot pad a batch of 2 to 1"), std::string::npos)
      << less.status();

  // The fixed-batch export has no batch axis to pad.
  auto fixed = load("yolov5n-b1-op12.onnx", /*reference=*/false);
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->batch_symbol().status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(fixed->run({{"images", bus}}, {.pad_batch_to = 2}).status().code(),
            StatusCode::kFailedPrecondition);
}

TEST_P(YoloAccuracyTest, OptimizedEngineMatchesTooAtBatchTwo) {
  REQUIRE_SHARED();
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / "yolov5n.onnx").string());
  ASSERT_TRUE(g.ok()) << g.status();
  engine::BuildOptions options;
  options.engine = {.backend = "cpu", .cpu_reference_only = GetParam()};
  options.max_batch = 4;
  engine::BuildReport report;
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::build_engine(std::move(g).value(), options, &report);
  ASSERT_TRUE(e.ok()) << e.status();
  // The fusions happened: no Sigmoid/Mul pairs left after the convolutions.
  int fused = 0;
  for (const ir::Node* n : (*e)->graph().nodes()) fused += n->op_type() == "FusedConv";
  // 57 convolutions with SiLU and the 3 head convolutions with the Sigmoid after their Transpose.
  EXPECT_EQ(fused, 60) << report.to_string();
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  const Tensor want = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  const Tensor out = run_one(**e, stack({bus, bus}));
  ASSERT_EQ(out.shape(), (Shape{2, 25200, 85}));
  EXPECT_LT(relative_l2(slice_batch(out, 0), want), 1e-5);
  EXPECT_LT(relative_l2(slice_batch(out, 1), want), 1e-5);
}

// The convolutional part channels-last (optimize/to_channels_last.h), on the reference kernels:
// the same accuracy, NCHW at the interface, and transposes only at the region's borders.
TEST(ChannelsLastModelTest, YoloV5nMatchesTheFloat64ReferenceOnBus) {
  REQUIRE_SHARED();
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / "yolov5n.onnx").string());
  ASSERT_TRUE(g.ok()) << g.status();
  engine::BuildOptions options;
  options.engine = {.backend = "cpu", .cpu_reference_only = true};
  options.layout = "nhwc";
  engine::BuildReport report;
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::build_engine(std::move(g).value(), options, &report);
  ASSERT_TRUE(e.ok()) << e.status();
  std::map<std::string, int> ops;
  for (const ir::Node* n : (*e)->graph().nodes()) ++ops[n->op_type()];
  std::string summary = report.to_string() + "; nodes:";
  for (const auto& [op, count] : ops) summary += " " + op + " " + std::to_string(count);
  RecordProperty("channels_last", summary);
  // 60 FusedConvs (the heads' with their Sigmoid), all channels-last.
  int channels_last = 0;
  for (const ir::Node* n : (*e)->graph().nodes()) {
    channels_last += n->op_type() == "FusedConv" && n->attrs().get_int("channels_last", 0) == 1;
  }
  EXPECT_EQ(channels_last, 60) << summary;
  EXPECT_EQ(ops["Conv"], 0) << summary;
  // One transpose in, and in each detection head the model's own merged with the one back.
  EXPECT_EQ(ops["Transpose"], 4) << summary;
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  const Tensor want = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  const Tensor got = run_one(**e, bus);
  ASSERT_TRUE(got.defined());
  const double err = relative_l2(got, want);
  RecordProperty("relative_l2", fmt::format("{:.3g}", err));
  EXPECT_LT(err, 1e-5) << summary;
}

// The GPU's graph (optimize/fuse_concat.h after channels-last) on the reference kernels: the
// Concats fed by convolutions become FusedConcats, and the result still matches the float64
// reference.
TEST(FusedConcatModelTest, YoloV5nMatchesTheFloat64ReferenceOnBus) {
  REQUIRE_SHARED();
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / "yolov5n.onnx").string());
  ASSERT_TRUE(g.ok()) << g.status();
  std::unique_ptr<ir::NodeEvaluator> evaluator = engine::make_cpu_evaluator();
  ASSERT_TRUE((*g)->sort_topologically().ok());
  optimize::OptimizeOptions o;
  o.channels_last = true;
  o.fuse_concat = true;
  StatusOr<optimize::OptimizeReport> report = optimize::optimize_graph(**g, *evaluator, o);
  ASSERT_TRUE(report.ok()) << report.status();
  std::map<std::string, int> ops;
  for (const ir::Node* n : (*g)->nodes()) ++ops[n->op_type()];
  // The 8 C3 blocks and the 2 bottom-up neck Concats (a stride-2 convolution feeds only them).
  // SPPF's and the top-down neck's inputs all have other consumers or are pools and Resizes, and
  // the head's Concats follow Sigmoid/Mul: those stay copies.
  EXPECT_EQ(ops["FusedConcat"], 10) << report->to_string();
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::Engine::create(std::move(g).value(), {.backend = "cpu", .cpu_reference_only = true});
  ASSERT_TRUE(e.ok()) << e.status();
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  const Tensor want = read_npy((shared_dir() / "reference/bus_output.npy").string()).value();
  const Tensor got = run_one(**e, bus);
  ASSERT_TRUE(got.defined());
  const double err = relative_l2(got, want);
  RecordProperty("relative_l2", fmt::format("{:.3g}", err));
  EXPECT_LT(err, 1e-5) << report->to_string();
}

// In float16 too (Casts at the interface, transposes in float16 inside), the reference kernels
// compute channels-last exactly what they compute channels-first.
TEST(ChannelsLastModelTest, YoloV5nInFloat16EqualsTheChannelsFirstEngine) {
  REQUIRE_SHARED();
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  std::vector<Tensor> out;
  for (bool channels_last : {false, true}) {
    StatusOr<std::unique_ptr<ir::Graph>> g =
        onnx::import_model_file((shared_dir() / "models" / "yolov5n.onnx").string());
    ASSERT_TRUE(g.ok()) << g.status();
    engine::BuildOptions options;
    options.engine = {.backend = "cpu", .cpu_reference_only = true};
    options.precision = "fp16";
    options.layout = channels_last ? "nhwc" : "nchw";
    StatusOr<std::unique_ptr<engine::Engine>> e =
        engine::build_engine(std::move(g).value(), options);
    ASSERT_TRUE(e.ok()) << e.status();
    out.push_back(run_one(**e, bus));
    ASSERT_TRUE(out.back().defined());
  }
  ASSERT_EQ(out[0].shape(), out[1].shape());
  EXPECT_EQ(out[0].to_double_vector(), out[1].to_double_vector());
}

INSTANTIATE_TEST_SUITE_P(Kernels, YoloAccuracyTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Reference" : "Fast";
                         });

TEST(Float16ModelTest, YoloV5sWithFloat16WeightsRunsAtAnyBatch) {
  REQUIRE_SHARED();
  auto e = load("yolov5s-randw-fp16.onnx", /*reference=*/false);
  ASSERT_TRUE(e);
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  Tensor half = Tensor::allocate(DType::kFloat16, Shape{2, 3, 640, 640}).value();
  const Tensor two = stack({bus, bus});
  for (int64_t i = 0; i < two.num_elements(); ++i)
    half.data<Half>()[i] = Half(two.data<float>()[i]);
  const Tensor out = run_one(*e, half);
  ASSERT_EQ(out.shape(), (Shape{2, 25200, 85}));
  EXPECT_EQ(out.dtype(), DType::kFloat16);
  // Random weights: the values mean nothing, but the two identical images agree exactly.
  EXPECT_EQ(
      std::memcmp(slice_batch(out, 0).raw_data(), slice_batch(out, 1).raw_data(), out.nbytes() / 2),
      0);
}

// Built for float32, the float16 model computes in float32 behind its float16 interface: the
// builder converts its constants, and on the reference kernels the result is the float16
// computation's within the float16 rounding the latter accumulates.
TEST(Float16ModelTest, YoloV5sBuiltForFloat32ComputesInFloat32) {
  REQUIRE_SHARED();
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / "yolov5s-randw-fp16.onnx").string());
  ASSERT_TRUE(g.ok()) << g.status();
  engine::BuildOptions options;
  options.engine = {.backend = "cpu"};
  options.precision = "fp32";
  options.max_batch = 2;
  engine::BuildReport report;
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::build_engine(std::move(g).value(), options, &report);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_GT(report.converted_to_float32, 100) << report.to_string();
  ASSERT_EQ((*e)->inputs()[0].type.dtype, DType::kFloat16);
  const Tensor bus =
      to_model_input(read_npy((shared_dir() / "reference/bus_input_rgb_u8.npy").string()).value());
  Tensor half = Tensor::allocate(DType::kFloat16, bus.shape()).value();
  for (int64_t i = 0; i < bus.num_elements(); ++i)
    half.data<Half>()[i] = Half(bus.data<float>()[i]);
  const Tensor out = run_one(**e, half);
  ASSERT_EQ(out.shape(), (Shape{1, 25200, 85}));
  EXPECT_EQ(out.dtype(), DType::kFloat16);
  auto in_half = load("yolov5s-randw-fp16.onnx", /*reference=*/true);
  ASSERT_TRUE(in_half);
  const std::vector<double> a = out.to_double_vector();
  const std::vector<double> b = run_one(*in_half, half).to_double_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  const double err = std::sqrt(num / den);
  fmt::print("yolov5s: float32 computation vs float16: relative L2 {:.2e}\n", err);
  EXPECT_GT(err, 0.0);
  EXPECT_LT(err, 1e-3);
}

}  // namespace
}  // namespace kestrel
