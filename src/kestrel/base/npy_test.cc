#include "kestrel/base/npy.h"

#include <gtest/gtest.h>

namespace kestrel {
namespace {

TEST(NpyTest, RoundTripsEveryNumpyType) {
  const Tensor f = Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6.5f});
  StatusOr<std::string> bytes = encode_npy(f);
  ASSERT_TRUE(bytes.ok());
  StatusOr<Tensor> back = parse_npy(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dtype(), DType::kFloat32);
  EXPECT_EQ(back->shape(), (Shape{2, 3}));
  EXPECT_EQ(back->to_double_vector(), f.to_double_vector());

  const Tensor b = Tensor::from_vector<bool>({3}, {true, false, true});
  StatusOr<Tensor> b2 = parse_npy(encode_npy(b).value());
  ASSERT_TRUE(b2.ok());
  EXPECT_EQ(b2->to_double_vector(), (std::vector<double>{1, 0, 1}));

  const Tensor s = Tensor::scalar<int64_t>(-7);
  StatusOr<Tensor> s2 = parse_npy(encode_npy(s).value());
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->rank(), 0u);
  EXPECT_EQ(s2->data<int64_t>()[0], -7);
}

TEST(NpyTest, RejectsMalformedFiles) {
  const std::string good = encode_npy(Tensor::from_vector<float>({4}, {1, 2, 3, 4})).value();
  EXPECT_EQ(parse_npy("hello").status().code(), StatusCode::kInvalidArgument);
  // Truncated data.
  EXPECT_FALSE(parse_npy(good.substr(0, good.size() - 1)).ok());
  // Header length pointing past the end.
  std::string bad = good;
  bad[8] = '\xff';
  bad[9] = '\x7f';
  EXPECT_FALSE(parse_npy(bad).ok());
  // A declared shape whose size overflows.
  std::string huge = good;
  const size_t pos = huge.find("(4,)");
  huge.replace(pos, 4, "(99999999999,99999999999)");
  EXPECT_FALSE(parse_npy(huge).ok());
  // Every truncation is rejected, never crashes.
  for (size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(parse_npy(good.substr(0, n)).ok());
}

}  // namespace
}  // namespace kestrel
