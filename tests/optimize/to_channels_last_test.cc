// to_channels_last (optimize/to_channels_last.h): the graphs before and after on small cases (conv
// chains, a region feeding a Reshape, Concat/Split axes, elementwise constants, trimming, the
// transpose cleanup, pools, Resize, global pools, 1-D and 3-D convolutions), and the rewritten
// graph computing exactly what the original computes on the CPU reference kernels, also for
// random small graphs.
#include "kestrel/optimize/to_channels_last.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>

#include "kestrel/engine/engine.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"
#include "kestrel/optimize/fuse_conv_activation.h"

namespace kestrel::optimize {
namespace {

using ints = std::vector<int64_t>;

// Random non-zero values in [-2, -0.5] U [0.5, 2].
Tensor random(Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.5f, 2.0f);
  std::vector<float> v(static_cast<size_t>(shape.num_elements()));
  for (float& x : v) x = (rng() % 2 ? 1.0f : -1.0f) * dist(rng);
  return Tensor::from_vector<float>(std::move(shape), v);
}

Attributes attrs(std::initializer_list<std::pair<std::string, AttributeValue>> list) {
  Attributes a;
  for (const auto& [name, value] : list) a.set(name, value);
  return a;
}

// Small graphs, built one node at a time.
class Builder {
 public:
  Builder() : g_(std::make_unique<ir::Graph>()) { g_->opset_version = 21; }

  ir::Value* input(const std::string& name, Shape shape) {
    feeds_[name] = random(shape, seed_++);
    return g_->add_input(name, {DType::kFloat32, ir::SymShape::from(shape)});
  }
  ir::Value* constant(Tensor t) { return g_->add_constant(g_->unique_name("c"), std::move(t)); }
  ir::Value* weights(Shape shape) { return constant(random(std::move(shape), seed_++)); }
  ir::Node* node(const std::string& op, std::vector<ir::Value*> inputs, Attributes a = {},
                 size_t outputs = 1) {
    return g_->add_node(op, std::move(inputs), outputs, std::move(a));
  }
  ir::Value* op(const std::string& op, std::vector<ir::Value*> inputs, Attributes a = {}) {
    return node(op, std::move(inputs), std::move(a))->output(0);
  }
  // A 3x3 (or k x k) convolution with padding k/2 and a bias.
  ir::Value* conv(ir::Value* x, int64_t in, int64_t out, int64_t k = 3, int64_t stride = 1,
                  int64_t group = 1) {
    return op("Conv", {x, weights({out, in / group, k, k}), weights({out})},
              attrs({{"pads", ints{k / 2, k / 2, k / 2, k / 2}},
                     {"strides", ints{stride, stride}},
                     {"group", group}}));
  }
  void output(ir::Value* v) { g_->add_output(v); }

  ir::Graph& graph() { return *g_; }
  const std::map<std::string, Tensor>& feeds() const { return feeds_; }

