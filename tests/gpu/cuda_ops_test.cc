// The CUDA op harness: every CUDA kernel against the CPU reference kernel on random inputs (never
// zeros), over many shapes, in float32 (relative L2 error < 1e-5) and float16 (< 2e-3, the CPU
// reference computing from the same float16 inputs). Each case must really run on the GPU: a
// factory that returns UNIMPLEMENTED for it fails the test.
//
// Perf mode: `cuda_ops_test --perf` times every case on the GPU instead (median of repeated runs,
// shape inference and stream-ordered allocation included) and prints a table.
//
// Skips with a message when no GPU is present (CI): scripts/gpu-check.sh runs it on the GPU
// machine.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/graph.h"
#include "kestrel/ir/op_schema.h"
#include "kestrel/runtime/cpu/cpu_backend.h"
#include "kestrel/runtime/cuda/cuda_backend.h"

namespace kestrel {
namespace {}  // namespace

// Set by gpu_main.cc from --perf.
bool g_perf = false;

namespace {

using ints = std::vector<int64_t>;

struct OpCase {
  std::string name;
  std::string op;
  std::vector<Shape> shapes;  // one per input; an empty vector rank marks "omitted"
  Attributes attrs;
  std::vector<size_t> constants = {};  // inputs that are graph constants (weights)
  size_t outputs = 1;
  std::vector<Tensor> fixed = {};  // inputs given explicitly (index-aligned; undefined: random)
  bool positive = false;           // random inputs in (0.1, 2) instead of (-2, 2)
};

Attributes attrs(std::initializer_list<std::pair<std::string, AttributeValue>> list) {
  Attributes a;
  for (const auto& [k, v] : list) a.set(k, v);
  return a;
}

Tensor random_tensor(const Shape& shape, DType dtype, std::mt19937& rng, bool positive) {
  std::uniform_real_distribution<float> dist(positive ? 0.1f : -2.f, 2.f);
  Tensor t = Tensor::allocate(dtype, shape).value();
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    float v = dist(rng);
    if (std::abs(v) < 1e-3f) v = 0.5f;  // never zero
    if (dtype == DType::kFloat32)
      t.data<float>()[i] = v;
    else
      t.data<Half>()[i] = Half(v);
  }
  return t;
}

// A graph with one node; returns the node.
const ir::Node* build(ir::Graph& g, const OpCase& c, const std::vector<Tensor>& inputs) {
  std::vector<ir::Value*> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      in.push_back(nullptr);
    } else if (std::count(c.constants.begin(), c.constants.end(), i)) {
      in.push_back(g.add_constant("in" + std::to_string(i), inputs[i]));
    } else {
      in.push_back(g.add_input("in" + std::to_string(i),
                               {inputs[i].dtype(), ir::SymShape::from(inputs[i].shape())}));
    }
  }
  ir::Node* n = g.add_node(c.op, in, c.outputs, c.attrs, c.name);
  for (ir::Value* out : n->outputs()) g.add_output(out);
  return n;
}

struct OpRun {
  std::vector<Tensor> outputs;  // on the host
  double median_ms = 0;
};

