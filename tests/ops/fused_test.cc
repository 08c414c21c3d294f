// Kestrel's FusedElementwise (ir/ops/fused.cc) on the CPU reference kernel: programs against
// hand-computed values, broadcasting, float16 rounding once, the rank and values it accepts, and
// malformed programs rejected with a message instead of reading outside the registers.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "op_test_util.h"

namespace kestrel::testing {
namespace {

using strings = std::vector<std::string>;

Attributes program(strings ops, ints args, floats params = {}) {
  Attributes a;
  a.set("ops", std::move(ops));
  a.set("args", std::move(args));
  if (!params.empty()) a.set("params", std::move(params));
  return a;
}

TEST(FusedElementwiseTest, SiluPlusBiasBroadcasts) {
  // y = x * sigmoid(x) + bias, bias broadcast along the rows.
  const Tensor x = Tensor::from_vector<float>({2, 3}, {-1, 0.5f, 2, 3, -2, 0.25f});
  const Tensor bias = Tensor::from_vector<float>({3}, {10, 20, 30});
  StatusOr<std::vector<Tensor>> out = run_op(
      "FusedElementwise", {x, bias}, program({"Sigmoid", "Mul", "Add"}, {0, -1, 0, 2, 3, 1}));
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ((*out)[0].shape(), (Shape{2, 3}));
  const std::vector<double> got = values((*out)[0]);
  const float xs[] = {-1, 0.5f, 2, 3, -2, 0.25f};
  for (int i = 0; i < 6; ++i) {
    const float want = xs[i] * (1.0f / (1.0f + std::exp(-xs[i]))) + 10.0f * (1 + i % 3);
    EXPECT_EQ(got[i], want) << i;
  }
}

TEST(FusedElementwiseTest, ConstantsAndParametrizedInstructions) {
  const Tensor x = Tensor::from_vector<float>({5}, {-3, -0.5f, 0, 0.5f, 3});
  // LeakyRelu(0.1) -> Clip(-0.2, 1) -> * 2 -> HardSigmoid(0.5, 0.25)
  StatusOr<std::vector<Tensor>> out = run_op(
      "FusedElementwise", {x},
      program({"LeakyRelu", "Clip", "Const", "Mul", "HardSigmoid"},
              {0, -1, 1, -1, -1, -1, 2, 3, 4, -1}, {0.1f, 0, -0.2f, 1, 2, 0, 0, 0, 0.5f, 0.25f}));
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<double> want;
  for (float v : {-3.0f, -0.5f, 0.0f, 0.5f, 3.0f}) {
    float t = v < 0 ? 0.1f * v : v;
    t = t < -0.2f ? -0.2f : (t > 1 ? 1 : t);
    t = t * 2;
    want.push_back(std::max(0.0f, std::min(1.0f, 0.5f * t + 0.25f)));
  }
  EXPECT_EQ(values((*out)[0]), want);
}

TEST(FusedElementwiseTest, OutputHasTheBroadcastOfAllInputs) {
  const Tensor a = Tensor::from_vector<float>({3, 1}, {1, 2, 3});
  const Tensor b = Tensor::from_vector<float>({1, 2}, {10, 20});
  const Tensor c = Tensor::from_vector<float>({1, 1, 1}, {100});
  StatusOr<std::vector<Tensor>> out =
      run_op("FusedElementwise", {a, b, c}, program({"Add", "Sub"}, {0, 1, 3, 2}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{1, 3, 2}));
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{-89, -79, -88, -78, -87, -77}));
}

TEST(FusedElementwiseTest, Float16RoundsOnceAtTheEnd) {
  // 1 + 2^-11 + 2^-11 is 1 + 2^-10 in float, representable in half; rounding after each Add
  // (ties to even) would give 1.
  const Tensor one = Tensor::from_vector<Half>({1}, {Half(1.0f)});
  const float tiny = std::ldexp(1.0f, -11);
  StatusOr<std::vector<Tensor>> out =
      run_op("FusedElementwise", {one},
             program({"Const", "Add", "Add"}, {-1, -1, 0, 1, 2, 1}, {tiny, 0, 0, 0, 0, 0}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].data<Half>()[0].bits, Half(1.0f + 2 * tiny).bits);
  EXPECT_NE(Half(1.0f + 2 * tiny).bits, Half(1.0f).bits);
}

TEST(FusedElementwiseTest, ScalarsAndEmptyTensors) {
  const Tensor s = Tensor::from_vector<float>({}, {4});
  StatusOr<std::vector<Tensor>> out =
      run_op("FusedElementwise", {s}, program({"Sqrt", "Neg"}, {0, -1, 1, -1}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), Shape{});
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{-2}));
  const Tensor empty = Tensor::allocate(DType::kFloat32, Shape{0, 3}).value();
  out = run_op("FusedElementwise", {empty, s}, program({"Mul"}, {0, 1}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{0, 3}));
}

TEST(FusedElementwiseTest, NanPropagatesThroughMinAndMax) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor a = Tensor::from_vector<float>({2}, {nan, 1});
  const Tensor b = Tensor::from_vector<float>({2}, {0, nan});
  StatusOr<std::vector<Tensor>> out =
      run_op("FusedElementwise", {a, b}, program({"Min", "Max"}, {0, 1, 1, 2}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(std::isnan(values((*out)[0])[0]));
  EXPECT_TRUE(std::isnan(values((*out)[0])[1]));
}

TEST(FusedElementwiseTest, MalformedProgramsAreRejected) {
  const Tensor x = Tensor::from_vector<float>({2}, {1, 2});
  auto rejects = [&](const Attributes& a, const std::string& words) {
    StatusOr<std::vector<Tensor>> out = run_op("FusedElementwise", {x}, a);
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << words;
    EXPECT_NE(out.status().message().find(words), std::string::npos) << out.status();
  };
  rejects(program({"Relu", "Frobnicate"}, {0, -1, 1, -1}), "unknown");
  rejects(program({"Add"}, {0, 1}), "reads value 1");                // no result yet, one input
  rejects(program({"Neg", "Add"}, {0, -1, 0, 2}), "reads value 2");  // itself
  rejects(program({"Neg"}, {-1, -1}), "reads value -1");
  rejects(program({"Neg"}, {0, 0}), "has 1 operand");
  rejects(program({"Neg"}, {0}), "expected 2 per instruction");
  rejects(program({"Neg"}, {0, -1}, {1, 2, 3}), "params has 3 entries");
  rejects(program({}, {}), "empty");
}

TEST(FusedElementwiseTest, InputsMustShareAFloatTypeAndBroadcast) {
  const Tensor x = Tensor::from_vector<float>({2}, {1, 2});
  const Tensor i = Tensor::from_vector<int32_t>({2}, {1, 2});
  const Tensor three = Tensor::from_vector<float>({3}, {1, 2, 3});
  const Tensor h = Tensor::from_vector<Half>({2}, {Half(1.0f), Half(2.0f)});
  EXPECT_EQ(run_op("FusedElementwise", {i, i}, program({"Add"}, {0, 1})).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(run_op("FusedElementwise", {x, h}, program({"Add"}, {0, 1})).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(run_op("FusedElementwise", {x, three}, program({"Add"}, {0, 1})).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::testing
