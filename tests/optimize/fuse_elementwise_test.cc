// fuse_elementwise (optimize/fuse_elementwise.h): the graphs before and after on small cases
// (chains, diamonds, intermediates with readers outside that must not fuse, graph outputs inside
// chains, broadcasting constants, scalar constants inlined, Clip bounds, element types, the size
// limits), the rewritten graph computing exactly what the original computes on the CPU reference
// kernels (float32; float16 within its rounding), and the real YOLOv5 models: the detection
// heads' box decoding fuses, and the optimized yolov5n computes what the imported one does.
#include "kestrel/optimize/fuse_elementwise.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>

#include "kestrel/engine/engine.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/optimize/optimizer.h"

namespace kestrel::optimize {
namespace {

using ints = std::vector<int64_t>;
using strings = std::vector<std::string>;

// Random non-zero values in [-2, -0.5] U [0.5, 2] (only positive ones with `positive`).
Tensor random(Shape shape, uint32_t seed, DType dtype = DType::kFloat32, bool positive = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.5f, 2.0f);
  Tensor t = Tensor::allocate(dtype, shape).value();
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    const float v = (positive || rng() % 2 ? 1.0f : -1.0f) * dist(rng);
    if (dtype == DType::kFloat16)
      t.data<Half>()[i] = Half(v);
    else
      t.data<float>()[i] = v;
  }
  return t;
}

Attributes attrs(std::initializer_list<std::pair<std::string, AttributeValue>> list) {
  Attributes a;
  for (const auto& [name, value] : list) a.set(name, value);
  return a;
}

// Small graphs, built one node at a time.
class Builder {
 public:
  explicit Builder(DType dtype = DType::kFloat32) : g_(std::make_unique<ir::Graph>()), dt_(dtype) {
    g_->opset_version = 21;
  }

  // An input of `shape`; a symbolic batch when batch > 0 (fed with that size).
  ir::Value* input(const std::string& name, Shape shape, int64_t batch = 0, bool positive = false) {
    ir::SymShape sym = ir::SymShape::from(shape);
    if (batch > 0) {
      sym.mutable_dims()[0] = ir::SymDim::symbol("batch");
      shape = Shape([&] {
        std::vector<int64_t> d = shape.vec();
        d[0] = batch;
        return d;
      }());
    }
    feeds_[name] = random(shape, seed_++, dt_, positive);
    return g_->add_input(name, {dt_, sym});
  }
  ir::Value* constant(Tensor t) { return g_->add_constant(g_->unique_name("c"), std::move(t)); }
  ir::Value* random_constant(Shape shape) {
    return constant(random(std::move(shape), seed_++, dt_));
  }
  ir::Value* scalar(float v) {
    if (dt_ == DType::kFloat16) return constant(Tensor::from_vector<Half>({}, {Half(v)}));
    return constant(Tensor::from_vector<float>({}, {v}));
  }
  ir::Value* op(const std::string& op, std::vector<ir::Value*> inputs, Attributes a = {}) {
    return g_->add_node(op, std::move(inputs), 1, std::move(a))->output(0);
  }
  void output(ir::Value* v) { g_->add_output(v); }

  ir::Graph& graph() { return *g_; }
  const std::map<std::string, Tensor>& feeds() const { return feeds_; }