// Runs the node on `backend`: inputs go to its device (value inputs stay on the host).
StatusOr<OpRun> run_on(runtime::Backend& backend, const OpCase& c,
                       const std::vector<Tensor>& inputs, int repeats) {
  ir::Graph g;
  const ir::Node* node = build(g, c, inputs);
  std::vector<DType> in_types, out_types;
  for (const Tensor& t : inputs) in_types.push_back(t.defined() ? t.dtype() : DType::kUndefined);
  std::vector<Shape> shapes;
  std::vector<const Tensor*> values;
  for (const Tensor& t : inputs) {
    shapes.push_back(t.defined() ? t.shape() : Shape());
    values.push_back(t.defined() ? &t : nullptr);
  }
  KS_ASSIGN_OR_RETURN(std::vector<ir::InferredValue> types,
                      ir::infer_node(*node, in_types, shapes, values));
  for (const auto& t : types) out_types.push_back(t.dtype);
  KS_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Kernel> kernel,
                      backend.create_kernel(engine::make_kernel_def(*node, in_types, out_types)));
  const ir::OpSchema* schema = ir::find_op_schema(c.op);
  std::vector<Tensor> device_inputs(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    if (schema->is_value_input(i) || backend.device().is_cpu()) {
      device_inputs[i] = inputs[i];
      continue;
    }
    KS_ASSIGN_OR_RETURN(device_inputs[i], backend.allocate(inputs[i].dtype(), inputs[i].shape()));
    KS_RETURN_IF_ERROR(backend.copy(inputs[i], device_inputs[i]));
  }
  OpRun run;
  std::vector<Tensor> outs;
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    KS_RETURN_IF_ERROR(backend.synchronize());
    const auto start = std::chrono::steady_clock::now();
    KS_ASSIGN_OR_RETURN(outs, engine::run_node(*node, *kernel, backend, device_inputs));
    KS_RETURN_IF_ERROR(backend.synchronize());
    times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(times.begin(), times.end());
  run.median_ms = times[times.size() / 2];
  for (Tensor& t : outs) {
    if (!t.defined() || t.is_cpu()) {
      run.outputs.push_back(t);
      continue;
    }
    KS_ASSIGN_OR_RETURN(Tensor host, Tensor::allocate(t.dtype(), t.shape()));
    KS_RETURN_IF_ERROR(backend.copy(t, host));
    run.outputs.push_back(std::move(host));
  }
  return run;
}

