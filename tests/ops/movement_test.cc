// Edge cases of the data-movement and generator operators beyond ONNX's node tests: aliasing,
// negative axes and steps, out-of-range indices, padding modes, uneven splits, hostile sizes and
// empty tensors.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <numeric>
#include <random>

#include "op_test_util.h"

namespace kestrel::testing {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// 0, 1, 2, ... as float, in `shape`.
Tensor iota(Shape shape) {
  std::vector<float> v(static_cast<size_t>(shape.num_elements()));
  std::iota(v.begin(), v.end(), 0.0f);
  return Tensor::from_vector<float>(std::move(shape), v);
}

// Random non-zero floats in `shape`.
Tensor random(Shape shape, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.5f, 2.0f);
  std::vector<float> v(static_cast<size_t>(shape.num_elements()));
  for (float& x : v) x = (rng() % 2 ? 1.0f : -1.0f) * dist(rng);
  return Tensor::from_vector<float>(std::move(shape), v);
}

Tensor int64s(std::vector<int64_t> v) {
  return Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(v.size())}, v);
}

// Runs a one-output operator and returns its output, failing the test on an error.
Tensor run1(const std::string& op, const std::vector<Tensor>& inputs, const Attributes& a = {},
            const OpOptions& options = {}) {
  StatusOr<std::vector<Tensor>> out = run_op(op, inputs, a, options);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0] : Tensor();
}

StatusCode code_of(const std::string& op, const std::vector<Tensor>& inputs,
                   const Attributes& a = {}, const OpOptions& options = {}) {
  return run_op(op, inputs, a, options).status().code();
}

// ---- Reshape, Flatten, Squeeze, Unsqueeze ----

TEST(MovementTest, ReshapeOutputSharesTheInputStorage) {
  const Tensor x = random({2, 3, 4});
  const Tensor y = run1("Reshape", {x, int64s({0, -1})});
  EXPECT_EQ(y.shape(), (Shape{2, 12}));
  EXPECT_EQ(y.raw_data(), x.raw_data());
  EXPECT_EQ(values(y), values(x));
}

TEST(MovementTest, ReshapeZeroCopiesUnlessAllowZero) {
  const Tensor empty = Tensor::from_vector<float>({0, 3}, {});
  EXPECT_EQ(run1("Reshape", {empty, int64s({0, 3})}).shape(), (Shape{0, 3}));
  EXPECT_EQ(run1("Reshape", {empty, int64s({3, 0})}, attrs({{"allowzero", int64_t{1}}})).shape(),
            (Shape{3, 0}));
  // Without allowzero, the 0 copies input dimension 1 (3): 3 * 3 != 0 elements.
  EXPECT_EQ(code_of("Reshape", {empty, int64s({3, 0})}), StatusCode::kInvalidArgument);
}

