// convert_to_float16 / convert_to_float32 (optimize/convert_precision.h): a float32 graph runs in
// float16 and a float16 graph in float32, each keeping its interface types; per-layer float32
// overrides; Casts to float16 inside a float16 model become Casts to float32. Numbers through the
// CPU reference kernels. (The real models: model_accuracy_test's float16 and float32 tests.)
#include "kestrel/optimize/convert_precision.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kestrel/base/half.h"
#include "kestrel/engine/engine.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"

namespace kestrel::optimize {
namespace {

// Values in ±[0.25, 1], rounded to float16 so that both precisions start from the same numbers.
std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.25f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(Half((rng() % 2 ? 1.0f : -1.0f) * dist(rng)));
  return v;
}

Tensor make_tensor(DType dtype, const Shape& shape, const std::vector<float>& v) {
  if (dtype == DType::kFloat32) return Tensor::from_vector<float>(shape, v);
  Tensor t = Tensor::allocate(DType::kFloat16, shape).value();
  for (size_t i = 0; i < v.size(); ++i) t.data<Half>()[i] = Half(v[i]);
  return t;
}

Tensor random(DType dtype, const Shape& shape, uint32_t seed) {
  return make_tensor(dtype, shape, random_values(shape.num_elements(), seed));
}

// x [2, 4, 8, 8] -> Conv 3x3 + bias -> SiLU -> + Cast(int64 constant to `dtype`) -> Conv 1x1
// "head" -> y [2, 6, 8, 8], all in `dtype`.
std::unique_ptr<ir::Graph> small_net(DType dtype) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = 17;
  ir::Value* x = g->add_input("x", {dtype, ir::SymShape::from(Shape{2, 4, 8, 8})});
  Attributes conv;
  conv.set("pads", std::vector<int64_t>{1, 1, 1, 1});
  ir::Value* y = g->add_node("Conv",
                             {x, g->add_constant("w", random(dtype, Shape{8, 4, 3, 3}, 1)),
                              g->add_constant("b", random(dtype, Shape{8}, 2))},
                             1, conv, "conv")
                     ->output(0);
  ir::Value* s = g->add_node("Sigmoid", {y}, 1)->output(0);
  ir::Value* m = g->add_node("Mul", {y, s}, 1)->output(0);
  Attributes to;
  to.set("to", static_cast<int64_t>(dtype));
  ir::Value* offset =
      g->add_node("Cast",
                  {g->add_constant(
                      "k", Tensor::from_vector<int64_t>(Shape{8, 1, 1}, {1, 2, 3, 4, 5, 6, 7, 8}))},
                  1, to)
          ->output(0);
  ir::Value* shifted = g->add_node("Add", {m, offset}, 1)->output(0);
  g->add_output(g->add_node("Conv",
                            {shifted, g->add_constant("w2", random(dtype, Shape{6, 8, 1, 1}, 3))},
                            1, {}, "head")
                    ->output(0));
  return g;
}

std::vector<double> run(const ir::Graph& g, const Tensor& x) {
  auto e = engine::Engine::create(g.clone(), {.backend = "cpu", .cpu_reference_only = true});
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return {};
  auto out = (*e)->run({{"x", x}});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0].to_double_vector() : std::vector<double>();
}