 private:
  std::unique_ptr<ir::Graph> g_;
  DType dt_;
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

double relative_l2(const Tensor& got, const Tensor& want) {
  const std::vector<double> a = got.to_double_vector(), b = want.to_double_vector();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return std::sqrt(diff / norm);
}

// Runs the pass as the optimizer does (types annotated before, the graph verified after) and
// checks that the result computes what the original did: exactly in float32, within float16's
// rounding otherwise (the fused program rounds once, the operators after each step). Returns the
// pass's count.
int fuse(Builder& b) {
  ir::Graph& g = b.graph();
  auto evaluator = engine::make_cpu_evaluator();
  Status s = ir::annotate_symbolic_shapes(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  const std::unique_ptr<ir::Graph> before = g.clone();
  StatusOr<int> count = fuse_elementwise(g);
  EXPECT_TRUE(count.ok()) << count.status();
  // The pass keeps types consistent by itself: re-inference must agree with them.
  std::map<const ir::Value*, std::string> claimed;
  for (const ir::Value* v : g.values()) claimed[v] = v->type().to_string();
  s = ir::annotate_symbolic_shapes(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  for (const ir::Value* v : g.values()) EXPECT_EQ(claimed[v], v->type().to_string()) << v->name();
  s = ir::verify_graph(g, evaluator.get());
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(g.outputs().size(), before->outputs().size());
  for (size_t i = 0; i < g.outputs().size() && i < before->outputs().size(); ++i) {
    EXPECT_EQ(g.outputs()[i]->name(), before->outputs()[i]->name());
    EXPECT_EQ(g.outputs()[i]->type().to_string(), before->outputs()[i]->type().to_string());
  }
  const std::vector<Tensor> want = run(*before, b.feeds()), got = run(g, b.feeds());
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    EXPECT_EQ(got[i].shape(), want[i].shape()) << "output " << i;
    if (got[i].dtype() == DType::kFloat32) {
      EXPECT_EQ(got[i].to_double_vector(), want[i].to_double_vector()) << "output " << i;
    } else {
      EXPECT_LT(relative_l2(got[i], want[i]), 2e-3) << "output " << i;
    }
  }
  // Idempotent: nothing left to fuse.
  EXPECT_EQ(fuse_elementwise(g).value(), 0);
  return count.ok() ? *count : -1;
}

int count_ops(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const ir::Node* node : g.nodes()) n += node->op_type() == op;
  return n;
}

std::vector<const ir::Node*> fused_nodes(const ir::Graph& g) {
  std::vector<const ir::Node*> out;
  for (const ir::Node* node : g.nodes()) {
    if (node->op_type() == "FusedElementwise") out.push_back(node);
  }
  return out;
}

std::vector<std::string> input_names(const ir::Node* n) {
  std::vector<std::string> names;
  for (const ir::Value* v : n->inputs()) names.push_back(v->name());
  return names;
}

TEST(FuseElementwiseTest, AChainBecomesOneProgramWithItsScalarInlined) {
  Builder b;
  ir::Value* x = b.input("x", {2, 3, 4, 5});
  ir::Value* y = b.input("y", {2, 3, 4, 5});
  ir::Value* v = b.op("Mul", {x, b.scalar(2.0f)});
  v = b.op("Add", {v, y});
  v = b.op("Sigmoid", {v});
  b.output(v);
  EXPECT_EQ(fuse(b), 1);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(g.num_nodes(), 1u);
  const std::vector<const ir::Node*> f = fused_nodes(g);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(input_names(f[0]), (strings{"x", "y"}));
  EXPECT_EQ(f[0]->attrs().get_strings("ops"), (strings{"Const", "Mul", "Add", "Sigmoid"}));
  EXPECT_EQ(f[0]->attrs().get_ints("args"), (ints{-1, -1, 0, 2, 3, 1, 4, -1}));
  EXPECT_EQ(f[0]->attrs().get_floats("params"), (std::vector<float>{2, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(f[0]->output(0), g.outputs()[0]);
}

TEST(FuseElementwiseTest, ADiamondFusesWhenEveryReaderIsInside) {
  // SiLU of a sum: a = x + y feeds both the Sigmoid and the Mul.
  Builder b;
  ir::Value* x = b.input("x", {2, 8, 6});
  ir::Value* y = b.input("y", {8, 1});
  ir::Value* a = b.op("Add", {x, y});
  b.output(b.op("Mul", {a, b.op("Sigmoid", {a})}));
  EXPECT_EQ(fuse(b), 1);
  const std::vector<const ir::Node*> f = fused_nodes(b.graph());
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(b.graph().num_nodes(), 1u);
  EXPECT_EQ(f[0]->attrs().get_strings("ops"), (strings{"Add", "Sigmoid", "Mul"}));
  EXPECT_EQ(f[0]->attrs().get_ints("args"), (ints{0, 1, 2, -1, 2, 3}));
}

TEST(FuseElementwiseTest, AnIntermediateReadOutsideTheGroupIsNotFused) {
  Builder b;
  ir::Value* x = b.input("x", {2, 3, 4});
  ir::Value* y = b.input("y", {2, 3, 4});
  ir::Value* a = b.op("Mul", {x, y});
  b.output(b.op("Exp", {b.op("Sigmoid", {a})}));
  b.output(b.op("Transpose", {a}, attrs({{"perm", ints{2, 0, 1}}})));
  EXPECT_EQ(fuse(b), 1);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(count_ops(g, "Mul"), 1);  // computed once, read by the Transpose and the program
  const std::vector<const ir::Node*> f = fused_nodes(g);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]->attrs().get_strings("ops"), (strings{"Sigmoid", "Exp"}));
  EXPECT_EQ(f[0]->input(0)->producer()->op_type(), "Mul");
}

TEST(FuseElementwiseTest, AValueReadByTwoSeparateChainsIsNotFused) {
  Builder b;
  ir::Value* x = b.input("x", {4, 5});
  ir::Value* a = b.op("Add", {x, x});
  b.output(b.op("Relu", {a}));
  b.output(b.op("Sigmoid", {a}));
  EXPECT_EQ(fuse(b), 0);
  EXPECT_EQ(b.graph().num_nodes(), 3u);
}

TEST(FuseElementwiseTest, AGraphOutputInsideAChainStaysComputed) {
  Builder b;
  ir::Value* x = b.input("x", {3, 7});
  ir::Value* y = b.input("y", {3, 7});
  ir::Value* a = b.op("Add", {x, y});
  b.output(a);
  ir::Value* c = b.op("Sigmoid", {b.op("Mul", {a, b.scalar(0.5f)})});
  b.output(c);
  EXPECT_EQ(fuse(b), 1);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(count_ops(g, "Add"), 1);
  const std::vector<const ir::Node*> f = fused_nodes(g);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]->attrs().get_strings("ops"), (strings{"Const", "Mul", "Sigmoid"}));
  EXPECT_EQ(f[0]->input(0), g.outputs()[0]);
  EXPECT_EQ(f[0]->output(0), g.outputs()[1]);
}