double relative_l2(const Tensor& got, const Tensor& want) {
  const std::vector<double> a = got.to_double_vector(), b = want.to_double_vector();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (std::isnan(b[i])) continue;
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cases;
  const Shape t4{2, 3, 17, 19};
  for (const char* op : {"Relu", "Sigmoid", "HardSwish", "Neg", "Abs", "Floor", "Ceil", "Round"}) {
    cases.push_back({std::string(op), op, {t4}, {}});
  }
  cases.push_back({"LeakyRelu", "LeakyRelu", {t4}, attrs({{"alpha", 0.1f}})});
  cases.push_back({"HardSigmoid", "HardSigmoid", {t4}, attrs({{"alpha", 0.3f}, {"beta", 0.4f}})});
  cases.push_back({"Exp", "Exp", {t4}, {}});
  for (const char* op : {"Log", "Sqrt"}) cases.push_back({op, op, {t4}, {}, {}, 1, {}, true});
  cases.push_back({"Clip", "Clip", {t4, Shape{}, Shape{}}, {}, {1, 2}});
  const std::vector<std::pair<Shape, Shape>> broadcasts = {
      {t4, t4},
      {Shape{2, 3, 4, 5}, Shape{3, 1, 1}},
      {Shape{2, 3, 4, 5}, Shape{}},
      {Shape{1, 3, 1, 5}, Shape{2, 1, 4, 1}},
      {Shape{1, 3, 80, 80, 2}, Shape{2, 3, 80, 80, 2}}};
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Min", "Max"}) {
    for (const auto& [a, b] : broadcasts) {
      cases.push_back({fmt::format("{} {}x{}", op, a.to_string(), b.to_string()), op, {a, b}, {}});
    }
  }
  cases.push_back({"Pow", "Pow", {t4, t4}, {}, {}, 1, {}, true});
  cases.push_back(
      {"Transpose 4-D", "Transpose", {Shape{2, 3, 4, 5}}, attrs({{"perm", ints{0, 2, 3, 1}}})});
  cases.push_back({"Transpose YOLO head",
                   "Transpose",
                   {Shape{2, 3, 85, 20, 20}},
                   attrs({{"perm", ints{0, 1, 3, 4, 2}}})});
  cases.push_back({"Concat axis 1",
                   "Concat",
                   {Shape{2, 3, 8, 8}, Shape{2, 5, 8, 8}, Shape{2, 1, 8, 8}},
                   attrs({{"axis", int64_t{1}}})});
  cases.push_back({"Concat axis -1",
                   "Concat",
                   {Shape{2, 4, 3}, Shape{2, 4, 5}},
                   attrs({{"axis", int64_t{-1}}})});
  cases.push_back({"Split YOLO head",
                   "Split",
                   {Shape{2, 3, 20, 20, 85}, Shape{3}},
                   attrs({{"axis", int64_t{4}}}),
                   {1},
                   3,
                   {Tensor(), Tensor::from_vector<int64_t>({3}, {2, 2, 81})}});
  cases.push_back({"Expand",
                   "Expand",
                   {Shape{3, 1}, Shape{3}},
                   {},
                   {1},
                   1,
                   {Tensor(), Tensor::from_vector<int64_t>({3}, {2, 3, 4})}});
  cases.push_back({"Reshape",
                   "Reshape",
                   {Shape{2, 3, 4, 5}, Shape{2}},
                   {},
                   {1},
                   1,
                   {Tensor(), Tensor::from_vector<int64_t>({2}, {2, 60})}});
  cases.push_back(
      {"MaxPool SPPF 5x5",
       "MaxPool",
       {Shape{2, 8, 20, 20}},
       attrs({{"kernel_shape", ints{5, 5}}, {"pads", ints{2, 2, 2, 2}}, {"strides", ints{1, 1}}})});
  cases.push_back({"MaxPool 3x3/2 ceil",
                   "MaxPool",
                   {Shape{1, 4, 15, 15}},
                   attrs({{"kernel_shape", ints{3, 3}},
                          {"pads", ints{1, 1, 1, 1}},
                          {"strides", ints{2, 2}},
                          {"ceil_mode", int64_t{1}}})});
  cases.push_back({"AveragePool count pads",
                   "AveragePool",
                   {Shape{1, 4, 9, 9}},
                   attrs({{"kernel_shape", ints{3, 3}},
                          {"pads", ints{1, 1, 1, 1}},
                          {"count_include_pad", int64_t{1}}})});
  cases.push_back({"GlobalAveragePool", "GlobalAveragePool", {Shape{2, 16, 7, 9}}, {}});
  cases.push_back({"Resize nearest x2",
                   "Resize",
                   {Shape{2, 4, 10, 10}, Shape{0}, Shape{4}},
                   attrs({{"mode", std::string("nearest")},
                          {"coordinate_transformation_mode", std::string("asymmetric")},
                          {"nearest_mode", std::string("floor")}}),
                   {2},
                   1,
                   {Tensor(), Tensor(), Tensor::from_vector<float>({4}, {1, 1, 2, 2})}});
  cases.push_back({"Resize nearest x1.5 half_pixel",
                   "Resize",
                   {Shape{1, 2, 8, 8}, Shape{0}, Shape{4}},
                   attrs({{"mode", std::string("nearest")}}),
                   {2},
                   1,
                   {Tensor(), Tensor(), Tensor::from_vector<float>({4}, {1, 1, 1.5f, 1.5f})}});
  struct ConvShape {
    std::string name;
    Shape x, w;
    ints pads, strides;
    int64_t group;
    ints dilations;
  };
  const std::vector<ConvShape> convs = {
      {"3x3", {2, 16, 20, 20}, {32, 16, 3, 3}, {1, 1, 1, 1}, {1, 1}, 1, {1, 1}},
      {"1x1", {3, 32, 20, 20}, {16, 32, 1, 1}, {0, 0, 0, 0}, {1, 1}, 1, {1, 1}},
      {"6x6/2 stem", {1, 3, 64, 64}, {16, 3, 6, 6}, {2, 2, 2, 2}, {2, 2}, 1, {1, 1}},
      {"3x3/2", {2, 16, 21, 21}, {32, 16, 3, 3}, {1, 1, 1, 1}, {2, 2}, 1, {1, 1}},
      {"grouped", {1, 16, 12, 12}, {16, 4, 3, 3}, {1, 1, 1, 1}, {1, 1}, 4, {1, 1}},
      {"depthwise", {1, 16, 12, 12}, {16, 1, 3, 3}, {1, 1, 1, 1}, {1, 1}, 16, {1, 1}},
      {"dilated", {1, 8, 16, 16}, {8, 8, 3, 3}, {2, 2, 2, 2}, {1, 1}, 1, {2, 2}},
  };
  for (const ConvShape& s : convs) {
    const Attributes a = attrs(
        {{"pads", s.pads}, {"strides", s.strides}, {"group", s.group}, {"dilations", s.dilations}});
    cases.push_back({"Conv " + s.name, "Conv", {s.x, s.w, Shape{s.w[0]}}, a, {1, 2}});
    cases.push_back({"Conv " + s.name + " no bias", "Conv", {s.x, s.w}, a, {1}});
  }
  // FusedConv: every activation, with and without a residual input.
  const Shape fx{2, 16, 20, 20}, fw{16, 16, 3, 3};
  const std::vector<std::tuple<std::string, float, float>> activations = {
      {"Silu", 0.f, 0.f},    {"Relu", 0.f, 0.f},      {"LeakyRelu", 0.1f, 0.f},
      {"Sigmoid", 0.f, 0.f}, {"HardSwish", 0.f, 0.f}, {"HardSigmoid", 0.2f, 0.5f},
      {"Clip", -0.5f, 0.7f}, {"", 0.f, 0.f}};
  for (const auto& [act, alpha, beta] : activations) {
    const Attributes a = attrs({{"pads", ints{1, 1, 1, 1}},
                                {"activation", act},
                                {"activation_alpha", alpha},
                                {"activation_beta", beta}});
    cases.push_back({"FusedConv " + (act.empty() ? std::string("none") : act),
                     "FusedConv",
                     {fx, fw, Shape{16}},
                     a,
                     {1, 2}});
    cases.push_back({"FusedConv " + (act.empty() ? std::string("none") : act) + " + residual",
                     "FusedConv",
                     {fx, fw, Shape{16}, Shape{2, 16, 20, 20}},
                     a,
                     {1, 2}});
  }
  // Channels-last FusedConv (X [N,H,W,C], W [K,kh,kw,C]) through cuDNN, and the direct kernel for
  // few input channels (pinned with kestrel_kernel, in both layouts, with every epilogue part).
  const Attributes nhwc_3x3 = attrs({{"pads", ints{1, 1, 1, 1}},
                                     {"activation", std::string("Silu")},
                                     {"channels_last", int64_t{1}},
                                     {"kestrel_kernel", std::string("cudnn")}});
  cases.push_back({"FusedConv NHWC 3x3 Silu (cuDNN)",
                   "FusedConv",
                   {Shape{2, 20, 20, 16}, Shape{32, 3, 3, 16}, Shape{32}},
                   nhwc_3x3,
                   {1, 2}});
  cases.push_back({"FusedConv NHWC 3x3 Silu + residual (cuDNN)",
                   "FusedConv",
                   {Shape{2, 20, 20, 16}, Shape{32, 3, 3, 16}, Shape{32}, Shape{2, 20, 20, 32}},
                   nhwc_3x3,
                   {1, 2}});
  for (int64_t channels_last : {0, 1}) {
    const std::string layout = channels_last ? "NHWC" : "NCHW";
    auto nchw_or_nhwc = [&](int64_t n, int64_t c, int64_t h, int64_t w) {
      return channels_last ? Shape{n, h, w, c} : Shape{n, c, h, w};
    };
    const Attributes stem = attrs({{"pads", ints{2, 2, 2, 2}},
                                   {"strides", ints{2, 2}},
                                   {"activation", std::string("Silu")},
                                   {"channels_last", channels_last},
                                   {"kestrel_kernel", std::string("direct")}});
    cases.push_back({"FusedConv 6x6/2 stem direct " + layout,
                     "FusedConv",
                     {nchw_or_nhwc(2, 3, 64, 64), nchw_or_nhwc(16, 3, 6, 6), Shape{16}},
                     stem,
                     {1, 2}});
    cases.push_back({"FusedConv 6x6/2 stem direct + residual " + layout,
                     "FusedConv",
                     {nchw_or_nhwc(2, 3, 64, 64), nchw_or_nhwc(32, 3, 6, 6), Shape{32},
                      nchw_or_nhwc(2, 32, 32, 32)},
                     stem,
                     {1, 2}});
    const Attributes small = attrs({{"pads", ints{1, 0, 1, 0}},
                                    {"activation", std::string("LeakyRelu")},
                                    {"activation_alpha", 0.1f},
                                    {"channels_last", channels_last},
                                    {"kestrel_kernel", std::string("direct")}});
    cases.push_back({"FusedConv 3x2 1->48 direct no bias " + layout,
                     "FusedConv",
                     {nchw_or_nhwc(1, 1, 19, 23), nchw_or_nhwc(48, 1, 3, 2)},
                     small,
                     {1}});
  }
  return cases;
}