TEST(MovementTest, ReshapeRejectsBadShapes) {
  const Tensor x = random({2, 3});
  EXPECT_EQ(code_of("Reshape", {x, int64s({-1, -1})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Reshape", {x, int64s({4, -1})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Reshape", {x, int64s({5})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Reshape", {x, int64s({-2, 3})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Reshape", {x, int64s({kMax, kMax})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Reshape", {x, int64s({0, 0, 0})}), StatusCode::kInvalidArgument);
  // allowzero=1 forbids 0 together with -1.
  const Tensor empty = Tensor::from_vector<float>({0, 3}, {});
  EXPECT_EQ(code_of("Reshape", {empty, int64s({0, -1})}, attrs({{"allowzero", int64_t{1}}})),
            StatusCode::kInvalidArgument);
}

TEST(MovementTest, FlattenAcceptsNegativeAxesAndTheRank) {
  const Tensor x = random({2, 3, 4});
  EXPECT_EQ(run1("Flatten", {x}, attrs({{"axis", int64_t{-1}}})).shape(), (Shape{6, 4}));
  EXPECT_EQ(run1("Flatten", {x}, attrs({{"axis", int64_t{3}}})).shape(), (Shape{24, 1}));
  EXPECT_EQ(run1("Flatten", {x}, attrs({{"axis", int64_t{-3}}})).shape(), (Shape{1, 24}));
  EXPECT_EQ(code_of("Flatten", {x}, attrs({{"axis", int64_t{4}}})), StatusCode::kInvalidArgument);
}

TEST(MovementTest, SqueezeAndUnsqueezeWithNegativeAxes) {
  const Tensor x = random({1, 3, 1, 2});
  EXPECT_EQ(run1("Squeeze", {x}).shape(), (Shape{3, 2}));
  EXPECT_EQ(run1("Squeeze", {x, int64s({-2})}).shape(), (Shape{1, 3, 2}));
  EXPECT_EQ(code_of("Squeeze", {x, int64s({1})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Squeeze", {x, int64s({0, -4})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Squeeze", {x, int64s({4})}), StatusCode::kInvalidArgument);

  const Tensor y = random({3, 2});
  // Negative axes count in the output's rank (4 here).
  EXPECT_EQ(run1("Unsqueeze", {y, int64s({-1, 0})}).shape(), (Shape{1, 3, 2, 1}));
  EXPECT_EQ(run1("Unsqueeze", {y, int64s({1, -2})}).shape(), (Shape{3, 1, 1, 2}));
  EXPECT_EQ(code_of("Unsqueeze", {y, int64s({1, -3})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Unsqueeze", {y, int64s({4})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(run1("Unsqueeze", {Tensor::scalar<float>(2.5f), int64s({0})}).shape(), (Shape{1}));
}

// ---- Transpose, SpaceToDepth, DepthToSpace ----

TEST(MovementTest, TransposeDefaultsToReversedAndValidatesPerm) {
  const Tensor x = iota({2, 3});
  const Tensor y = run1("Transpose", {x});
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  EXPECT_EQ(values(y), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(code_of("Transpose", {x}, attrs({{"perm", ints{0, 0}}})), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Transpose", {x}, attrs({{"perm", ints{1, -1}}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Transpose", {x}, attrs({{"perm", ints{0}}})), StatusCode::kInvalidArgument);
}

TEST(MovementTest, TransposeMovesBoolsAndEmptyTensors) {
  const Tensor b = Tensor::from_vector<bool>({2, 2}, {true, false, false, false});
  EXPECT_EQ(values(run1("Transpose", {b})), (std::vector<double>{1, 0, 0, 0}));
  const Tensor empty = Tensor::from_vector<float>({2, 0, 3}, {});
  EXPECT_EQ(run1("Transpose", {empty}, attrs({{"perm", ints{2, 0, 1}}})).shape(), (Shape{3, 2, 0}));
}

TEST(MovementTest, DepthToSpaceModesAndSpaceToDepthRoundTrip) {
  const Tensor x = iota({1, 8, 1, 1});
  // DCR: channel (bh*2 + bw)*2 + c; CRD: channel c*4 + bh*2 + bw.
  EXPECT_EQ(values(run1("DepthToSpace", {x}, attrs({{"blocksize", int64_t{2}}}))),
            (std::vector<double>{0, 2, 4, 6, 1, 3, 5, 7}));
  EXPECT_EQ(values(run1("DepthToSpace", {x},
                        attrs({{"blocksize", int64_t{2}}, {"mode", std::string("CRD")}}))),
            (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7}));
  const Tensor r = random({2, 3, 4, 6});
  const Tensor s = run1("SpaceToDepth", {r}, attrs({{"blocksize", int64_t{2}}}));
  EXPECT_EQ(s.shape(), (Shape{2, 12, 2, 3}));
  EXPECT_EQ(values(run1("DepthToSpace", {s}, attrs({{"blocksize", int64_t{2}}}))), values(r));
  EXPECT_EQ(code_of("SpaceToDepth", {random({1, 1, 3, 4})}, attrs({{"blocksize", int64_t{2}}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("DepthToSpace", {random({1, 6, 2, 2})}, attrs({{"blocksize", int64_t{2}}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("DepthToSpace", {r}, attrs({{"blocksize", int64_t{0}}})),
            StatusCode::kInvalidArgument);
}

// ---- Concat, Split ----

TEST(MovementTest, ConcatWithNegativeAxisAndEmptyInputs) {
  const Tensor a = iota({2, 2});
  const Tensor empty = Tensor::from_vector<float>({2, 0}, {});
  const Tensor b = Tensor::from_vector<float>({2, 1}, {10, 11});
  const Tensor y = run1("Concat", {a, empty, b}, attrs({{"axis", int64_t{-1}}}));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(values(y), (std::vector<double>{0, 1, 10, 2, 3, 11}));
  EXPECT_EQ(code_of("Concat", {a, b}, attrs({{"axis", int64_t{0}}})), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Concat", {a, iota({2})}, attrs({{"axis", int64_t{0}}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Concat", {a, a}, attrs({{"axis", int64_t{2}}})), StatusCode::kInvalidArgument);
}

TEST(MovementTest, SplitUnevenWithNumOutputs) {
  const Tensor x = iota({2, 5});
  StatusOr<std::vector<Tensor>> out =
      run_op("Split", {x}, attrs({{"axis", int64_t{-1}}, {"num_outputs", int64_t{3}}}),
             {.num_outputs = 3});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 2}));
  EXPECT_EQ((*out)[2].shape(), (Shape{2, 1}));
  EXPECT_EQ(values((*out)[1]), (std::vector<double>{2, 3, 7, 8}));
  EXPECT_EQ(values((*out)[2]), (std::vector<double>{4, 9}));
  // 5 in 4 chunks of 2 would leave -1 for the last.
  EXPECT_EQ(code_of("Split", {x}, attrs({{"axis", int64_t{1}}, {"num_outputs", int64_t{4}}}),
                    {.num_outputs = 4}),
            StatusCode::kInvalidArgument);
  // Without sizes the split must be even.
  EXPECT_EQ(code_of("Split", {x}, attrs({{"axis", int64_t{1}}}), {.num_outputs = 2}),
            StatusCode::kInvalidArgument);
}

TEST(MovementTest, SplitWithSizesIncludingZero) {
  const Tensor x = iota({5});
  StatusOr<std::vector<Tensor>> out =
      run_op("Split", {x, int64s({3, 0, 2})}, {}, {.constant_inputs = {1}, .num_outputs = 3});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{0, 1, 2}));
  EXPECT_EQ((*out)[1].shape(), (Shape{0}));
  EXPECT_EQ(values((*out)[2]), (std::vector<double>{3, 4}));
  EXPECT_EQ(code_of("Split", {x, int64s({3, 3})}, {}, {.num_outputs = 2}),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Split", {x, int64s({6, -1})}, {}, {.num_outputs = 2}),
            StatusCode::kInvalidArgument);
}

// ---- Slice ----

std::vector<double> slice_1d(int64_t n, int64_t start, int64_t end, int64_t step) {
  return values(
      run1("Slice", {iota({n}), int64s({start}), int64s({end}), int64s({0}), int64s({step})}));
}

TEST(MovementTest, SliceNegativeStepsAndExtremeEnds) {
  using V = std::vector<double>;
  EXPECT_EQ(slice_1d(5, -1, kMin, -1), (V{4, 3, 2, 1, 0}));
  EXPECT_EQ(slice_1d(5, kMax, kMin, -2), (V{4, 2, 0}));
  EXPECT_EQ(slice_1d(5, 3, 0, -1), (V{3, 2, 1}));
  EXPECT_EQ(slice_1d(5, -100, kMax, 3), (V{0, 3}));
  EXPECT_EQ(slice_1d(5, 1, kMax, kMax), (V{1}));
  EXPECT_EQ(slice_1d(5, 4, kMin, kMin), (V{4}));
  EXPECT_EQ(slice_1d(5, 2, 2, 1), V{});
  EXPECT_EQ(slice_1d(5, 1, 3, -1), V{});
  EXPECT_EQ(slice_1d(0, 0, kMax, -1), V{});
  EXPECT_EQ(code_of("Slice", {iota({5}), int64s({0}), int64s({5}), int64s({0}), int64s({0})}),
            StatusCode::kInvalidArgument);
}

TEST(MovementTest, SliceNegativeAxesInt32AndDuplicates) {
  const Tensor x = iota({3, 4});
  const Tensor starts = Tensor::from_vector<int32_t>({2}, {-1, 1});
  const Tensor ends = Tensor::from_vector<int32_t>({2}, {0, 3});
  const Tensor axes = Tensor::from_vector<int32_t>({2}, {-1, 0});
  const Tensor steps = Tensor::from_vector<int32_t>({2}, {-2, 1});
  const Tensor y = run1("Slice", {x, starts, ends, axes, steps});
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(values(y), (std::vector<double>{7, 5, 11, 9}));
  const Tensor dup = Tensor::from_vector<int32_t>({2}, {1, -1});
  EXPECT_EQ(code_of("Slice", {x, starts, ends, dup}), StatusCode::kInvalidArgument);
}

// ---- Gather, GatherElements ----

TEST(MovementTest, GatherNegativeIndices) {
  const Tensor x = iota({3, 2});
  const Tensor idx = Tensor::from_vector<int32_t>({2, 1}, {-1, 0});
  const Tensor y = run1("Gather", {x, idx});
  EXPECT_EQ(y.shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(values(y), (std::vector<double>{4, 5, 0, 1}));
  const Tensor z = run1("Gather", {x, Tensor::scalar<int64_t>(-2)}, attrs({{"axis", int64_t{-1}}}));
  EXPECT_EQ(z.shape(), (Shape{3}));
  EXPECT_EQ(values(z), (std::vector<double>{0, 2, 4}));
}

TEST(MovementTest, GatherOutOfRangeIndexIsAnError) {
  const Tensor x = iota({3, 2});
  for (int64_t bad : {int64_t{3}, int64_t{-4}, kMax, kMin}) {
    StatusOr<std::vector<Tensor>> out = run_op("Gather", {x, int64s({0, bad})});
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(out.status().message().find("out of range"), std::string::npos) << out.status();
    // Also when the indices are constants and the node is folded while the engine is built.
    EXPECT_EQ(code_of("Gather", {x, int64s({bad})}, {}, {.constant_inputs = {0, 1}}),
              StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(code_of("Gather", {Tensor::from_vector<float>({0}, {}), int64s({0})}),
            StatusCode::kInvalidArgument);
  // Empty indices read nothing.
  EXPECT_EQ(run1("Gather", {x, Tensor::from_vector<int64_t>({0}, {})}).shape(), (Shape{0, 2}));
}

TEST(MovementTest, GatherElementsIndexRules) {
  const Tensor x = iota({2, 3});
  const Tensor idx = Tensor::from_vector<int64_t>({2, 2}, {-1, 0, 2, 1});
  EXPECT_EQ(values(run1("GatherElements", {x, idx}, attrs({{"axis", int64_t{1}}}))),
            (std::vector<double>{2, 0, 5, 4}));
  const Tensor bad = Tensor::from_vector<int32_t>({1, 1}, {3});
  EXPECT_EQ(code_of("GatherElements", {x, bad}, attrs({{"axis", int64_t{-1}}})),
            StatusCode::kInvalidArgument);
  // Indices larger than data on a non-gathered axis would read past it.
  const Tensor wide = Tensor::from_vector<int64_t>({1, 4}, {0, 0, 0, 0});
  EXPECT_EQ(code_of("GatherElements", {x, wide}), StatusCode::kInvalidArgument);
}

// ---- Expand, Tile ----

TEST(MovementTest, ExpandBroadcastsBothWays) {
  const Tensor col = Tensor::from_vector<float>({3, 1}, {1, 2, 3});
  // The data's 3 wins over the shape's 1, and the shape adds a leading 2 and widens to 2.
  const Tensor y = run1("Expand", {col, int64s({2, 1, 2})});
  EXPECT_EQ(y.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(values(y), (std::vector<double>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}));
  // A shape of lower rank than the data.
  EXPECT_EQ(run1("Expand", {random({2, 1, 4}), int64s({3, 1})}).shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(code_of("Expand", {col, int64s({2, 2})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Expand", {col, int64s({-1})}), StatusCode::kInvalidArgument);
  // A 0 in the shape broadcasts against a 1 and empties the result.
  const Tensor row = Tensor::from_vector<float>({1, 3}, {1, 2, 3});
  EXPECT_EQ(run1("Expand", {row, int64s({0, 1})}).shape(), (Shape{0, 3}));
}

TEST(MovementTest, TileRepeatsAndRefusesAbsurdRepeatsCleanly) {
  const Tensor x = iota({2, 2});
  const Tensor y = run1("Tile", {x, int64s({2, 3})});
  EXPECT_EQ(y.shape(), (Shape{4, 6}));
  EXPECT_EQ(values(y), (std::vector<double>{0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3,
                                            0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3}));
  EXPECT_EQ(run1("Tile", {x, int64s({0, 5})}).shape(), (Shape{0, 10}));
  EXPECT_EQ(code_of("Tile", {x, int64s({kMax, 1})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Tile", {x, int64s({int64_t{1} << 40, int64_t{1} << 40})}),
            StatusCode::kInvalidArgument);
  // Representable, but far over the tensor size limit: refused before anything is allocated.
  const StatusCode big = code_of("Tile", {x, int64s({int64_t{1} << 20, int64_t{1} << 20})});
  EXPECT_TRUE(big == StatusCode::kResourceExhausted || big == StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Tile", {x, int64s({-1, 1})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Tile", {x, int64s({2})}), StatusCode::kInvalidArgument);
}

// ---- Pad ----

std::vector<double> pad_1d(const std::string& mode, int64_t begin, int64_t end) {
  const Tensor x = Tensor::from_vector<float>({4}, {1, 2, 3, 4});
  return values(run1("Pad", {x, int64s({begin, end})}, attrs({{"mode", mode}})));
}

TEST(MovementTest, PadModes) {
  using V = std::vector<double>;
  // Expected values are numpy.pad's, except where said.
  EXPECT_EQ(pad_1d("reflect", 2, 3), (V{3, 2, 1, 2, 3, 4, 3, 2, 1}));
  EXPECT_EQ(pad_1d("reflect", 5, 0), (V{2, 3, 4, 3, 2, 1, 2, 3, 4}));
  EXPECT_EQ(pad_1d("edge", 2, 1), (V{1, 1, 1, 2, 3, 4, 4}));
  EXPECT_EQ(pad_1d("wrap", 2, 3), (V{3, 4, 1, 2, 3, 4, 1, 2, 3}));
  // Pads longer than the axis on both sides: periodic, as ONNX's "torus" says (numpy 1.24 wraps
  // the right side around its own left padding instead and ends with 3).
  EXPECT_EQ(pad_1d("wrap", 2, 5), (V{3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1}));
  EXPECT_EQ(pad_1d("constant", 1, 1), (V{0, 1, 2, 3, 4, 0}));
  // Negative pads crop (first, then the other side is padded from what is left).
  EXPECT_EQ(pad_1d("constant", -1, 2), (V{2, 3, 4, 0, 0}));
  EXPECT_EQ(pad_1d("edge", -2, 1), (V{3, 4, 4}));
  EXPECT_EQ(pad_1d("constant", -3, -1), V{});
  EXPECT_EQ(code_of("Pad", {iota({4}), int64s({-3, -2})}), StatusCode::kInvalidArgument);
}

TEST(MovementTest, PadConstantValueAxesAndTwoDimensions) {
  const Tensor x = iota({2, 2});
  const Tensor y = run1("Pad", {x, int64s({1, 0, 0, 1}), Tensor::scalar<float>(-7.5f)});
  EXPECT_EQ(y.shape(), (Shape{3, 3}));
  EXPECT_EQ(values(y), (std::vector<double>{-7.5, -7.5, -7.5, 0, 1, -7.5, 2, 3, -7.5}));
  // Opset 18 axes: only the last axis is padded.
  const Tensor z = run1("Pad", {x, int64s({1, 1}), Tensor(), int64s({-1})},
                        attrs({{"mode", std::string("reflect")}}));
  EXPECT_EQ(values(z), (std::vector<double>{1, 0, 1, 0, 3, 2, 3, 2}));
  const Tensor b = Tensor::from_vector<bool>({1}, {false});
  EXPECT_EQ(values(run1("Pad", {b, int64s({1, 0}), Tensor::scalar<bool>(true)})),
            (std::vector<double>{1, 0}));
  // Non-constant modes cannot pad an empty axis; constant mode can.
  const Tensor empty = Tensor::from_vector<float>({0}, {});
  EXPECT_EQ(code_of("Pad", {empty, int64s({1, 1})}, attrs({{"mode", std::string("edge")}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(values(run1("Pad", {empty, int64s({1, 1})})), (std::vector<double>{0, 0}));
  EXPECT_EQ(code_of("Pad", {x, int64s({1, 1})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Pad", {x, int64s({kMax, 0, kMax, 0})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("Pad", {x, int64s({0, 0, 0, 0})}, attrs({{"mode", std::string("mirror")}})),
            StatusCode::kInvalidArgument);
}

// ---- A YOLO-style grid: Shape -> Gather -> Range -> Unsqueeze/Concat -> Expand ----

// The detection head of a dynamic YOLOv5 export builds its grid from the feature map's shape; the
// whole chain is computed at run time, so one engine serves every input size.
TEST(MovementTest, GridFromShapeChainFollowsTheInputSize) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = 17;
  ir::Value* x = g->add_input(
      "x",
      {DType::kFloat32, ir::SymShape({1, 2, ir::SymDim::symbol("h"), ir::SymDim::symbol("w")})});
  auto constant = [&](const std::string& name, Tensor t) { return g->add_constant(name, t); };
  auto node = [&](const std::string& op, std::vector<ir::Value*> in, Attributes a = {}) {
    return g->add_node(op, std::move(in), 1, std::move(a), op + std::to_string(g->nodes().size()))
        ->output(0);
  };
  ir::Value* zero = constant("zero", Tensor::scalar<int64_t>(0));
  ir::Value* one = constant("one", Tensor::scalar<int64_t>(1));
  ir::Value* axis0 = constant("axis0", int64s({0}));
  ir::Value* shape = node("Shape", {x});
  ir::Value* h = node("Gather", {shape, constant("i2", Tensor::scalar<int64_t>(2))});
  ir::Value* w = node("Gather", {shape, constant("i3", Tensor::scalar<int64_t>(-1))});
  ir::Value* ys = node("Range", {zero, h, one});
  ir::Value* xs = node("Range", {zero, w, one});
  ir::Value* hw = node("Concat", {node("Unsqueeze", {h, axis0}), node("Unsqueeze", {w, axis0})},
                       attrs({{"axis", int64_t{0}}}));
  ir::Value* grid_y = node("Expand", {node("Unsqueeze", {ys, constant("axis1", int64s({1}))}), hw});
  ir::Value* grid_x = node("Expand", {xs, hw});
  ir::Value* last = constant("last", int64s({-1}));
  ir::Value* grid =
      node("Concat", {node("Unsqueeze", {grid_x, last}), node("Unsqueeze", {grid_y, last})},
           attrs({{"axis", int64_t{-1}}}));
  // Also a Reshape whose target is computed: [h*w, 2] as [-1, 2].
  ir::Value* rows = node("Reshape", {grid, constant("target", int64s({-1, 2}))});
  g->add_output(rows);
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::Engine::create(std::move(g), {.backend = "cpu", .cpu_reference_only = true});
  ASSERT_TRUE(e.ok()) << e.status();
  for (const auto& [height, width] : {std::pair<int64_t, int64_t>{2, 3}, {1, 1}, {3, 2}}) {
    StatusOr<std::vector<Tensor>> out = (*e)->run({{"x", random({1, 2, height, width})}});
    ASSERT_TRUE(out.ok()) << out.status();
    const Tensor& r = (*out)[0];
    ASSERT_EQ(r.shape(), (Shape{height * width, 2}));
    std::vector<double> want;
    for (int64_t i = 0; i < height; ++i) {
      for (int64_t j = 0; j < width; ++j) {
        want.push_back(static_cast<double>(j));
        want.push_back(static_cast<double>(i));
      }
    }
    EXPECT_EQ(values(r), want) << height << "x" << width;
  }
}

// ---- Generators ----

TEST(GeneratorTest, RangeCounts) {
  auto range = [](int64_t start, int64_t limit, int64_t delta) {
    return run1("Range", {Tensor::scalar<int64_t>(start), Tensor::scalar<int64_t>(limit),
                          Tensor::scalar<int64_t>(delta)});
  };
  EXPECT_EQ(range(5, 5, 1).shape(), (Shape{0}));
  EXPECT_EQ(range(5, 1, 1).shape(), (Shape{0}));
  EXPECT_EQ(values(range(10, 3, -3)), (std::vector<double>{10, 7, 4}));
  EXPECT_EQ(values(range(kMax - 2, kMax, 1)),
            (std::vector<double>{double(kMax - 2), double(kMax - 1)}));
  EXPECT_EQ(range(kMin, kMax, kMax).shape(), (Shape{3}));
  EXPECT_EQ(code_of("Range", {Tensor::scalar<int64_t>(0), Tensor::scalar<int64_t>(5),
                              Tensor::scalar<int64_t>(0)}),
            StatusCode::kInvalidArgument);
  // Over the size limit: refused cleanly, whatever the code.
  EXPECT_NE(code_of("Range", {Tensor::scalar<int64_t>(kMin), Tensor::scalar<int64_t>(kMax),
                              Tensor::scalar<int64_t>(1)}),
            StatusCode::kOk);
  const Tensor f = run1("Range", {Tensor::scalar<float>(1.0f), Tensor::scalar<float>(2.0f),
                                  Tensor::scalar<float>(0.25f)});
  EXPECT_EQ(values(f), (std::vector<double>{1, 1.25, 1.5, 1.75}));
  const Tensor s = run1("Range", {Tensor::scalar<int16_t>(-3), Tensor::scalar<int16_t>(3),
                                  Tensor::scalar<int16_t>(4)});
  EXPECT_EQ(values(s), (std::vector<double>{-3, 1}));
  EXPECT_NE(code_of("Range", {Tensor::scalar<float>(0), Tensor::scalar<float>(INFINITY),
                              Tensor::scalar<float>(1)}),
            StatusCode::kOk);
}

TEST(GeneratorTest, ShapeStartEndClampAndSize) {
  const Tensor x = random({2, 3, 4});
  EXPECT_EQ(values(run1("Shape", {x})), (std::vector<double>{2, 3, 4}));
  EXPECT_EQ(values(run1("Shape", {x}, attrs({{"start", int64_t{-2}}}))),
            (std::vector<double>{3, 4}));
  EXPECT_EQ(values(run1("Shape", {x}, attrs({{"start", int64_t{-10}}, {"end", int64_t{1}}}))),
            (std::vector<double>{2}));
  EXPECT_EQ(run1("Shape", {x}, attrs({{"start", int64_t{2}}, {"end", int64_t{1}}})).shape(),
            (Shape{0}));
  EXPECT_EQ(values(run1("Shape", {x}, attrs({{"end", int64_t{100}}}))),
            (std::vector<double>{2, 3, 4}));
  EXPECT_EQ(values(run1("Size", {x})), (std::vector<double>{24}));
  EXPECT_EQ(values(run1("Size", {Tensor::from_vector<float>({3, 0}, {})})),
            (std::vector<double>{0}));
}

TEST(GeneratorTest, ConstantOfShapeAndConstant) {
  const Tensor zeros = run1("ConstantOfShape", {int64s({2, 1})});
  EXPECT_EQ(zeros.dtype(), DType::kFloat32);
  EXPECT_EQ(values(zeros), (std::vector<double>{0, 0}));
  const Tensor sevens = run1("ConstantOfShape", {int64s({3})},
                             attrs({{"value", Tensor::from_vector<int32_t>({1}, {7})}}));
  EXPECT_EQ(sevens.dtype(), DType::kInt32);
  EXPECT_EQ(values(sevens), (std::vector<double>{7, 7, 7}));
  EXPECT_EQ(run1("ConstantOfShape", {Tensor::from_vector<int64_t>({0}, {})}).shape(), Shape{});
  EXPECT_EQ(code_of("ConstantOfShape", {int64s({2, -1})}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("ConstantOfShape", {int64s({2})},
                    attrs({{"value", Tensor::from_vector<float>({2}, {1, 2})}})),
            StatusCode::kInvalidArgument);

  EXPECT_EQ(values(run1("Constant", {}, attrs({{"value_ints", ints{4, -5}}}))),
            (std::vector<double>{4, -5}));
  const Tensor c = run1("Constant", {}, attrs({{"value_float", 0.5f}}));
  EXPECT_EQ(c.shape(), Shape{});
  EXPECT_EQ(values(c), (std::vector<double>{0.5}));
  EXPECT_EQ(code_of("Constant", {}, attrs({{"value_string", std::string("x")}})),
            StatusCode::kUnimplemented);
  EXPECT_EQ(code_of("Constant", {}, attrs({{"value_int", int64_t{1}}, {"value_float", 1.0f}})),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::testing
