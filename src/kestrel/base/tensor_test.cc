#include "kestrel/base/tensor.h"

#include <gtest/gtest.h>

namespace kestrel {
namespace {

TEST(TensorTest, AllocatesAlignedHostMemory) {
  StatusOr<Tensor> t = Tensor::allocate(DType::kFloat32, Shape{2, 3});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->num_elements(), 6);
  EXPECT_EQ(t->nbytes(), 24u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->raw_data()) % 64, 0u);
}

TEST(TensorTest, CopiesShareStorageAndCloneDoesNot) {
  Tensor a = Tensor::from_vector<int32_t>({2}, {1, 2});
  Tensor shared = a;
  Tensor copy = a.clone().value();
  a.data<int32_t>()[0] = 9;
  EXPECT_EQ(shared.data<int32_t>()[0], 9);
  EXPECT_EQ(copy.data<int32_t>()[0], 1);
}

TEST(TensorTest, RefusesOversizedAndOverflowingShapes) {
  EXPECT_EQ(Tensor::allocate(DType::kFloat32, Shape{int64_t{1} << 40}).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(
      Tensor::allocate(DType::kFloat32, Shape{int64_t{1} << 40, int64_t{1} << 40}).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensor::allocate(DType::kFloat32, Shape{-1}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ShapeTest, BroadcastsLikeNumpy) {
  EXPECT_EQ(broadcast_shapes(Shape{1, 3, 1}, Shape{4, 1, 5}).value(), (Shape{4, 3, 5}));
  EXPECT_EQ(broadcast_shapes(Shape{}, Shape{2}).value(), (Shape{2}));
  EXPECT_FALSE(broadcast_shapes(Shape{2}, Shape{3}).ok());
}

}  // namespace
}  // namespace kestrel