 private:
  std::unique_ptr<ir::Graph> g_;
  std::map<std::string, Tensor> feeds_;
  uint32_t seed_ = 1;
};

std::vector<Tensor> run(const ir::Graph& g, const std::map<std::string, Tensor>& feeds) {
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::Engine::create(g.clone(), {.backend = "cpu", .cpu_reference_only = true});
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return {};
  StatusOr<std::vector<Tensor>> out = (*e)->run(feeds);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::vector<Tensor>();
}

// Runs the pass as the optimizer does (types annotated before, checked after) and checks that the
// result computes exactly what the original did. Returns the pass's count.
int convert(Builder& b) {
  ir::Graph& g = b.graph();
  auto evaluator = engine::make_cpu_evaluator();
  Status s = ir::annotate_symbolic_shapes(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  const std::unique_ptr<ir::Graph> before = g.clone();
  StatusOr<int> count = to_channels_last(g);
  EXPECT_TRUE(count.ok()) << count.status();
  // The pass keeps types consistent by itself: re-inference must agree with them.
  std::map<const ir::Value*, std::string> claimed;
  for (const ir::Value* v : g.values()) claimed[v] = v->type().to_string();
  s = ir::annotate_symbolic_shapes(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  for (const ir::Value* v : g.values()) {
    EXPECT_EQ(claimed[v], v->type().to_string()) << v->name();
  }
  s = ir::verify_graph(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  // Same interface, same numbers (the reference kernels compute channels-last exactly as NCHW).
  EXPECT_EQ(g.outputs().size(), before->outputs().size());
  for (size_t i = 0; i < g.outputs().size() && i < before->outputs().size(); ++i) {
    EXPECT_EQ(g.outputs()[i]->name(), before->outputs()[i]->name());
    EXPECT_EQ(g.outputs()[i]->type().to_string(), before->outputs()[i]->type().to_string());
  }
  const std::vector<Tensor> want = run(*before, b.feeds()), got = run(g, b.feeds());
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    EXPECT_EQ(got[i].shape(), want[i].shape()) << "output " << i;
    EXPECT_EQ(got[i].to_double_vector(), want[i].to_double_vector()) << "output " << i;
  }
  return count.ok() ? *count : -1;
}

int count_ops(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const ir::Node* node : g.nodes()) n += node->op_type() == op;
  return n;
}

std::vector<const ir::Node*> nodes_of(const ir::Graph& g, const std::string& op) {
  std::vector<const ir::Node*> out;
  for (const ir::Node* node : g.nodes()) {
    if (node->op_type() == op) out.push_back(node);
  }
  return out;
}

TEST(ToChannelsLastTest, ConvChainGetsOneTransposeInAndOneOut) {
  Builder b;
  ir::Value* x = b.input("x", {2, 3, 12, 10});
  ir::Value* y = b.conv(x, 3, 8, 3, 2);
  y = b.op("Relu", {y});
  y = b.conv(y, 8, 8, 3, 1, 8);  // depthwise
  ir::Value* s = b.op("Sigmoid", {y});
  y = b.op("Mul", {y, s});
  y = b.conv(y, 8, 6, 1);
  b.output(y);
  ASSERT_EQ(fuse_conv_activation(b.graph()).value(), 2);
  EXPECT_EQ(convert(b), 3);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(count_ops(g, "Conv"), 0);
  ASSERT_EQ(count_ops(g, "FusedConv"), 3);
  const std::vector<const ir::Node*> t = nodes_of(g, "Transpose");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0]->attrs().get_ints("perm"), (ints{0, 2, 3, 1}));
  EXPECT_TRUE(t[0]->input(0)->is_graph_input());
  EXPECT_EQ(t[1]->attrs().get_ints("perm"), (ints{0, 3, 1, 2}));
  EXPECT_TRUE(t[1]->output(0)->is_graph_output());
  for (const ir::Node* c : nodes_of(g, "FusedConv")) {
    EXPECT_EQ(c->attrs().get_int("channels_last", 0), 1);
  }
  // Weights KCRS -> KRSC at build time.
  const ir::Node* first = t[0]->output(0)->uses()[0].node;
  EXPECT_EQ(first->output(0)->type().to_string(), "float32[2,6,5,8]");
  const ir::Node* depthwise = first->output(0)->uses()[0].node;
  EXPECT_EQ(depthwise->input(1)->constant().shape(), (Shape{8, 3, 3, 1}));
  EXPECT_EQ(t[1]->input(0)->producer()->input(1)->constant().shape(), (Shape{6, 1, 1, 8}));
  EXPECT_EQ(g.outputs()[0]->type().to_string(), "float32[2,6,6,5]");
  // Idempotent: nothing left to convert.
  EXPECT_EQ(to_channels_last(b.graph()).value(), 0);
}

