// The oneDNN MaxPool and nearest-upsampling kernels (runtime/cpu/onednn_pool.cc) against the
// reference kernels, bit for bit (neither computes a sum): random inputs of many shapes, YOLO's
// SPPF pool and 2x upsample among them, ceil_mode and asymmetric pads, every coordinate mode the
// fast path takes, sizes instead of scales, several batch sizes through one kernel; and cases the
// fast path leaves to the reference kernel (non-whole scales, linear mode) still agree.
#include <gtest/gtest.h>

#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "op_test_util.h"

namespace kestrel::testing {
namespace {

// Uniform in +-[0.1, 1): random and never zero.
Tensor random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> magnitude(0.1f, 1.0f);
  std::vector<float> v(static_cast<size_t>(shape.num_elements()));
  for (float& x : v) x = rng() & 1 ? magnitude(rng) : -magnitude(rng);
  return Tensor::from_vector<float>(shape, v);
}

// Runs the node on the fast and the reference kernels; both must succeed and agree exactly.
void expect_same(const std::string& op, const std::vector<Tensor>& in, const Attributes& a,
                 std::vector<size_t> constants = {}) {
  StatusOr<std::vector<Tensor>> fast =
      run_op(op, in, a, {.reference = false, .constant_inputs = constants});
  StatusOr<std::vector<Tensor>> reference =
      run_op(op, in, a, {.reference = true, .constant_inputs = constants});
  ASSERT_TRUE(fast.ok()) << fast.status();
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ((*fast)[0].shape(), (*reference)[0].shape());
  EXPECT_EQ(values((*fast)[0]), values((*reference)[0]));
}

struct PoolCase {
  std::string name;
  Shape x;
  ints kernel, strides, pads;
  int64_t ceil_mode = 0;
};
void PrintTo(const PoolCase& c, std::ostream* os) { *os << c.name; }

class OneDnnMaxPoolTest : public ::testing::TestWithParam<PoolCase> {};

TEST_P(OneDnnMaxPoolTest, EqualsTheReferenceKernel) {
  const PoolCase& c = GetParam();
  Attributes a;
  a.set("kernel_shape", c.kernel);
  if (!c.strides.empty()) a.set("strides", c.strides);
  if (!c.pads.empty()) a.set("pads", c.pads);
  if (c.ceil_mode) a.set("ceil_mode", c.ceil_mode);
  expect_same("MaxPool", {random_tensor(c.x, 7)}, a);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, OneDnnMaxPoolTest,
    ::testing::Values(PoolCase{"SppfK5S1P2", {2, 16, 20, 20}, {5, 5}, {1, 1}, {2, 2, 2, 2}},
                      PoolCase{"K2S2", {1, 8, 17, 16}, {2, 2}, {2, 2}, {}},
                      PoolCase{"K3S2P1", {3, 5, 15, 9}, {3, 3}, {2, 2}, {1, 1, 1, 1}},
                      PoolCase{"CeilMode", {1, 4, 11, 7}, {3, 2}, {2, 2}, {0, 0, 0, 0}, 1},
                      PoolCase{"AsymmetricPads", {2, 3, 9, 12}, {3, 4}, {1, 2}, {0, 2, 1, 0}},
                      PoolCase{"NoStrideAttribute", {1, 1, 6, 6}, {2, 3}, {}, {}}),
    [](const ::testing::TestParamInfo<PoolCase>& p) { return p.param.name; });

TEST(OneDnnMaxPoolTest, DifferentBatchSizesThroughOneKernel) {
  Attributes a;
  a.set("kernel_shape", ints{5, 5});
  a.set("pads", ints{2, 2, 2, 2});
  for (int64_t batch : {1, 3, 2}) {
    expect_same("MaxPool", {random_tensor(Shape{batch, 4, 10, 10}, static_cast<uint32_t>(batch))},
                a);
  }
}

struct ResizeCase {
  std::string name;
  Shape x;
  std::vector<float> scales;   // empty: sizes
  std::vector<int64_t> sizes;  // when no scales
  std::string ctm, nearest_mode, mode = "nearest";
};
void PrintTo(const ResizeCase& c, std::ostream* os) { *os << c.name; }

class OneDnnResizeTest : public ::testing::TestWithParam<ResizeCase> {};

TEST_P(OneDnnResizeTest, EqualsTheReferenceKernel) {
  const ResizeCase& c = GetParam();
  Attributes a;
  a.set("mode", c.mode);
  if (!c.ctm.empty()) a.set("coordinate_transformation_mode", c.ctm);
  if (!c.nearest_mode.empty()) a.set("nearest_mode", c.nearest_mode);
  const Tensor x = random_tensor(c.x, 11);
  if (!c.scales.empty()) {
    expect_same("Resize", {x, Tensor(), Tensor::from_vector<float>(Shape{4}, c.scales)}, a, {2});
  } else {
    expect_same("Resize", {x, Tensor(), Tensor(), Tensor::from_vector<int64_t>(Shape{4}, c.sizes)},
                a, {3});
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, OneDnnResizeTest,
    ::testing::Values(
        ResizeCase{"YoloAsymmetricFloor", {1, 8, 20, 20}, {1, 1, 2, 2}, {}, "asymmetric", "floor"},
        ResizeCase{"HalfPixelDefault", {2, 3, 5, 7}, {1, 1, 2, 2}, {}, "", ""},
        ResizeCase{"PytorchHalfPixel",
                   {1, 4, 6, 5},
                   {1, 1, 3, 2},
                   {},
                   "pytorch_half_pixel",
                   "round_prefer_floor"},
        ResizeCase{
            "WholeFactorsOfThreeAndFour", {2, 2, 4, 3}, {1, 1, 3, 4}, {}, "asymmetric", "floor"},
        ResizeCase{"Sizes", {1, 5, 6, 4}, {}, {1, 5, 12, 12}, "half_pixel", "round_prefer_floor"},
        // Left to the reference kernel: the results agree all the same.
        ResizeCase{"NotWholeScale", {1, 2, 4, 4}, {1, 1, 1.5f, 2}, {}, "asymmetric", "floor"},
        ResizeCase{"AsymmetricRoundPreferCeil",
                   {1, 2, 4, 4},
                   {1, 1, 3, 3},
                   {},
                   "asymmetric",
                   "round_prefer_ceil"},
        ResizeCase{"Linear", {1, 2, 4, 4}, {1, 1, 2, 2}, {}, "half_pixel", "", "linear"}),
    [](const ::testing::TestParamInfo<ResizeCase>& p) { return p.param.name; });

// The factories take the fast path for the cases above that it covers and leave the rest to the
// reference kernel (so the comparisons above compare two different kernels where they should).
TEST(OneDnnPoolFactoryTest, TakesTheFastPathWhereItApplies) {
  const std::vector<runtime::cpu::KernelEntry> entries = runtime::cpu::onednn_pool_kernels();
  if (entries.empty()) GTEST_SKIP() << "built without oneDNN (KESTREL_ONEDNN=OFF)";
  auto create = [&](const runtime::KernelDef& def) {
    for (const runtime::cpu::KernelEntry& e : entries)
      if (e.op_type == def.op_type) return e.create(def).status().code();
    return StatusCode::kNotFound;
  };
  runtime::KernelDef pool;
  pool.op_type = "MaxPool";
  pool.attrs.set("kernel_shape", ints{5, 5});
  pool.attrs.set("pads", ints{2, 2, 2, 2});
  pool.input_dtypes = {DType::kFloat32};
  pool.output_dtypes = {DType::kFloat32};
  EXPECT_EQ(create(pool), StatusCode::kOk);
  runtime::KernelDef with_indices = pool;
  with_indices.output_dtypes.push_back(DType::kInt64);
  EXPECT_EQ(create(with_indices), StatusCode::kUnimplemented);
  runtime::KernelDef dilated = pool;
  dilated.attrs.set("dilations", ints{2, 2});
  EXPECT_EQ(create(dilated), StatusCode::kUnimplemented);
  runtime::KernelDef half = pool;
  half.input_dtypes = {DType::kFloat16};
  EXPECT_EQ(create(half), StatusCode::kUnimplemented);

  runtime::KernelDef resize;
  resize.op_type = "Resize";
  resize.attrs.set("mode", std::string("nearest"));
  resize.attrs.set("coordinate_transformation_mode", std::string("asymmetric"));
  resize.attrs.set("nearest_mode", std::string("floor"));
  resize.input_dtypes = {DType::kFloat32, DType::kUndefined, DType::kFloat32};
  resize.output_dtypes = {DType::kFloat32};
  resize.constant_inputs = {Tensor(), Tensor(), Tensor::from_vector<float>(Shape{4}, {1, 1, 2, 2})};
  EXPECT_EQ(create(resize), StatusCode::kOk);
  runtime::KernelDef fractional = resize;
  fractional.constant_inputs[2] = Tensor::from_vector<float>(Shape{4}, {1, 1, 1.5f, 2});
  EXPECT_EQ(create(fractional), StatusCode::kUnimplemented);
  runtime::KernelDef ceil = resize;
  ceil.attrs.set("nearest_mode", std::string("ceil"));
  EXPECT_EQ(create(ceil), StatusCode::kUnimplemented);
  runtime::KernelDef linear = resize;
  linear.attrs.set("mode", std::string("linear"));
  EXPECT_EQ(create(linear), StatusCode::kUnimplemented);
  runtime::KernelDef runtime_scales = resize;
  runtime_scales.constant_inputs.resize(2);
  EXPECT_EQ(create(runtime_scales), StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace kestrel::testing