TEST(FuseElementwiseTest, BroadcastingConstantsAreInputsAndScalarsAreInlined) {
  Builder b;
  ir::Value* x = b.input("x", {2, 3, 4, 5});
  ir::Value* bias = b.random_constant({3, 1, 1});
  ir::Value* v = b.op("Relu", {b.op("Add", {x, bias})});
  v = b.op("HardSwish", {b.op("Mul", {v, b.scalar(0.5f)})});
  b.output(v);
  EXPECT_EQ(fuse(b), 1);
  const std::vector<const ir::Node*> f = fused_nodes(b.graph());
  ASSERT_EQ(f.size(), 1u);
  ASSERT_EQ(f[0]->num_inputs(), 2u);
  EXPECT_EQ(f[0]->input(0)->name(), "x");
  EXPECT_EQ(f[0]->input(1), bias);
  EXPECT_EQ(f[0]->attrs().get_strings("ops"),
            (strings{"Add", "Relu", "Const", "Mul", "HardSwish"}));
}

TEST(FuseElementwiseTest, YoloBoxDecodingFusesOverASymbolicBatch) {
  // The head of YOLOv5 after constant folding: sigmoid outputs split in xy, wh and the rest.
  Builder b;
  ir::Value* xy = b.input("xy", {1, 3, 8, 8, 2}, /*batch=*/2, /*positive=*/true);
  ir::Value* wh = b.input("wh", {1, 3, 8, 8, 2}, /*batch=*/2, /*positive=*/true);
  ir::Value* grid = b.random_constant({1, 3, 8, 8, 2});
  ir::Value* anchors = b.random_constant({1, 3, 8, 8, 2});
  ir::Value* v = b.op("Mul", {xy, b.scalar(2.0f)});
  v = b.op("Add", {v, grid});
  b.output(b.op("Mul", {v, b.scalar(8.0f)}));
  ir::Value* w = b.op("Mul", {wh, b.scalar(2.0f)});
  w = b.op("Pow", {w, b.constant(Tensor::from_vector<int64_t>({}, {2}))});  // integer exponent
  b.output(b.op("Mul", {w, anchors}));
  EXPECT_EQ(fuse(b), 2);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(g.num_nodes(), 2u);
  const std::vector<const ir::Node*> f = fused_nodes(g);
  ASSERT_EQ(f.size(), 2u);
  for (const ir::Node* n : f) {
    EXPECT_EQ(n->num_inputs(), 2u);
    EXPECT_EQ(n->output(0)->type().to_string(), "float32[batch,3,8,8,2]");
  }
  std::set<strings> programs;
  for (const ir::Node* n : f) programs.insert(n->attrs().get_strings("ops"));
  EXPECT_TRUE(programs.count(strings{"Const", "Mul", "Add", "Const", "Mul"}));
  EXPECT_TRUE(programs.count(strings{"Const", "Mul", "Const", "Pow", "Mul"}));
}