class CudaOpsTest : public ::testing::TestWithParam<DType> {};

TEST_P(CudaOpsTest, EveryKernelMatchesTheCpuReference) {
  StatusOr<std::unique_ptr<runtime::Backend>> cuda = runtime::create_cuda_backend(0);
  if (!cuda.ok()) GTEST_SKIP() << "no GPU here (" << cuda.status() << "): run on the GPU machine";
  std::unique_ptr<runtime::Backend> cpu = runtime::create_cpu_backend({.reference_only = true});
  const DType dtype = GetParam();
  const double tolerance = dtype == DType::kFloat32 ? 1e-5 : 2e-3;
  std::mt19937 rng(2026);
  if (g_perf) fmt::print("{:<44} {:>10}\n", "case", "GPU ms");
  for (const OpCase& c : all_cases()) {
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < c.shapes.size(); ++i) {
      if (i < c.fixed.size() && c.fixed[i].defined())
        inputs.push_back(c.fixed[i]);
      else if (c.op == "Resize" && i == 1)
        inputs.push_back(Tensor());  // omitted roi
      else
        inputs.push_back(random_tensor(c.shapes[i], dtype, rng, c.positive));
    }
    if (c.op == "Clip") {  // min < max, in the input's type
      inputs[1] = random_tensor(Shape{}, dtype, rng, false);
      inputs[2] = random_tensor(Shape{}, dtype, rng, false);
      if (inputs[1].to_double_vector()[0] > inputs[2].to_double_vector()[0])
        std::swap(inputs[1], inputs[2]);
    }
    const std::string label = fmt::format("{} ({})", c.name, dtype_name(dtype));
    StatusOr<OpRun> want = run_on(*cpu, c, inputs, 1);
    ASSERT_TRUE(want.ok()) << label << ": " << want.status();
    StatusOr<OpRun> got = run_on(**cuda, c, inputs, g_perf ? 21 : 1);
    ASSERT_TRUE(got.ok()) << label << ": " << got.status();
    ASSERT_EQ(got->outputs.size(), want->outputs.size()) << label;
    for (size_t k = 0; k < got->outputs.size(); ++k) {
      ASSERT_EQ(got->outputs[k].shape(), want->outputs[k].shape()) << label;
      ASSERT_EQ(got->outputs[k].dtype(), want->outputs[k].dtype()) << label;
      EXPECT_LT(relative_l2(got->outputs[k], want->outputs[k]), tolerance)
          << label << " output " << k;
    }
    if (g_perf) fmt::print("{:<44} {:>10.4f}\n", label, got->median_ms);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaOpsTest, ::testing::Values(DType::kFloat32, DType::kFloat16),
                         [](const ::testing::TestParamInfo<DType>& p) {
                           return std::string(dtype_name(p.param));
                         });

}  // namespace
}  // namespace kestrel