TEST(ToChannelsLastTest, RegionFeedingAReshapeGetsATransposeBack) {
  Builder b;
  ir::Value* x = b.input("x", {1, 4, 6, 6});
  ir::Value* y = b.conv(x, 4, 6, 1);
  ir::Value* r =
      b.op("Reshape", {y, b.constant(Tensor::from_vector<int64_t>({5}, {1, 2, 3, 6, 6}))});
  b.output(b.op("Transpose", {r}, attrs({{"perm", ints{0, 1, 3, 4, 2}}})));
  b.output(y);  // also an output: shares the transpose back
  EXPECT_EQ(convert(b), 1);
  const ir::Graph& g = b.graph();
  const ir::Node* reshape = nodes_of(g, "Reshape")[0];
  const ir::Node* back = reshape->input(0)->producer();
  ASSERT_EQ(back->op_type(), "Transpose");
  EXPECT_EQ(back->attrs().get_ints("perm"), (ints{0, 3, 1, 2}));
  EXPECT_EQ(back->input(0)->producer()->op_type(), "FusedConv");
  EXPECT_EQ(back->output(0), g.outputs()[1]);
  EXPECT_EQ(count_ops(g, "Transpose"), 3);  // in, back, and the model's own
}

TEST(ToChannelsLastTest, TheTransposeBackMergesWithADetectionHeadsTranspose) {
  // YOLO's head: [N,3*5,H,W] -> Reshape [N,3,5,H,W] -> Transpose [N,3,H,W,5]. Channels-last, the
  // transpose back moves after the Reshape ([N,H,W,15] -> [N,H,W,3,5]) and merges with the
  // model's: one transpose, as before the pass.
  Builder b;
  ir::Graph& g = b.graph();
  ir::Value* x =
      g.add_input("x", {DType::kFloat32, ir::SymShape({ir::SymDim::symbol("batch"), 4, 6, 5})});
  ir::Value* head = b.conv(x, 4, 15, 1);
  ir::Value* r =
      b.op("Reshape", {head, b.constant(Tensor::from_vector<int64_t>({5}, {0, 3, 5, 6, 5}))});
  b.output(b.op("Sigmoid", {b.op("Transpose", {r}, attrs({{"perm", ints{0, 1, 3, 4, 2}}}))}));
  auto evaluator = engine::make_cpu_evaluator();
  ASSERT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
  const std::unique_ptr<ir::Graph> before = g.clone();
  EXPECT_EQ(to_channels_last(g).value(), 1);
  ASSERT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
  EXPECT_EQ(g.outputs()[0]->type().to_string(), "float32[batch,3,6,5,5]");
  const std::vector<const ir::Node*> t = nodes_of(g, "Transpose");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1]->attrs().get_ints("perm"), (ints{0, 3, 1, 2, 4}));
  const ir::Node* reshape = t[1]->input(0)->producer();
  ASSERT_EQ(reshape->op_type(), "Reshape");
  EXPECT_EQ(reshape->input(0)->producer()->op_type(), "FusedConv");
  EXPECT_EQ(reshape->input(1)->constant().to_double_vector(),
            (std::vector<double>{-1, 6, 5, 3, 5}));
  EXPECT_EQ(reshape->output(0)->type().to_string(), "float32[batch,6,5,3,5]");
  EXPECT_TRUE(ir::verify_graph(g, evaluator.get()).ok());
  const std::map<std::string, Tensor> feeds = {{"x", random({2, 4, 6, 5}, 3)}};
  const std::vector<Tensor> want = run(*before, feeds), got = run(g, feeds);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(want.size(), 1u);
  EXPECT_EQ(got[0].to_double_vector(), want[0].to_double_vector());
}

