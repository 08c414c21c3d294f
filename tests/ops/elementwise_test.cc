// Edge cases of the elementwise operators beyond ONNX's node tests.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "op_test_util.h"

namespace kestrel::testing {
namespace {

TEST(ElementwiseTest, AddBroadcastsAcrossRanks) {
  const Tensor a = Tensor::from_vector<float>({2, 1, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor b = Tensor::from_vector<float>({2, 1}, {10, 20});
  StatusOr<std::vector<Tensor>> out = run_op("Add", {a, b});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(values((*out)[0]),
            (std::vector<double>{11, 12, 13, 21, 22, 23, 14, 15, 16, 24, 25, 26}));
}

TEST(ElementwiseTest, IntegerDivisionByZeroIsAnErrorNotACrash) {
  const Tensor a = Tensor::from_vector<int32_t>({2}, {4, 5});
  const Tensor b = Tensor::from_vector<int32_t>({2}, {2, 0});
  StatusOr<std::vector<Tensor>> out = run_op("Div", {a, b});
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("division by zero"), std::string::npos);
}

TEST(ElementwiseTest, IntegerOverflowWrapsInsteadOfUndefinedBehaviour) {
  const Tensor a = Tensor::from_vector<int32_t>({1}, {std::numeric_limits<int32_t>::max()});
  const Tensor b = Tensor::from_vector<int32_t>({1}, {1});
  StatusOr<std::vector<Tensor>> out = run_op("Add", {a, b});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].data<int32_t>()[0], std::numeric_limits<int32_t>::min());
}

TEST(ElementwiseTest, CastFromFloatSaturatesAndMapsNanToZero) {
  const Tensor x = Tensor::from_vector<float>(
      {4}, {1e20f, -1e20f, std::numeric_limits<float>::quiet_NaN(), -2.7f});
  StatusOr<std::vector<Tensor>> out =
      run_op("Cast", {x}, attrs({{"to", static_cast<int64_t>(DType::kInt32)}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{2147483647, -2147483648.0, 0, -2}));
}

TEST(ElementwiseTest, HalfPrecisionRoundsOnceOnTheWayOut) {
  const Tensor x = Tensor::from_vector<Half>({2}, {Half(0.5f), Half(-3.0f)});
  StatusOr<std::vector<Tensor>> out = run_op("Sigmoid", {x});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].data<Half>()[0].bits, Half(1.0f / (1.0f + std::exp(-0.5f))).bits);
  EXPECT_EQ((*out)[0].data<Half>()[1].bits, Half(1.0f / (1.0f + std::exp(3.0f))).bits);
}

TEST(ElementwiseTest, RejectsOperandsOfDifferentTypes) {
  const Tensor a = Tensor::from_vector<float>({1}, {1});
  const Tensor b = Tensor::from_vector<int64_t>({1}, {1});
  EXPECT_EQ(run_op("Mul", {a, b}).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::testing
