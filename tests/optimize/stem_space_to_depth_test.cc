// stem_space_to_depth (optimize/stem_space_to_depth.h): YOLOv5's 6x6 stride-2 stem over 3
// channels becomes a 3x3 stride-1 convolution over 12, reading the NCHW input through one 6-D
// Transpose; convolutions that do not fit stay; the rewritten graphs compute what the originals do
// on the CPU reference kernels. (yolov5n end to end: model_accuracy_test's channels-last tests.)
#include "kestrel/optimize/stem_space_to_depth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

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

std::vector<double> run(const ir::Graph& g, const Tensor& x) {
  auto e = engine::Engine::create(g.clone(), {.backend = "cpu", .cpu_reference_only = true});
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return {};
  auto out = (*e)->run({{"x", x}});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0].to_double_vector() : std::vector<double>();
}

// x [2, C, H, W] -> Conv (k x k, stride, pad) + SiLU -> 1x1 Conv; channels-last after the
// optimizer's earlier passes.
std::unique_ptr<ir::Graph> stem(int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride,
                                int64_t pad) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = 21;
  ir::Value* x = g->add_input("x", {DType::kFloat32, ir::SymShape::from(Shape{2, c, h, w})});
  Attributes a;
  a.set("pads", ints{pad, pad, pad, pad});
  a.set("strides", ints{stride, stride});
  a.set("kernel_shape", ints{k, k});
  ir::Value* y = g->add_node("Conv",
                             {x, g->add_constant("w", random(Shape{8, c, k, k}, 1)),
                              g->add_constant("b", random(Shape{8}, 2))},
                             1, a)
                     ->output(0);
  ir::Value* s = g->add_node("Sigmoid", {y}, 1)->output(0);
  ir::Value* m = g->add_node("Mul", {y, s}, 1)->output(0);
  g->add_output(
      g->add_node("Conv", {m, g->add_constant("w2", random(Shape{4, 8, 1, 1}, 3))}, 1)->output(0));
  return g;
}

// Runs the passes before this one, then this one; checks verification and numbers. Returns the
// count.
int rewrite(ir::Graph& g) {
  auto evaluator = engine::make_cpu_evaluator();
  EXPECT_TRUE(fuse_conv_activation(g).ok());
  EXPECT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
  EXPECT_TRUE(to_channels_last(g).ok());
  EXPECT_TRUE(g.sort_topologically().ok());
  EXPECT_TRUE(ir::annotate_symbolic_shapes(g, evaluator.get()).ok());
  const std::unique_ptr<ir::Graph> before = g.clone();
  StatusOr<int> n = stem_space_to_depth(g);
  EXPECT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(g.sort_topologically().ok());
  Status s = ir::annotate_symbolic_shapes(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  s = ir::verify_graph(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  std::vector<int64_t> dims;
  for (const ir::SymDim& d : before->inputs()[0]->shape().dims()) dims.push_back(d.value());
  const Tensor x = random(Shape(dims), 4);
  const std::vector<double> want = run(*before, x), got = run(g, x);
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-4 * (1 + std::abs(want[i]))) << i;
  }
  return n.ok() ? *n : -1;
}

int count(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const ir::Node* node : g.nodes()) n += node->op_type() == op;
  return n;
}

TEST(StemSpaceToDepthTest, YoloStemBecomesAThreeByThreeConvolutionOverTwelveChannels) {
  std::unique_ptr<ir::Graph> g = stem(3, 16, 12, 6, 2, 2);
  ASSERT_EQ(rewrite(*g), 1);
  const ir::Node* conv = nullptr;
  for (const ir::Node* n : g->nodes()) {
    if (n->op_type() == "FusedConv" && n->attrs().get_string("activation", "") == "Silu") conv = n;
  }
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->input(1)->constant().shape(), (Shape{8, 3, 3, 12}));
  EXPECT_EQ(conv->attrs().get_ints("strides"), (ints{1, 1}));
  EXPECT_EQ(conv->attrs().get_ints("pads"), (ints{1, 1, 1, 1}));
  EXPECT_EQ(conv->input(0)->type().to_string(), "float32[2,8,6,12]");
  // One Transpose reads the NCHW input (the 4-D one it replaced is gone), one goes back at the end.
  EXPECT_EQ(count(*g, "Transpose"), 2);
  EXPECT_EQ(stem_space_to_depth(*g).value(), 0);  // idempotent
}

TEST(StemSpaceToDepthTest, OtherConvolutionsStay) {
  for (auto [c, k, stride, pad] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{3, 3, 2, 1},
                                   {3, 6, 1, 2},
                                   {8, 6, 2, 2},
                                   {3, 6, 2, 1}}) {
    std::unique_ptr<ir::Graph> g = stem(c, 16, 12, k, stride, pad);
    EXPECT_EQ(rewrite(*g), 0) << c << " " << k << " " << stride << " " << pad;
  }
}

}  // namespace
}  // namespace kestrel::optimize