TEST(ToChannelsLastTest, ConcatAndSplitAxesMoveWithTheChannels) {
  Builder b;
  ir::Value* x = b.input("x", {2, 4, 8, 8});
  ir::Value* a = b.conv(x, 4, 4);
  ir::Value* c = b.conv(x, 4, 6);
  ir::Value* cat = b.op("Concat", {a, c}, attrs({{"axis", int64_t{1}}}));
  ir::Node* split = b.node("Split", {cat, b.constant(Tensor::from_vector<int64_t>({2}, {3, 7}))},
                           attrs({{"axis", int64_t{-3}}}), 2);
  ir::Value* rows =
      b.op("Concat", {split->output(0), b.conv(x, 4, 3)}, attrs({{"axis", int64_t{2}}}));
  b.output(b.conv(rows, 3, 2));
  b.output(b.conv(split->output(1), 7, 2));
  EXPECT_EQ(convert(b), 8);
  const ir::Graph& g = b.graph();
  const std::vector<const ir::Node*> concats = nodes_of(g, "Concat");
  ASSERT_EQ(concats.size(), 2u);
  EXPECT_EQ(concats[0]->attrs().get_int("axis", 0), -1);
  EXPECT_EQ(concats[1]->attrs().get_int("axis", 0), 1);  // H
  EXPECT_EQ(nodes_of(g, "Split")[0]->attrs().get_int("axis", 0), -1);
  EXPECT_EQ(count_ops(g, "Transpose"), 3);  // one in (shared by three convs), two out
}

TEST(ToChannelsLastTest, ElementwiseConstantsArePermuted) {
  Builder b;
  ir::Value* x = b.input("x", {1, 5, 4, 6});
  ir::Value* y = b.conv(x, 5, 5);
  y = b.op("Mul", {y, b.weights({1, 5, 1, 1})});
  y = b.op("Add", {b.weights({5, 1, 1}), y});
  y = b.op("Sub", {y, b.constant(Tensor::scalar<float>(0.25f))});
  y = b.op("Div", {y, b.weights({6})});  // broadcasts along W
  y = b.op("Clip",
           {y, b.constant(Tensor::scalar<float>(-1.f)), b.constant(Tensor::scalar<float>(2.f))});
  b.output(b.conv(y, 5, 3));
  EXPECT_EQ(convert(b), 7);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(nodes_of(g, "Mul")[0]->input(1)->constant().shape(), (Shape{1, 1, 1, 5}));
  EXPECT_EQ(nodes_of(g, "Add")[0]->input(0)->constant().shape(), (Shape{1, 1, 1, 5}));
  EXPECT_EQ(nodes_of(g, "Sub")[0]->input(1)->constant().shape(), Shape{});
  EXPECT_EQ(nodes_of(g, "Div")[0]->input(1)->constant().shape(), (Shape{1, 1, 6, 1}));
  EXPECT_EQ(count_ops(g, "Transpose"), 2);
}

TEST(ToChannelsLastTest, ElementwiseWithAnOutsideTensorIsTrimmed) {
  // Add(conv, reshaped input) read by a graph output: converting the Add would need a transpose
  // for the other operand and one for the output; leaving it, one for the conv's output.
  Builder b;
  ir::Value* x = b.input("x", {1, 4, 6, 6});
  ir::Value* z = b.input("z", {1, 144});
  ir::Value* r = b.op("Reshape", {z, b.constant(Tensor::from_vector<int64_t>({4}, {1, 4, 6, 6}))});
  b.output(b.op("Add", {b.conv(x, 4, 4), r}));
  EXPECT_EQ(convert(b), 1);
  EXPECT_EQ(count_ops(b.graph(), "Transpose"), 2);
  EXPECT_EQ(nodes_of(b.graph(), "Add")[0]->input(0)->producer()->op_type(), "Transpose");
}

TEST(ToChannelsLastTest, ElementwiseWithoutAConvIsLeftAlone) {
  Builder b;
  ir::Value* x = b.input("x", {1, 4, 6, 6});
  b.output(b.op("Add", {b.op("Relu", {x}), b.weights({1, 4, 1, 1})}));
  EXPECT_EQ(convert(b), 0);
  EXPECT_EQ(count_ops(b.graph(), "Transpose"), 0);
}