double relative_l2(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

void annotate_and_verify(ir::Graph& g) {
  auto evaluator = engine::make_cpu_evaluator();
  Status s = ir::annotate_symbolic_shapes(g, evaluator.get());
  ASSERT_TRUE(s.ok()) << s;
  s = ir::verify_graph(g, evaluator.get());
  ASSERT_TRUE(s.ok()) << s;
}

// The dtype of every value computed inside the graph (not its inputs, outputs or constants).
std::set<DType> inner_types(const ir::Graph& g) {
  std::set<DType> types;
  for (const ir::Node* n : g.nodes()) {
    for (const ir::Value* v : n->outputs()) {
      if (v->is_graph_output()) continue;
      // The Casts at the edges convert from and to the interface type.
      if (n->op_type() == "Cast" && n->input(0)->is_graph_input()) continue;
      types.insert(v->dtype());
    }
  }
  return types;
}

TEST(ConvertPrecisionTest, Float32GraphRunsInFloat16BehindItsFloat32Interface) {
  std::unique_ptr<ir::Graph> g = small_net(DType::kFloat32);
  annotate_and_verify(*g);
  const std::unique_ptr<ir::Graph> before = g->clone();
  EXPECT_FALSE(computes_in_float16(*g));
  StatusOr<int> n = convert_to_float16(*g);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);  // w, b, w2
  annotate_and_verify(*g);
  EXPECT_EQ(g->inputs()[0]->dtype(), DType::kFloat32);
  EXPECT_EQ(g->outputs()[0]->dtype(), DType::kFloat32);
  EXPECT_TRUE(computes_in_float16(*g));
  EXPECT_EQ(inner_types(*g), (std::set<DType>{DType::kFloat16}));
  const Tensor x = random(DType::kFloat32, Shape{2, 4, 8, 8}, 4);
  const double err = relative_l2(run(*g, x), run(*before, x));
  EXPECT_GT(err, 0.0);  // it did compute in float16
  EXPECT_LT(err, 2e-3);
}

TEST(ConvertPrecisionTest, LayersKeptInFloat32GetCastsAroundThem) {
  std::unique_ptr<ir::Graph> g = small_net(DType::kFloat32);
  annotate_and_verify(*g);
  const std::unique_ptr<ir::Graph> before = g->clone();
  StatusOr<int> n = convert_to_float16(*g, {.keep_float32 = {"head"}});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);  // w2 stays float32
  annotate_and_verify(*g);
  for (const ir::Node* node : g->nodes()) {
    if (node->name() != "head") continue;
    EXPECT_EQ(node->input(0)->dtype(), DType::kFloat32);
    EXPECT_EQ(node->input(1)->dtype(), DType::kFloat32);
    EXPECT_EQ(node->input(0)->producer()->op_type(), "Cast");
  }
  const Tensor x = random(DType::kFloat32, Shape{2, 4, 8, 8}, 4);
  EXPECT_LT(relative_l2(run(*g, x), run(*before, x)), 2e-3);
}

TEST(ConvertPrecisionTest, Float16GraphRunsInFloat32BehindItsFloat16Interface) {
  std::unique_ptr<ir::Graph> g = small_net(DType::kFloat16);
  annotate_and_verify(*g);
  const std::unique_ptr<ir::Graph> half_graph = g->clone();
  EXPECT_TRUE(computes_in_float16(*g));
  StatusOr<int> n = convert_to_float32(*g);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  annotate_and_verify(*g);
  EXPECT_EQ(g->inputs()[0]->dtype(), DType::kFloat16);
  EXPECT_EQ(g->outputs()[0]->dtype(), DType::kFloat16);
  // The Cast of the int64 constant now casts to float32: nothing inside stays float16.
  EXPECT_EQ(inner_types(*g), (std::set<DType>{DType::kFloat32}));
  EXPECT_FALSE(computes_in_float16(*g) && inner_types(*g).count(DType::kFloat16));

  // Against the same network in float32 (the same float16-representable weights and input): only
  // the final rounding of the output to float16 differs; the float16 computation errs more.
  const Tensor x16 = random(DType::kFloat16, Shape{2, 4, 8, 8}, 4);
  const Tensor x32 = random(DType::kFloat32, Shape{2, 4, 8, 8}, 4);
  const std::vector<double> want = run(*small_net(DType::kFloat32), x32);
  const double converted = relative_l2(run(*g, x16), want);
  const double in_half = relative_l2(run(*half_graph, x16), want);
  EXPECT_LT(converted, 4e-4) << "float16 output rounding only";
  EXPECT_LT(converted, in_half) << "the float16 computation should err more";
}

}  // namespace
}  // namespace kestrel::optimize