TEST(FuseElementwiseTest, AScalarThatAloneGivesTheRankStaysAnInput) {
  // x[3] + c[1,1] is [1,3]: without c as an input the program's output would be [3].
  Builder b;
  ir::Value* x = b.input("x", {3});
  ir::Value* c = b.constant(Tensor::from_vector<float>({1, 1}, {0.25f}));
  b.output(b.op("Relu", {b.op("Add", {x, c})}));
  EXPECT_EQ(fuse(b), 1);
  const std::vector<const ir::Node*> f = fused_nodes(b.graph());
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]->num_inputs(), 2u);
  EXPECT_EQ(b.graph().outputs()[0]->type().to_string(), "float32[1,3]");
}

TEST(FuseElementwiseTest, ClipFusesWithConstantBoundsOnly) {
  Builder b;
  ir::Value* x = b.input("x", {4, 6});
  ir::Value* y = b.input("y", {1});
  b.output(b.op("Clip", {b.op("Neg", {x}), b.scalar(-0.5f), b.scalar(0.75f)}));
  b.output(b.op("Clip", {b.op("Abs", {x}), nullptr, b.scalar(1.0f)}));
  b.output(b.op("Clip", {b.op("Exp", {x}), y}));  // a computed bound: not fused
  EXPECT_EQ(fuse(b), 2);
  const ir::Graph& g = b.graph();
  EXPECT_EQ(count_ops(g, "Clip"), 1);
  EXPECT_EQ(count_ops(g, "Exp"), 1);
  for (const ir::Node* n : fused_nodes(g)) {
    const std::vector<float> p = n->attrs().get_floats("params");
    ASSERT_EQ(p.size(), 4u);
    if (n->attrs().get_strings("ops")[0] == "Neg") {
      EXPECT_EQ(p[2], -0.5f);
      EXPECT_EQ(p[3], 0.75f);
    } else {
      EXPECT_EQ(p[2], -INFINITY);
      EXPECT_EQ(p[3], 1.0f);
    }
  }
}

TEST(FuseElementwiseTest, EveryFusableOperatorComputesWhatItsKernelDoes) {
  Builder b;
  ir::Value* x = b.input("x", {3, 4, 5});
  ir::Value* p = b.input("p", {4, 1}, 0, /*positive=*/true);
  // Two operands.
  ir::Value* v = b.op("Add", {x, p});
  v = b.op("Sub", {v, x});
  v = b.op("Div", {v, p});
  v = b.op("Min", {v, x});
  v = b.op("Max", {v, b.op("Neg", {x})});
  v = b.op("Pow", {b.op("Abs", {v}), b.scalar(1.5f)});
  v = b.op("Mul", {v, x});
  b.output(v);
  // One operand, each on its own branch of a sum so that none saturates the others.
  ir::Value* s = b.op("Sigmoid", {x});
  const std::vector<std::pair<std::string, Attributes>> unary = {
      {"Relu", {}},      {"LeakyRelu", attrs({{"alpha", 0.1f}})},
      {"Exp", {}},       {"Neg", {}},
      {"Abs", {}},       {"Floor", {}},
      {"Ceil", {}},      {"Round", {}},
      {"HardSwish", {}}, {"HardSigmoid", attrs({{"alpha", 0.3f}, {"beta", 0.4f}})}};
  for (const auto& [op, a] : unary) s = b.op("Add", {s, b.op(op, {x}, a)});
  b.output(s);
  ir::Value* l = b.op("Log", {p});
  l = b.op("Sqrt", {b.op("Add", {l, b.scalar(3.0f)})});
  b.output(b.op("Clip", {l, b.scalar(0.0f), b.scalar(1.5f)}));
  EXPECT_GE(fuse(b), 3);
  EXPECT_EQ(count_ops(b.graph(), "Add"), 0);
}