TEST(ToChannelsLastTest, InverseTransposesCancel) {
  // The model itself wants NHWC at the end: its Transpose and the one back cancel.
  Builder b;
  ir::Value* x = b.input("x", {1, 4, 6, 6});
  ir::Value* y = b.conv(b.conv(x, 4, 8), 8, 8);
  b.output(b.op("Transpose", {y}, attrs({{"perm", ints{0, 2, 3, 1}}})));
  EXPECT_EQ(convert(b), 2);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(count_ops(g, "Transpose"), 1);
  EXPECT_EQ(g.outputs()[0]->producer()->op_type(), "FusedConv");
  // A Transpose that is not an inverse merges into one with the composed permutation.
  Builder c;
  x = c.input("x", {1, 4, 6, 5});
  c.output(c.op("Transpose", {c.conv(x, 4, 8)}, attrs({{"perm", ints{0, 3, 2, 1}}})));
  EXPECT_EQ(convert(c), 1);
  const std::vector<const ir::Node*> t = nodes_of(c.graph(), "Transpose");
  ASSERT_EQ(t.size(), 2u);
  // [N,H,W,C] -> (0,3,1,2) -> [N,C,H,W] -> (0,3,2,1) -> [N,W,H,C] = (0,2,1,3) of [N,H,W,C].
  EXPECT_EQ(t[1]->attrs().get_ints("perm"), (ints{0, 2, 1, 3}));
}

TEST(ToChannelsLastTest, PoolsResizeAndGlobalPools) {
  Builder b;
  ir::Value* x = b.input("x", {2, 3, 9, 7});
  ir::Value* y = b.conv(x, 3, 4);
  ir::Value* m = b.op("MaxPool", {y},
                      attrs({{"kernel_shape", ints{3, 3}},
                             {"strides", ints{2, 2}},
                             {"pads", ints{1, 0, 1, 1}},
                             {"ceil_mode", int64_t{1}}}));
  ir::Value* a = b.op("AveragePool", {y},
                      attrs({{"kernel_shape", ints{2, 3}},
                             {"strides", ints{2, 2}},
                             {"pads", ints{1, 1, 1, 1}},
                             {"count_include_pad", int64_t{1}}}));
  ir::Value* cat = b.op("Concat", {m, a}, attrs({{"axis", int64_t{1}}}));
  ir::Value* up =
      b.op("Resize", {cat, nullptr, b.constant(Tensor::from_vector<float>({4}, {1, 1, 2, 3}))},
           attrs({{"mode", std::string("nearest")}}));
  ir::Value* lin =
      b.op("Resize", {cat, nullptr, nullptr, b.constant(Tensor::from_vector<int64_t>({2}, {7, 4}))},
           attrs({{"mode", std::string("linear")}, {"axes", ints{3, -2}}}));
  b.output(b.conv(up, 8, 2));
  b.output(b.op("GlobalAveragePool", {b.conv(lin, 8, 3)}));
  b.output(b.op("GlobalMaxPool", {lin}));
  EXPECT_EQ(convert(b), 10);
  const ir::Graph& g = b.graph();
  for (const char* pool : {"MaxPool", "AveragePool"}) {
    EXPECT_EQ(nodes_of(g, pool)[0]->attrs().get_int("kestrel_channels_last", 0), 1) << pool;
  }
  const std::vector<const ir::Node*> resizes = nodes_of(g, "Resize");
  ASSERT_EQ(resizes.size(), 2u);
  EXPECT_EQ(resizes[0]->input(2)->constant().to_double_vector(), (std::vector<double>{1, 2, 3, 1}));
  EXPECT_EQ(resizes[1]->attrs().get_ints("axes"), (ints{2, 1}));
  EXPECT_EQ(count_ops(g, "GlobalAveragePool") + count_ops(g, "GlobalMaxPool"), 0);
  EXPECT_EQ(count_ops(g, "ReduceMean"), 1);
  EXPECT_EQ(count_ops(g, "ReduceMax"), 1);
  // One in; out: the conv's output, and the two pooled [N,1,1,C] results.
  EXPECT_EQ(count_ops(g, "Transpose"), 4);
}

