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
  std::vector<Tensor> fixed = {};    // inputs given explicitly (index-aligned; undefined: random)
  bool positive = false;             // random inputs in (0.1, 2) instead of (-2, 2)
  std::vector<DType> dtypes = {};    // the element types it runs in (empty: every one)
  std::vector<size_t> omitted = {};  // optional inputs left out (before later ones given)
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
  // FusedConcat (optimize/fuse_concat.h): parts with their convolution epilogues. Channels-last
  // C3 shapes take the 16-byte path; odd widths, NCHW and more than 8 parts (two launches) the
  // others.
  auto fused_concat = [](int64_t axis, std::vector<std::string> acts, ints biases, ints residuals) {
    const size_t n = acts.size();
    return attrs({{"axis", axis},
                  {"num_parts", static_cast<int64_t>(n)},
                  {"activations", acts},
                  {"activation_alpha", std::vector<float>(n, 0.1f)},
                  {"activation_beta", std::vector<float>(n, 0.6f)},
                  {"bias_inputs", biases},
                  {"residual_inputs", residuals}});
  };
  cases.push_back(
      {"FusedConcat C3 NHWC",
       "FusedConcat",
       {Shape{2, 10, 12, 32}, Shape{2, 10, 12, 32}, Shape{32}, Shape{2, 10, 12, 32}, Shape{32}},
       fused_concat(3, {"Silu", "Silu"}, {2, 4}, {3, -1}),
       {2, 4}});
  cases.push_back({"FusedConcat odd widths",
                   "FusedConcat",
                   {Shape{2, 5, 7, 3}, Shape{2, 5, 7, 6}, Shape{2, 5, 7, 5}, Shape{6}},
                   fused_concat(-1, {"", "LeakyRelu", "HardSwish"}, {-1, 3, -1}, {-1, -1, -1}),
                   {3}});
  cases.push_back({"FusedConcat NCHW",
                   "FusedConcat",
                   {Shape{2, 3, 6, 8}, Shape{2, 5, 6, 8}, Shape{3}, Shape{5}, Shape{2, 5, 6, 8}},
                   fused_concat(1, {"Relu", "Clip"}, {2, 3}, {-1, 4}),
                   {2, 3}});
  {
    std::vector<Shape> shapes;
    std::vector<std::string> acts;
    ints biases, residuals;
    const std::vector<std::string> kinds = {"Silu", "", "Sigmoid", "HardSigmoid", "Relu"};
    for (int k = 0; k < 10; ++k) {
      shapes.push_back(Shape{3, 4, 4, 8});
      acts.push_back(kinds[static_cast<size_t>(k) % kinds.size()]);
      biases.push_back(10 + k);
      residuals.push_back(-1);
    }
    ints constant;
    for (int k = 0; k < 10; ++k) {
      shapes.push_back(Shape{8});
      constant.push_back(10 + k);
    }
    std::vector<size_t> constants(constant.begin(), constant.end());
    cases.push_back({"FusedConcat 10 parts", "FusedConcat", shapes,
                     fused_concat(3, acts, biases, residuals), constants});
  }
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

  // FusedConv through cuDNN's fused graph (runtime/cuda/conv_fused_graph.h), channels-last:
  // pinned with kestrel_kernel=graph in float16 only (float32 has no graph without kestrel_tf32),
  // over YOLO's kernel sizes, strides and channel counts, batch 1 and 4, with and without bias and
  // residual, every activation the graph expresses; then one unpinned case per activation, which
  // the autotuner decides (both types).
  auto graph_conv = [&](int64_t n, int64_t c, int64_t hw, int64_t k, int64_t kernel, int64_t stride,
                        bool with_bias, bool with_residual, const std::string& act, bool pinned) {
    const int64_t pad = kernel / 2;
    const int64_t out = (hw + 2 * pad - kernel) / stride + 1;
    Attributes a = attrs({{"pads", ints{pad, pad, pad, pad}},
                          {"strides", ints{stride, stride}},
                          {"activation", act},
                          {"activation_alpha", act == "LeakyRelu" ? 0.1f : 0.f},
                          {"activation_beta", act == "Clip" ? 1.5f : 0.f},
                          {"channels_last", int64_t{1}}});
    if (pinned) a.set("kestrel_kernel", std::string("graph"));
    OpCase oc{fmt::format("FusedConv NHWC {}x{}/{} {}->{} n{}{}{} {}{}", kernel, kernel, stride, c,
                          k, n, with_bias ? " bias" : "", with_residual ? " + residual" : "",
                          act.empty() ? "none" : act, pinned ? " (graph)" : " (autotuned)"),
              "FusedConv",
              {Shape{n, hw, hw, c}, Shape{k, kernel, kernel, c}, Shape{k}},
              a,
              {1, 2}};
    if (!with_bias) {
      oc.constants = {1};
      oc.omitted = {2};
    }
    if (with_residual) {
      oc.shapes.push_back(Shape{n, out, out, k});
    } else if (!with_bias) {
      oc.shapes.pop_back();
    }
    if (pinned) oc.dtypes = {DType::kFloat16};
    cases.push_back(std::move(oc));
  };
  graph_conv(4, 16, 20, 32, 3, 1, true, false, "Silu", true);
  graph_conv(4, 32, 20, 32, 3, 1, true, true, "Silu", true);
  graph_conv(1, 32, 21, 64, 3, 2, true, false, "Relu", true);
  graph_conv(4, 64, 16, 128, 3, 2, true, true, "Sigmoid", true);
  graph_conv(1, 64, 12, 64, 3, 1, true, false, "", true);
  graph_conv(1, 16, 12, 16, 3, 1, false, true, "", true);
  graph_conv(4, 32, 12, 48, 3, 1, true, false, "LeakyRelu", true);
  graph_conv(1, 256, 10, 256, 3, 1, true, true, "Silu", true);
  graph_conv(4, 64, 16, 32, 1, 1, true, false, "Silu", true);
  graph_conv(1, 128, 10, 256, 1, 1, true, true, "Silu", true);
  graph_conv(1, 256, 8, 128, 1, 1, false, false, "", true);
  graph_conv(4, 32, 15, 16, 1, 2, true, false, "Relu", true);
  graph_conv(1, 48, 10, 64, 1, 1, true, true, "Clip", true);
  graph_conv(4, 16, 16, 16, 1, 1, false, false, "Sigmoid", true);
  for (const char* act : {"Silu", "Relu", "Sigmoid", ""}) {
    graph_conv(4, 32, 20, 64, 3, 1, true, true, act, false);
  }

  // Data movement (movement.cu, resize.cu, pool.cu): every path, and in float32 and float16 each
  // access width, from 16 bytes down to one element (odd channel counts, unaligned rows).
  auto transpose = [&](std::string name, Shape shape, ints perm) {
    cases.push_back({"Transpose " + name, "Transpose", {shape}, attrs({{"perm", perm}})});
  };
  transpose("NCHW->NHWC C=3 (tiled, long A)", Shape{2, 3, 64, 64}, {0, 2, 3, 1});
  transpose("NHWC->NCHW C=3 (tiled, long B)", Shape{2, 64, 64, 3}, {0, 3, 1, 2});
  transpose("rank 3 (tiled, no batch axis)", Shape{64, 48, 40}, {2, 0, 1});
  transpose("unit axes dropped (tiled)", Shape{1, 70, 1, 90}, {3, 2, 1, 0});
  transpose("rank 6 (tiled fp32, gather fp16)", Shape{2, 3, 40, 2, 3, 36}, {5, 1, 0, 3, 4, 2});
  transpose("rank 6 (gather)", Shape{2, 3, 4, 5, 6, 7}, {5, 3, 1, 0, 4, 2});
  transpose("rows of 85 (gather 4/2 B)", Shape{2, 20, 20, 3, 85}, {0, 3, 1, 2, 4});
  transpose("rows of 8 (gather 16 B)", Shape{2, 3, 4, 8}, {0, 2, 1, 3});
  transpose("rows of 6 (gather 8/4 B)", Shape{3, 5, 6}, {1, 0, 2});
  transpose("rank 5 rows kept", Shape{2, 3, 4, 5, 16}, {3, 1, 0, 2, 4});
  transpose("identity (one copy)", Shape{2, 3, 4}, {0, 1, 2});
  transpose("unit axis moved (one copy)", Shape{2, 1, 3}, {1, 0, 2});
  cases.push_back({"Transpose default perm", "Transpose", {Shape{4, 5, 6}}, {}});
  auto concat = [&](std::string name, std::vector<Shape> shapes, int64_t axis) {
    cases.push_back({"Concat " + name, "Concat", std::move(shapes), attrs({{"axis", axis}})});
  };
  concat("NHWC C=3+6 (2/4 B)", {Shape{2, 5, 7, 3}, Shape{2, 5, 7, 6}}, -1);
  concat("NHWC C=2+4 (8/4 B)", {Shape{2, 6, 6, 2}, Shape{2, 6, 6, 4}}, 3);
  concat("NHWC C=64+64 (16 B)", {Shape{2, 8, 8, 64}, Shape{2, 8, 8, 64}}, -1);
  concat("axis 0", {Shape{3, 4, 5}, Shape{2, 4, 5}}, 0);
  std::vector<Shape> many(35, Shape{2, 3, 4});
  many[7] = Shape{2, 0, 4};  // an empty slice among them
  many[20] = Shape{2, 5, 4};
  concat("35 inputs (two launches)", many, 1);
  auto split = [&](std::string name, Shape shape, int64_t axis, std::vector<int64_t> sizes) {
    const size_t n = sizes.size();
    cases.push_back({"Split " + name,
                     "Split",
                     {shape, Shape{static_cast<int64_t>(n)}},
                     attrs({{"axis", axis}}),
                     {1},
                     n,
                     {Tensor(), Tensor::from_vector<int64_t>({static_cast<int64_t>(n)}, sizes)}});
  };
  split("NHWC 64 -> 32+32 (16 B)", Shape{2, 8, 8, 64}, -1, {32, 32});
  split("odd widths", Shape{2, 5, 7}, 2, {3, 4});
  split("axis 0 with an empty part", Shape{5, 4, 6}, 0, {2, 0, 3});
  cases.push_back({"Split num_outputs",
                   "Split",
                   {Shape{2, 6, 10}},
                   attrs({{"axis", int64_t{1}}, {"num_outputs", int64_t{3}}}),
                   {},
                   3});
  auto resize = [&](std::string name, Shape shape, std::vector<float> scales, Attributes a) {
    cases.push_back({"Resize " + name,
                     "Resize",
                     {shape, Shape{0}, Shape{4}},
                     std::move(a),
                     {2},
                     1,
                     {Tensor(), Tensor(), Tensor::from_vector<float>({4}, scales)}});
  };
  const Attributes yolo_upsample =
      attrs({{"mode", std::string("nearest")},
             {"coordinate_transformation_mode", std::string("asymmetric")},
             {"nearest_mode", std::string("floor")}});
  const Attributes half_pixel = attrs({{"mode", std::string("nearest")}});
  resize("NHWC x2 C=64 (16 B)", Shape{2, 10, 10, 64}, {1, 2, 2, 1}, yolo_upsample);
  resize("NHWC x2 C=3 (4/2 B)", Shape{2, 7, 9, 3}, {1, 2, 2, 1}, yolo_upsample);
  resize("NHWC x1.5 half_pixel C=6 (8/4 B)", Shape{1, 8, 8, 6}, {1, 1.5f, 1.5f, 1}, half_pixel);
  resize("NCHW x2 rows of 14 (runs of 2)", Shape{1, 3, 5, 7}, {1, 1, 2, 2}, yolo_upsample);
  resize("NCHW x1.5 rows of 7 (elements)", Shape{1, 2, 5, 5}, {1, 1, 1.5f, 1.5f}, half_pixel);
  // Coordinates from the fractional output width (scale * input size), as the CPU reference does.
  auto nearest = [&](const char* coordinates, const char* rounding) {
    return attrs({{"mode", std::string("nearest")},
                  {"coordinate_transformation_mode", std::string(coordinates)},
                  {"nearest_mode", std::string(rounding)}});
  };
  resize("NHWC x3.5,x3 align_corners", Shape{1, 11, 9, 5}, {1, 3.5f, 3, 1},
         nearest("align_corners", "floor"));
  resize("NCHW 3->1 pytorch_half_pixel", Shape{1, 2, 3, 4}, {1, 1, 0.4f, 1},
         nearest("pytorch_half_pixel", "round_prefer_ceil"));
  resize("NCHW x1.7,x0.6 half_pixel_symmetric", Shape{1, 2, 5, 7}, {1, 1, 1.7f, 0.6f},
         nearest("half_pixel_symmetric", "round_prefer_floor"));
  resize("NCHW x2 wide (no tables)", Shape{1, 2, 2, 6200}, {1, 1, 2, 2}, yolo_upsample);
  resize("NHWC x2 wide (no tables)", Shape{1, 2, 6200, 4}, {1, 2, 2, 1}, yolo_upsample);
  auto pool = [&](std::string name, const char* op, Shape shape, Attributes a) {
    a.set("kestrel_channels_last", int64_t{1});
    cases.push_back({std::string(op) + " NHWC " + name, op, {shape}, std::move(a)});
  };
  const Attributes sppf =
      attrs({{"kernel_shape", ints{5, 5}}, {"pads", ints{2, 2, 2, 2}}, {"strides", ints{1, 1}}});
  const Attributes strided_ceil = attrs({{"kernel_shape", ints{3, 3}},
                                         {"pads", ints{1, 1, 1, 1}},
                                         {"strides", ints{2, 2}},
                                         {"ceil_mode", int64_t{1}}});
  pool("SPPF 5x5 C=64 (16 B)", "MaxPool", Shape{2, 20, 20, 64}, sppf);
  pool("3x3/2 ceil C=3 (1 lane)", "MaxPool", Shape{2, 9, 11, 3}, strided_ceil);
  pool("3x3/2 ceil C=6 (2 lanes)", "MaxPool", Shape{1, 9, 11, 6}, strided_ceil);
  pool("5x5 C=12 (4 lanes)", "MaxPool", Shape{1, 7, 6, 12}, sppf);
  pool(
      "3x3 dilated C=4", "MaxPool", Shape{1, 12, 12, 4},
      attrs({{"kernel_shape", ints{3, 3}}, {"dilations", ints{2, 2}}, {"pads", ints{1, 2, 2, 1}}}));
  pool("count pads C=8", "AveragePool", Shape{1, 9, 9, 8},
       attrs({{"kernel_shape", ints{3, 3}},
              {"pads", ints{1, 1, 1, 1}},
              {"count_include_pad", int64_t{1}}}));
  pool("3x3/2 ceil C=5", "AveragePool", Shape{2, 9, 9, 5}, strided_ceil);

  // yolov5s at batch 32 (FP16 NHWC engine): what `--perf` reports for the lead's GB/s table.
  transpose("perf: input NCHW->NHWC [32,3,640,640]", Shape{32, 3, 640, 640}, {0, 2, 3, 1});
  transpose("perf: head [32,80,80,3,85]->[32,3,80,80,85]", Shape{32, 80, 80, 3, 85},
            {0, 3, 1, 2, 4});
  concat("perf: 2x[32,80,80,128] axis -1", {Shape{32, 80, 80, 128}, Shape{32, 80, 80, 128}}, -1);
  concat("perf: head outputs axis 1",
         {Shape{32, 19200, 85}, Shape{32, 4800, 85}, Shape{32, 1200, 85}}, 1);
  split("perf: head [32,3,80,80,85] -> 2+2+81", Shape{32, 3, 80, 80, 85}, 4, {2, 2, 81});
  resize("perf: NHWC x2 [32,40,40,256]", Shape{32, 40, 40, 256}, {1, 2, 2, 1}, yolo_upsample);
  resize("perf: NCHW x2 [32,256,40,40]", Shape{32, 256, 40, 40}, {1, 1, 2, 2}, yolo_upsample);
  pool("perf: SPPF 5x5 [32,20,20,256]", "MaxPool", Shape{32, 20, 20, 256}, sppf);

  // FusedElementwise (fused_elementwise.cu): register programs over broadcast inputs; the four-wide
  // path (innermost size a multiple of 4, inputs contiguous or broadcast along it) and the
  // one-element path, 8 and 32 registers, 8 inputs, high ranks.
  auto fused = [&](std::string name, std::vector<Shape> shapes, std::vector<std::string> ops,
                   ints args, std::vector<float> params, std::vector<size_t> constants = {},
                   bool positive = false) {
    Attributes a = attrs({{"ops", std::move(ops)}, {"args", std::move(args)}});
    if (!params.empty()) a.set("params", std::move(params));
    cases.push_back({"FusedElementwise " + name,
                     "FusedElementwise",
                     std::move(shapes),
                     a,
                     std::move(constants),
                     1,
                     {},
                     positive});
  };
  // YOLO's box decoding: xy * 2 + grid, * stride; (wh * 2) ^ 2 * anchors (grid, anchors constant).
  const std::vector<std::string> xy = {"Const", "Mul", "Add", "Const", "Mul"};
  const ints xy_args = {-1, -1, 0, 2, 3, 1, -1, -1, 4, 5};
  const std::vector<std::string> wh = {"Const", "Mul", "Const", "Pow", "Mul"};
  const ints wh_args = {-1, -1, 0, 2, -1, -1, 3, 4, 5, 1};
  fused("YOLO xy", {Shape{2, 3, 80, 80, 2}, Shape{1, 3, 80, 80, 2}}, xy, xy_args,
        {2, 0, 0, 0, 0, 0, 8, 0, 0, 0}, {1});
  fused("YOLO wh", {Shape{2, 3, 40, 40, 2}, Shape{1, 3, 40, 40, 2}}, wh, wh_args,
        {2, 0, 0, 0, 2, 0, 0, 0, 0, 0}, {1}, true);
  // SiLU of a per-channel sum, channels-first (bias broadcast inside each vector) and last.
  const std::vector<std::string> silu = {"Add", "Sigmoid", "Mul"};
  const ints silu_args = {0, 1, 2, -1, 2, 3};
  fused("SiLU + bias NCHW", {Shape{2, 16, 20, 20}, Shape{16, 1, 1}}, silu, silu_args, {}, {1});
  fused("SiLU + bias NHWC", {Shape{2, 20, 20, 16}, Shape{16}}, silu, silu_args, {}, {1});
  // Odd sizes (one element per thread), a scalar input, two-way and high-rank broadcasts.
  fused("odd shape + scalar", {Shape{2, 3, 17, 19}, Shape{2, 3, 17, 19}, Shape{}},
        {"Mul", "Add", "Tanh"}, {0, 1, 3, 2, 4, -1}, {});
  fused("two-way broadcast", {Shape{1, 3, 1, 5}, Shape{2, 1, 4, 1}}, {"Sub", "Abs", "Sqrt"},
        {0, 1, 2, -1, 3, -1}, {});
  fused("rank 6", {Shape{2, 1, 3, 1, 4, 5}, Shape{1, 2, 1, 3, 4, 1}}, {"Mul", "Exp", "HardSwish"},
        {0, 1, 2, -1, 3, -1}, {});
  fused("scalar output", {Shape{}, Shape{1}}, {"Max", "Sigmoid"}, {0, 1, 2, -1}, {});
  // Eight inputs summed.
  std::vector<Shape> eight(8, Shape{2, 3, 8, 8});
  ints sum_args = {0, 1};
  for (int64_t k = 2; k < 8; ++k) sum_args.insert(sum_args.end(), {6 + k, k});
  fused("8 inputs", eight, std::vector<std::string>(7, "Add"), sum_args, {});
  // Every two-operand instruction (positive inputs, for Pow).
  fused("binary instructions", {Shape{4, 8, 33}, Shape{4, 8, 33}},
        {"Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Add"},
        {0, 1, 0, 1, 2, 3, 4, 1, 0, 1, 5, 6, 5, 6, 7, 8}, {}, {}, true);
  // Every one-operand instruction on x, summed: fifteen live values need the 32-register kernel.
  {
    std::vector<std::string> ops = {
        "Abs",       "Const",       "Add",  "Log",     "Sqrt", "Reciprocal",
        "Tanh",      "Exp",         "Neg",  "Sigmoid", "Relu", "LeakyRelu",
        "HardSwish", "HardSigmoid", "Clip", "Floor",   "Ceil", "Round"};
    ints args = {0, -1, -1, -1, 1, 2, 3, -1, 3, -1, 3, -1};  // |x| + 0.5 feeds Log, Sqrt, 1/.
    for (int i = 0; i < 12; ++i) args.insert(args.end(), {0, -1});
    std::vector<float> params(2 * ops.size(), 0.f);
    params[2] = 0.5f;    // Const
    params[22] = 0.1f;   // LeakyRelu's slope
    params[26] = 0.3f;   // HardSigmoid's alpha
    params[27] = 0.4f;   // and beta
    params[28] = -0.5f;  // Clip's min
    params[29] = 0.7f;   // and max
    int64_t acc = 4;     // Log's result
    for (int64_t v = 5; v <= 18; ++v) {
      ops.push_back("Add");
      args.insert(args.end(), {acc, v});
      params.insert(params.end(), {0.f, 0.f});
      acc = static_cast<int64_t>(ops.size());  // N = 1: instruction j is value j + 1
    }
    fused("unary instructions (32 registers)", {Shape{3, 5, 16}}, ops, args, params);
  }
  fused("perf: YOLO xy [32,3,80,80,2]", {Shape{32, 3, 80, 80, 2}, Shape{1, 3, 80, 80, 2}}, xy,
        xy_args, {2, 0, 0, 0, 0, 0, 8, 0, 0, 0}, {1});
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
    if (!c.dtypes.empty() && std::count(c.dtypes.begin(), c.dtypes.end(), dtype) == 0) continue;
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < c.shapes.size(); ++i) {
      if (i < c.fixed.size() && c.fixed[i].defined())
        inputs.push_back(c.fixed[i]);
      else if ((c.op == "Resize" && i == 1) || std::count(c.omitted.begin(), c.omitted.end(), i))
        inputs.push_back(Tensor());  // an omitted optional input
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