TEST(FuseElementwiseTest, IntegerArithmeticIsLeftAlone) {
  Builder b;
  ir::Value* x = b.graph().add_input("x", {DType::kInt32, ir::SymShape::from(Shape{5})});
  ir::Value* v = b.op("Add", {x, x});
  b.output(b.op("Mul", {v, x}));
  auto evaluator = engine::make_cpu_evaluator();
  ASSERT_TRUE(ir::annotate_symbolic_shapes(b.graph(), evaluator.get()).ok());
  EXPECT_EQ(fuse_elementwise(b.graph()).value(), 0);
  EXPECT_EQ(b.graph().num_nodes(), 2u);
}

TEST(FuseElementwiseTest, LongChainsAndManyInputsSplitAtTheLimits) {
  Builder b;
  ir::Value* v = b.input("x", {6});
  for (int i = 0; i < 20; ++i) v = b.op(i % 2 ? "Neg" : "Sigmoid", {v});
  b.output(v);
  ir::Value* sum = b.input("y0", {6});
  for (int i = 1; i <= 10; ++i) sum = b.op("Add", {sum, b.input(fmt::format("y{}", i), {6})});
  b.output(sum);
  EXPECT_EQ(fuse(b), 4);
  for (const ir::Node* n : fused_nodes(b.graph())) {
    EXPECT_LE(n->num_inputs(), 8u);
    EXPECT_LE(n->attrs().get_strings("ops").size(), 16u);
  }
}

TEST(FuseElementwiseTest, Float16ChainsFuseAndAgreeWithinRounding) {
  Builder b(DType::kFloat16);
  ir::Value* x = b.input("x", {2, 3, 6, 7});
  ir::Value* y = b.input("y", {3, 1, 1});
  ir::Value* v = b.op("Mul", {b.op("Add", {x, y}), b.scalar(0.5f)});
  b.output(b.op("Mul", {v, b.op("Sigmoid", {v})}));
  EXPECT_EQ(fuse(b), 1);
  const std::vector<const ir::Node*> f = fused_nodes(b.graph());
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]->output(0)->dtype(), DType::kFloat16);
}

TEST(FuseElementwiseTest, MixedElementTypesDoNotJoin) {
  // A float16 chain feeding a Cast and a float32 chain: two groups, never one.
  Builder b(DType::kFloat16);
  ir::Value* x = b.input("x", {8});
  ir::Value* h = b.op("Relu", {b.op("Neg", {x})});
  ir::Value* f = b.op("Cast", {h}, attrs({{"to", int64_t{1}}}));
  ir::Value* two = b.constant(Tensor::from_vector<float>({}, {2.0f}));
  b.output(b.op("Exp", {b.op("Mul", {f, two})}));
  EXPECT_EQ(fuse(b), 2);
  EXPECT_EQ(count_ops(b.graph(), "Cast"), 1);
}

// ---- The real models (need ../shared; skip without it). ----

std::filesystem::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? std::filesystem::path(dir) : std::filesystem::path("../shared");
}

#define REQUIRE_MODEL(name)                                                        \
  if (!std::filesystem::exists(shared_dir() / "models" / (name))) {                \
    GTEST_SKIP() << "needs ../shared/models/" << (name) << "; set KESTREL_SHARED"; \
  }

std::map<std::string, int> op_counts(const ir::Graph& g) {
  std::map<std::string, int> ops;
  for (const ir::Node* n : g.nodes()) ++ops[n->op_type()];
  return ops;
}

std::string summary(const std::map<std::string, int>& ops) {
  std::string s;
  for (const auto& [op, count] : ops) s += fmt::format(" {} {}", op, count);
  return s;
}