TEST(ToChannelsLastTest, OneAndThreeSpatialAxes) {
  Builder b;
  ir::Value* x1 = b.input("x1", {2, 3, 11});
  ir::Value* y1 =
      b.op("Conv", {x1, b.weights({4, 3, 3}), b.weights({4})}, attrs({{"pads", ints{1, 1}}}));
  y1 = b.op("MaxPool", {y1}, attrs({{"kernel_shape", ints{2}}, {"strides", ints{2}}}));
  b.output(b.op("Conv", {y1, b.weights({2, 4, 1})}));
  ir::Value* x3 = b.input("x3", {1, 2, 4, 5, 3});
  ir::Value* y3 = b.op("Conv", {x3, b.weights({4, 2, 2, 3, 1}), b.weights({4})},
                       attrs({{"strides", ints{1, 2, 1}}}));
  b.output(b.op("AveragePool", {y3}, attrs({{"kernel_shape", ints{2, 2, 2}}})));
  EXPECT_EQ(convert(b), 5);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(count_ops(g, "Transpose"), 4);
  for (const ir::Node* t : nodes_of(g, "Transpose")) {
    const ints perm = t->attrs().get_ints("perm");
    EXPECT_TRUE(perm == (ints{0, 2, 1}) || perm == (ints{0, 2, 3, 4, 1}) ||
                perm == (ints{0, 4, 1, 2, 3}))
        << t->describe();
  }
}

TEST(ToChannelsLastTest, ConvWithComputedWeightsStaysChannelsFirst) {
  Builder b;
  ir::Value* x = b.input("x", {1, 2, 5, 5});
  ir::Value* w = b.input("w", {3, 2, 3, 3});
  b.output(b.op("Conv", {x, w}));
  EXPECT_EQ(convert(b), 0);
  EXPECT_EQ(count_ops(b.graph(), "Conv"), 1);
}

