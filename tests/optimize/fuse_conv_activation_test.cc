// fuse_conv_activation across the Reshape and Transpose of a detection head: the Sigmoid moves into
// the convolution's epilogue when the rearrangements only feed it, and the graph computes the same.
#include "kestrel/optimize/fuse_conv_activation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kestrel/engine/engine.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"

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

// x [1,4,5,6] -> Conv to 2*3 channels -> Reshape [1,2,3,5,6] -> Transpose [1,2,5,6,3] -> Sigmoid.
// With `extra_use`, the Reshape's output is also a graph output.
std::unique_ptr<ir::Graph> head(bool extra_use) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = 21;
  ir::Value* x = g->add_input("x", {DType::kFloat32, ir::SymShape::from(Shape{1, 4, 5, 6})});
  Attributes conv_attrs;
  conv_attrs.set("pads", ints{1, 1, 1, 1});
  ir::Value* y = g->add_node("Conv",
                             {x, g->add_constant("w", random(Shape{6, 4, 3, 3}, 1)),
                              g->add_constant("b", random(Shape{6}, 2))},
                             1, conv_attrs)
                     ->output(0);
  ir::Value* r =
      g->add_node("Reshape",
                  {y, g->add_constant("s", Tensor::from_vector<int64_t>({5}, {1, 2, 3, 5, 6}))}, 1)
          ->output(0);
  Attributes perm;
  perm.set("perm", ints{0, 1, 3, 4, 2});
  ir::Value* t = g->add_node("Transpose", {r}, 1, perm)->output(0);
  g->add_output(g->add_node("Sigmoid", {t}, 1)->output(0));
  if (extra_use) g->add_output(r);
  return g;
}

int count(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const ir::Node* node : g.nodes()) n += node->op_type() == op;
  return n;
}

TEST(FuseConvActivationTest, SigmoidAfterAHeadsReshapeAndTransposeMovesIntoTheConvolution) {
  std::unique_ptr<ir::Graph> g = head(false);
  const std::unique_ptr<ir::Graph> before = g->clone();
  ASSERT_EQ(fuse_conv_activation(*g).value(), 1);
  EXPECT_EQ(count(*g, "Sigmoid"), 0);
  ASSERT_EQ(count(*g, "FusedConv"), 1);
  for (const ir::Node* n : g->nodes()) {
    if (n->op_type() == "FusedConv") {
      EXPECT_EQ(n->attrs().get_string("activation", ""), "Sigmoid");
    }
  }
  EXPECT_EQ(g->outputs()[0]->producer()->op_type(), "Transpose");
  auto evaluator = engine::make_cpu_evaluator();
  ASSERT_TRUE(ir::annotate_symbolic_shapes(*g, evaluator.get()).ok());
  ASSERT_TRUE(ir::verify_graph(*g, evaluator.get()).ok());
  const Tensor x = random(Shape{1, 4, 5, 6}, 3);
  const std::vector<double> want = run(*before, x), got = run(*g, x);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
}

TEST(FuseConvActivationTest, ARearrangementWithAnotherUseKeepsTheSigmoid) {
  std::unique_ptr<ir::Graph> g = head(true);
  EXPECT_EQ(fuse_conv_activation(*g).value(), 0);
  EXPECT_EQ(count(*g, "Sigmoid"), 1);
  EXPECT_EQ(count(*g, "FusedConv"), 0);
}

}  // namespace
}  // namespace kestrel::optimize
