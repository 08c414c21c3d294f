// fuse_concat (optimize/fuse_concat.h): which Concats become FusedConcats and which inputs hand
// over their epilogue, checked on small graphs, NCHW and channels-last; the rewritten graph
// computes what the original does on the CPU reference kernels. FusedConcat's shape rule rejects
// malformed attributes. (yolov5n end to end: model_accuracy_test's FusedConcatModelTest.)
#include "kestrel/optimize/fuse_concat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>

#include "kestrel/engine/engine.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"
#include "kestrel/optimize/fuse_conv_activation.h"
#include "kestrel/optimize/to_channels_last.h"

namespace kestrel::optimize {
namespace {

using ints = std::vector<int64_t>;

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

class Builder {
 public:
  Builder() : g_(std::make_unique<ir::Graph>()) { g_->opset_version = 21; }

  ir::Value* input(const std::string& name, Shape shape) {
    feeds_[name] = random(shape, seed_++);
    return g_->add_input(name, {DType::kFloat32, ir::SymShape::from(shape)});
  }
  ir::Value* weights(Shape shape) {
    return g_->add_constant(g_->unique_name("w"), random(std::move(shape), seed_++));
  }
  ir::Value* op(const std::string& op, std::vector<ir::Value*> inputs, Attributes a = {}) {
    return g_->add_node(op, std::move(inputs), 1, std::move(a))->output(0);
  }
  // A k x k convolution with padding k/2 and a bias.
  ir::Value* conv(ir::Value* x, int64_t in, int64_t out, int64_t k = 3) {
    return op("Conv", {x, weights({out, in, k, k}), weights({out})},
              attrs({{"pads", ints{k / 2, k / 2, k / 2, k / 2}}}));
  }
  // conv then SiLU (x * sigmoid(x)), as YOLO writes it.
  ir::Value* conv_silu(ir::Value* x, int64_t in, int64_t out, int64_t k = 1) {
    ir::Value* y = conv(x, in, out, k);
    return op("Mul", {y, op("Sigmoid", {y})});
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

double relative_l2(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return x.size() == y.size() ? std::sqrt(num / std::max(den, 1e-300)) : 1e9;
}

// Fuses activations and residuals (and optionally goes channels-last) as the optimizer does, runs
// fuse_concat, verifies the result and compares it with the graph before fuse_concat. Returns the
// pass's count.
int rewrite(Builder& b, bool channels_last = false) {
  ir::Graph& g = b.graph();
  auto evaluator = engine::make_cpu_evaluator();
  EXPECT_TRUE(fuse_conv_activation(g).ok());
  Status s = ir::annotate_symbolic_shapes(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(fuse_conv_residual(g).ok());
  if (channels_last) {
    EXPECT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
    EXPECT_TRUE(to_channels_last(g).ok());
  }
  EXPECT_TRUE(g.sort_topologically().ok());
  EXPECT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
  const std::unique_ptr<ir::Graph> before = g.clone();
  StatusOr<int> count = fuse_concat(g);
  EXPECT_TRUE(count.ok()) << count.status();
  s = ir::annotate_symbolic_shapes(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  s = ir::verify_graph(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  const std::vector<Tensor> want = run(*before, b.feeds()), got = run(g, b.feeds());
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    EXPECT_EQ(got[i].shape(), want[i].shape()) << "output " << i;
    EXPECT_LT(relative_l2(got[i], want[i]), 1e-6) << "output " << i;
  }
  return count.ok() ? *count : -1;
}

const ir::Node* only(const ir::Graph& g, const std::string& op) {
  const ir::Node* found = nullptr;
  int n = 0;
  for (const ir::Node* node : g.nodes()) {
    if (node->op_type() == op) {
      found = node;
      ++n;
    }
  }
  EXPECT_EQ(n, 1) << op;
  return found;
}

// YOLOv5's C3 block: concat(bottleneck(cv1(x)) with its residual, cv2(x)), then cv3.
TEST(FuseConcatTest, C3BlockHandsBothEpiloguesToTheConcat) {
  Builder b;
  ir::Value* x = b.input("x", {2, 8, 6, 5});
  ir::Value* a = b.conv_silu(x, 8, 4);
  ir::Value* m = b.op("Add", {a, b.conv_silu(b.conv_silu(a, 4, 4), 4, 4, 3)});
  ir::Value* c = b.op("Concat", {m, b.conv_silu(x, 8, 4)}, attrs({{"axis", int64_t{1}}}));
  b.output(b.conv_silu(c, 8, 8));
  EXPECT_EQ(rewrite(b), 1);
  const ir::Node* fc = only(b.graph(), "FusedConcat");
  ASSERT_NE(fc, nullptr);
  EXPECT_EQ(fc->attrs().get_int("num_parts", 0), 2);
  EXPECT_EQ(fc->attrs().get_strings("activations"), (std::vector<std::string>{"Silu", "Silu"}));
  EXPECT_EQ(fc->attrs().get_ints("bias_inputs"), (ints{2, 4}));
  EXPECT_EQ(fc->attrs().get_ints("residual_inputs"), (ints{3, -1}));
  ASSERT_EQ(fc->num_inputs(), 5u);
  // The bottleneck's shortcut: cv1's output (a FusedConv that keeps its SiLU: it has other uses).
  EXPECT_EQ(fc->input(3)->producer()->attrs().get_string("activation", ""), "Silu");
  EXPECT_EQ(fc->input(3)->uses().size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    const ir::Node* conv = fc->input(k)->producer();
    EXPECT_EQ(conv->op_type(), "FusedConv");
    EXPECT_EQ(conv->num_inputs(), 2u);
    EXPECT_EQ(conv->attrs().get_string("activation", "x"), "");
  }
  // Idempotent.
  EXPECT_EQ(fuse_concat(b.graph()).value(), 0);
}

// SPPF: concat(x, pool(x), pool(pool(x)), ...): x also feeds the pool, so it is copied as is.
TEST(FuseConcatTest, InputsWithOtherConsumersAndNonConvolutionsAreCopied) {
  Builder b;
  ir::Value* x = b.input("x", {1, 4, 7, 7});
  ir::Value* y = b.conv_silu(x, 4, 6);
  const Attributes pool = attrs({{"kernel_shape", ints{5, 5}}, {"pads", ints{2, 2, 2, 2}}});
  ir::Value* p1 = b.op("MaxPool", {y}, pool);
  ir::Value* p2 = b.op("MaxPool", {p1}, pool);
  ir::Value* last = b.conv_silu(x, 4, 2);
  b.output(b.op("Concat", {y, p1, p2, last}, attrs({{"axis", int64_t{-3}}})));
  EXPECT_EQ(rewrite(b), 1);
  const ir::Node* fc = only(b.graph(), "FusedConcat");
  ASSERT_NE(fc, nullptr);
  EXPECT_EQ(fc->attrs().get_int("axis", 0), 1);
  EXPECT_EQ(fc->attrs().get_strings("activations"), (std::vector<std::string>{"", "", "", "Silu"}));
  EXPECT_EQ(fc->attrs().get_ints("bias_inputs"), (ints{-1, -1, -1, 4}));
  // The first part feeds the pool too: its convolution keeps its epilogue.
  EXPECT_EQ(fc->input(0)->producer()->attrs().get_string("activation", ""), "Silu");
  EXPECT_EQ(fc->input(0)->uses().size(), 2u);
}

TEST(FuseConcatTest, ConcatsOffTheChannelAxisOrWithoutConvolutionsStay) {
  Builder b;
  ir::Value* x = b.input("x", {1, 4, 6, 6});
  ir::Value* c1 =
      b.op("Concat", {b.conv_silu(x, 4, 4), b.conv_silu(x, 4, 4)}, attrs({{"axis", int64_t{2}}}));
  ir::Value* c2 = b.op("Concat", {x, b.op("Relu", {x})}, attrs({{"axis", int64_t{1}}}));
  b.output(c1);
  b.output(c2);
  EXPECT_EQ(rewrite(b), 0);
  for (const ir::Node* n : b.graph().nodes()) EXPECT_NE(n->op_type(), "FusedConcat");
}

TEST(FuseConcatTest, ChannelsLastConcatsFuseAlongTheLastAxis) {
  Builder b;
  ir::Value* x = b.input("x", {2, 3, 8, 6});
  ir::Value* a = b.conv_silu(x, 3, 8, 3);
  ir::Value* c =
      b.op("Concat", {b.conv_silu(a, 8, 4), b.conv(a, 8, 4, 1), a}, attrs({{"axis", int64_t{1}}}));
  b.output(b.conv_silu(c, 16, 4));
  EXPECT_EQ(rewrite(b, /*channels_last=*/true), 1);
  const ir::Node* fc = only(b.graph(), "FusedConcat");
  ASSERT_NE(fc, nullptr);
  EXPECT_EQ(fc->attrs().get_int("axis", 0), 3);
  EXPECT_EQ(fc->attrs().get_strings("activations"), (std::vector<std::string>{"Silu", "", ""}));
  EXPECT_EQ(fc->attrs().get_ints("bias_inputs"), (ints{3, 4, -1}));
}

// FusedConcat's shape rule: the per-part attributes must agree with the inputs.
TEST(FuseConcatTest, MalformedFusedConcatsAreRejected) {
  auto check = [](Attributes a, size_t extra, const std::string& expect) {
    ir::Graph g;
    g.opset_version = 21;
    std::vector<ir::Value*> in = {
        g.add_input("a", {DType::kFloat32, ir::SymShape::from(Shape{1, 2, 3})}),
        g.add_input("b", {DType::kFloat32, ir::SymShape::from(Shape{1, 4, 3})})};
    for (size_t i = 0; i < extra; ++i) {
      in.push_back(g.add_constant("bias" + std::to_string(i), random(Shape{4}, 7)));
    }
    g.add_output(g.add_node("FusedConcat", in, 1, std::move(a))->output(0));
    auto evaluator = engine::make_cpu_evaluator();
    Status s = ir::annotate_symbolic_shapes(g, evaluator.get());
    if (s.ok()) s = ir::verify_graph(g, evaluator.get());
    EXPECT_FALSE(s.ok()) << expect;
    EXPECT_NE(s.message().find(expect), std::string::npos) << s;
  };
  auto a = [](int64_t parts, ints biases, ints residuals, std::vector<std::string> acts) {
    return attrs({{"axis", int64_t{1}},
                  {"num_parts", parts},
                  {"activations", acts},
                  {"bias_inputs", biases},
                  {"residual_inputs", residuals}});
  };
  check(a(3, {-1, -1}, {-1, -1}, {"", ""}), 0, "num_parts is 3");
  check(a(2, {-1}, {-1, -1}, {"", ""}), 0, "one entry per part");
  check(a(2, {-1, 2}, {-1, -1}, {"", "Gelu"}), 1, "unknown activation 'Gelu'");
  check(a(2, {-1, 1}, {-1, -1}, {"", ""}), 1, "bias input 1 is not one of");
  check(a(2, {-1, 2}, {-1, 2}, {"", ""}), 1, "residual input 2 is not one of");
  check(a(2, {2, -1}, {-1, -1}, {"", ""}), 1, "bias has shape [4], expected [2]");
  check(a(2, {-1, -1}, {-1, -1}, {"", ""}), 1, "input 2 is not used by any part");
  check(a(2, {-1, -1}, {-1, 2}, {"", ""}), 1, "residual has shape [4]");
}

}  // namespace
}  // namespace kestrel::optimize