TEST(ToChannelsLastTest, SymbolicBatch) {
  Builder b;
  ir::Graph& g = b.graph();
  ir::Value* x =
      g.add_input("x", {DType::kFloat32, ir::SymShape({ir::SymDim::symbol("batch"), 3, 8, 8})});
  b.output(b.conv(b.conv(x, 3, 4, 3, 2), 4, 4));
  auto evaluator = engine::make_cpu_evaluator();
  ASSERT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
  EXPECT_EQ(to_channels_last(g).value(), 2);
  ASSERT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
  EXPECT_EQ(g.outputs()[0]->type().to_string(), "float32[batch,4,4,4]");
  const std::vector<Tensor> out = run(g, {{"x", random({3, 3, 8, 8}, 7)}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shape(), (Shape{3, 4, 4, 4}));
}

// ---- random graphs ----

// A random graph of convolutions, activations, pools, resizes, concatenations, splits, residual
// additions, per-channel scales and the odd unsupported consumer, over 4-D activations.
void build_random(Builder& b, std::mt19937& rng) {
  struct Act {
    ir::Value* v;
    int64_t c, h, w;
  };
  auto pick = [&](int64_t n) { return static_cast<int64_t>(rng() % static_cast<uint32_t>(n)); };
  std::vector<Act> acts;
  acts.push_back({b.input("x", {2, 3, 8 + pick(5), 8 + pick(5)}), 3, 0, 0});
  acts[0].h = acts[0].v->shape()[2].value();
  acts[0].w = acts[0].v->shape()[3].value();
  const int steps = 6 + static_cast<int>(pick(8));
  for (int step = 0; step < steps; ++step) {
    const Act a = acts[static_cast<size_t>(pick(static_cast<int64_t>(acts.size())))];
    switch (pick(10)) {
      case 0:
      case 1: {  // convolution, sometimes strided or grouped
        const int64_t k = pick(2) ? 3 : 1, stride = a.h > 4 && pick(3) == 0 ? 2 : 1;
        const int64_t group = a.c % 2 == 0 && pick(3) == 0 ? 2 : 1;
        const int64_t out = 2 * (1 + pick(3));
        acts.push_back({b.conv(a.v, a.c, out, k, stride, group), out, (a.h - 1) / stride + 1,
                        (a.w - 1) / stride + 1});
        break;
      }
      case 2: {  // activation
        const char* ops[] = {"Relu", "Sigmoid", "HardSwish"};
        acts.push_back({b.op(ops[pick(3)], {a.v}), a.c, a.h, a.w});
        break;
      }
      case 3: {  // pool
        const bool max = pick(2);
        acts.push_back({b.op(max ? "MaxPool" : "AveragePool", {a.v},
                             attrs({{"kernel_shape", ints{3, 3}}, {"pads", ints{1, 1, 1, 1}}})),
                        a.c, a.h, a.w});
        break;
      }
      case 4: {  // nearest upsampling
        if (a.h > 12) break;
        acts.push_back(
            {b.op("Resize",
                  {a.v, nullptr, b.constant(Tensor::from_vector<float>({4}, {1, 1, 2, 2}))},
                  attrs({{"mode", std::string("nearest")}})),
             a.c, 2 * a.h, 2 * a.w});
        break;
      }
      case 5: {  // concatenation with another activation of the same size
        for (const Act& o : acts) {
          if (o.v != a.v && o.h == a.h && o.w == a.w) {
            acts.push_back(
                {b.op("Concat", {a.v, o.v}, attrs({{"axis", int64_t{1}}})), a.c + o.c, a.h, a.w});
            break;
          }
        }
        break;
      }
      case 6: {  // split along the channels
        if (a.c < 2) break;
        ir::Node* s =
            b.node("Split", {a.v}, attrs({{"axis", int64_t{1}}, {"num_outputs", int64_t{2}}}), 2);
        const int64_t first = (a.c + 1) / 2;
        acts.push_back({s->output(0), first, a.h, a.w});
        acts.push_back({s->output(1), a.c - first, a.h, a.w});
        break;
      }
      case 7: {  // residual addition
        for (const Act& o : acts) {
          if (o.v != a.v && o.c == a.c && o.h == a.h && o.w == a.w) {
            acts.push_back({b.op("Add", {a.v, o.v}), a.c, a.h, a.w});
            break;
          }
        }
        break;
      }
      case 8:  // per-channel scale
        acts.push_back({b.op("Mul", {a.v, b.weights({1, a.c, 1, 1})}), a.c, a.h, a.w});
        break;
      case 9: {  // an unsupported consumer, whose result flows on
        ir::Value* flat = b.op(
            "Reshape", {a.v, b.constant(Tensor::from_vector<int64_t>({2}, {2, a.c * a.h * a.w}))});
        acts.push_back(
            {b.op("Reshape", {b.op("Neg", {flat}),
                              b.constant(Tensor::from_vector<int64_t>({4}, {2, a.c, a.h, a.w}))}),
             a.c, a.h, a.w});
        break;
      }
    }
  }
  // The last activation and an earlier one are the outputs.
  b.output(acts.back().v);
  if (acts.size() > 2) b.output(acts[acts.size() / 2].v);
}

TEST(ToChannelsLastTest, RandomGraphsComputeTheSame) {
  int converted = 0;
  // Which kinds of node ran channels-last somewhere, told by their attributes and constants.
  std::set<std::string> seen;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    Builder b;
    build_random(b, rng);
    if (seed % 2 == 0) {
      ASSERT_TRUE(fuse_conv_activation(b.graph()).ok());
    }
    converted += convert(b);
    if (::testing::Test::HasFailure()) break;
    for (const ir::Node* n : b.graph().nodes()) {
      const Attributes& a = n->attrs();
      if (a.get_int("channels_last", 0) == 1 || a.get_int("kestrel_channels_last", 0) == 1 ||
          (n->op_type() != "Transpose" && a.get_int("axis", 0) == -1) ||
          (n->op_type() == "Resize" && n->input(2)->constant().to_double_vector().back() == 1) ||
          (n->op_type() == "Mul" && n->input(1)->has_constant() &&
           n->input(1)->constant().shape()[1] == 1)) {
        seen.insert(n->op_type());
      }
    }
  }
  EXPECT_GT(converted, 40);
  EXPECT_EQ(seen, (std::set<std::string>{"AveragePool", "Concat", "FusedConv", "MaxPool", "Mul",
                                         "Resize", "Split"}));
}

}  // namespace
}  // namespace kestrel::optimize