// Optimizes `model` (optionally channels-last) and checks that each detection head's two box
// chains (xy: Mul, Add, Mul; wh: Mul, Pow, Mul) became FusedElementwise nodes.
std::unique_ptr<ir::Graph> optimize_model(const std::string& model, bool channels_last,
                                          std::unique_ptr<ir::Graph>* imported = nullptr) {
  StatusOr<std::unique_ptr<ir::Graph>> g =
      onnx::import_model_file((shared_dir() / "models" / model).string());
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return nullptr;
  if (imported) *imported = (*g)->clone();
  auto evaluator = engine::make_cpu_evaluator();
  OptimizeOptions options;
  options.channels_last = channels_last;
  StatusOr<OptimizeReport> report = optimize_graph(**g, *evaluator, options);
  EXPECT_TRUE(report.ok()) << report.status();
  if (!report.ok()) return nullptr;
  const std::map<std::string, int> ops = op_counts(**g);
  const std::string line = fmt::format("{}{}: {};{}", model, channels_last ? " (NHWC)" : "",
                                       report->to_string(), summary(ops));
  ::testing::Test::RecordProperty(model + (channels_last ? "_nhwc" : ""), line);
  fmt::print("{}\n", line);
  EXPECT_EQ(ops.count("FusedElementwise") ? ops.at("FusedElementwise") : 0, 6) << line;
  EXPECT_EQ(ops.count("Pow"), 0u) << line;
  EXPECT_EQ(ops.count("Add"), 0u) << line;
  for (const ir::Node* n : (*g)->nodes()) {
    if (n->op_type() != "FusedElementwise") continue;
    const strings program = n->attrs().get_strings("ops");
    EXPECT_TRUE(program == (strings{"Const", "Mul", "Add", "Const", "Mul"}) ||
                program == (strings{"Const", "Mul", "Const", "Pow", "Mul"}))
        << n->describe() << ": " << fmt::format("{}", fmt::join(program, " "));
  }
  return std::move(g).value();
}

TEST(FuseElementwiseModelTest, YoloV5nHeadsFuseAndTheOptimizedGraphComputesTheSame) {
  REQUIRE_MODEL("yolov5n.onnx");
  std::unique_ptr<ir::Graph> imported;
  std::unique_ptr<ir::Graph> optimized = optimize_model("yolov5n.onnx", false, &imported);
  ASSERT_TRUE(optimized && imported);
  const std::map<std::string, Tensor> feeds = {
      {"images", random({1, 3, 640, 640}, 7, DType::kFloat32, /*positive=*/true)}};
  std::vector<Tensor> out[2];
  for (int i = 0; i < 2; ++i) {
    StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::create(
        std::move(i == 0 ? imported : optimized), {.backend = "cpu", .cpu_reference_only = true});
    ASSERT_TRUE(e.ok()) << e.status();
    StatusOr<std::vector<Tensor>> o = (*e)->run(feeds);
    ASSERT_TRUE(o.ok()) << o.status();
    out[i] = std::move(o).value();
  }
  ASSERT_EQ(out[0].size(), out[1].size());
  for (size_t i = 0; i < out[0].size(); ++i) {
    ASSERT_EQ(out[0][i].shape(), out[1][i].shape());
    const double err = relative_l2(out[1][i], out[0][i]);
    RecordProperty(fmt::format("relative_l2_{}", i), fmt::format("{:.3g}", err));
    fmt::print("output {} {}: relative L2 {:.3g}\n", i, out[0][i].shape().to_string(), err);
    EXPECT_LT(err, 1e-5);
  }
}

TEST(FuseElementwiseModelTest, YoloV5nChannelsLastHeadsFuse) {
  REQUIRE_MODEL("yolov5n.onnx");
  EXPECT_TRUE(optimize_model("yolov5n.onnx", true));
}

TEST(FuseElementwiseModelTest, YoloV5sFloat16HeadsFuse) {
  REQUIRE_MODEL("yolov5s-randw-fp16.onnx");
  EXPECT_TRUE(optimize_model("yolov5s-randw-fp16.onnx", false));
  EXPECT_TRUE(optimize_model("yolov5s-randw-fp16.onnx", true));
}

}  // namespace
}  // namespace kestrel::optimize
