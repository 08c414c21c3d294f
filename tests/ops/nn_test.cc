// Edge cases of the neural-network operators beyond ONNX's node tests: grouped, depthwise, dilated
// and asymmetrically padded convolutions checked against the definition, YOLOv5's 6x6 stride-2
// stem, half-precision rounding, pools with ceil_mode and indices, Resize as YOLOv5 uses it and
// the opset 18/19 Resize features (values from ONNX's reference implementation), broadcasting Gemm
// and MatMul, precise errors for bad shapes, and the channels-last FusedConv and pools (Kestrel's
// layouts, ir/ops/nn.cc) against their channels-first results.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "kestrel/ir/shape_inference.h"
#include "op_test_util.h"

namespace kestrel::testing {
namespace {

// Random non-zero values in [-2, -0.5] U [0.5, 2], as T.
template <typename T = float>
Tensor random(Shape shape, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.5f, 2.0f);
  std::vector<T> v(static_cast<size_t>(shape.num_elements()));
  for (T& x : v) x = T((rng() % 2 ? 1.0f : -1.0f) * dist(rng));
  return Tensor::from_vector<T>(std::move(shape), v);
}

// 1, 2, 3, ... as float.
Tensor iota(Shape shape) {
  std::vector<float> v(static_cast<size_t>(shape.num_elements()));
  std::iota(v.begin(), v.end(), 1.0f);
  return Tensor::from_vector<float>(std::move(shape), v);
}

Tensor int64s(std::vector<int64_t> v) {
  return Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(v.size())}, v);
}
Tensor float32s(std::vector<float> v) {
  return Tensor::from_vector<float>(Shape{static_cast<int64_t>(v.size())}, v);
}

// Runs a one-output operator, failing the test on an error.
Tensor run1(const std::string& op, const std::vector<Tensor>& inputs, const Attributes& a = {},
            const OpOptions& options = {}) {
  StatusOr<std::vector<Tensor>> out = run_op(op, inputs, a, options);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0] : Tensor();
}

// The error of running an operator that must fail.
Status error_of(const std::string& op, const std::vector<Tensor>& inputs, const Attributes& a = {},
                const OpOptions& options = {}) {
  return run_op(op, inputs, a, options).status();
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want,
                 double rtol = 1e-6) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], rtol * (1 + std::abs(want[i]))) << "element " << i;
  }
}

// ---- Conv against its definition ----

struct ConvParams {
  int64_t group = 1;
  std::array<int64_t, 2> strides = {1, 1}, dilations = {1, 1};
  std::array<int64_t, 4> pads = {0, 0, 0, 0};  // top, left, bottom, right

  Attributes attrs() const {
    return kestrel::testing::attrs({{"group", group},
                                    {"strides", ints(strides.begin(), strides.end())},
                                    {"dilations", ints(dilations.begin(), dilations.end())},
                                    {"pads", ints(pads.begin(), pads.end())}});
  }
};

// 2-D convolution straight from the definition, in double: y[n][m][oh][ow] = b[m] + sum over the
// channels c of m's group and the kernel taps of x[n][c][oh*s - pad + kh*d][...] * w[m][c][kh][kw].
std::vector<double> direct_conv2d(const Tensor& x, const Tensor& w, const Tensor* b,
                                  const ConvParams& p, const Shape& y) {
  const std::vector<double> xv = x.to_double_vector(), wv = w.to_double_vector();
  const std::vector<double> bv = b ? b->to_double_vector() : std::vector<double>();
  const int64_t C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t M = w.shape()[0], Cg = w.shape()[1], KH = w.shape()[2], KW = w.shape()[3];
  std::vector<double> out;
  for (int64_t n = 0; n < y[0]; ++n) {
    for (int64_t m = 0; m < M; ++m) {
      const int64_t g = m / (M / p.group);
      for (int64_t oh = 0; oh < y[2]; ++oh) {
        for (int64_t ow = 0; ow < y[3]; ++ow) {
          double sum = b ? bv[m] : 0.0;
          for (int64_t c = 0; c < Cg; ++c) {
            for (int64_t kh = 0; kh < KH; ++kh) {
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = oh * p.strides[0] - p.pads[0] + kh * p.dilations[0];
                const int64_t iw = ow * p.strides[1] - p.pads[1] + kw * p.dilations[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                sum += xv[((n * C + g * Cg + c) * H + ih) * W + iw] *
                       wv[((m * Cg + c) * KH + kh) * KW + kw];
              }
            }
          }
          out.push_back(sum);
        }
      }
    }
  }
  return out;
}

TEST(ConvTest, GroupedDilatedStridedAsymmetricPadsMatchTheDefinition) {
  ConvParams p;
  p.group = 2;
  p.strides = {2, 1};
  p.dilations = {1, 2};
  p.pads = {1, 0, 2, 1};
  const Tensor x = random({2, 6, 9, 8}, 1), w = random({4, 3, 3, 3}, 2), b = random({4}, 3);
  const Tensor y = run1("Conv", {x, w, b}, p.attrs(), {.constant_inputs = {1, 2}});
  // H: (9 + 1 + 2 - 3) / 2 + 1 = 5; W: (8 + 0 + 1 - 5) / 1 + 1 = 5.
  ASSERT_EQ(y.shape(), (Shape{2, 4, 5, 5}));
  expect_near(values(y), direct_conv2d(x, w, &b, p, y.shape()));
}

TEST(ConvTest, DepthwiseWithChannelMultiplierMatchesTheDefinition) {
  ConvParams p;
  p.group = 4;
  p.pads = {1, 1, 1, 1};
  const Tensor x = random({1, 4, 7, 7}, 4), w = random({8, 1, 3, 3}, 5);
  const Tensor y = run1("Conv", {x, w}, p.attrs());
  ASSERT_EQ(y.shape(), (Shape{1, 8, 7, 7}));
  expect_near(values(y), direct_conv2d(x, w, nullptr, p, y.shape()));
}

TEST(ConvTest, YoloV5StemSixBySixStrideTwo) {
  // YOLOv5's first layer: Conv(3 -> 16, k=6, s=2, p=2), 640 -> 320 (here 64 -> 32).
  ConvParams p;
  p.strides = {2, 2};
  p.pads = {2, 2, 2, 2};
  const Tensor x = random({2, 3, 64, 64}, 6), w = random({16, 3, 6, 6}, 7), b = random({16}, 8);
  const Tensor y = run1("Conv", {x, w, b}, p.attrs(), {.constant_inputs = {1, 2}});
  ASSERT_EQ(y.shape(), (Shape{2, 16, 32, 32}));
  expect_near(values(y), direct_conv2d(x, w, &b, p, y.shape()));
}

// Float16 convolutions accumulate in double and round once: every output is the half nearest to
// the exact result (float accumulation would miss some).
TEST(ConvTest, HalfPrecisionIsTheCorrectlyRoundedExactResult) {
  ConvParams p;
  p.strides = {2, 2};
  p.pads = {2, 2, 2, 2};
  const Tensor x = random<Half>({1, 3, 16, 16}, 9), w = random<Half>({8, 3, 6, 6}, 10);
  const Tensor b = random<Half>({8}, 11);
  const Tensor y = run1("Conv", {x, w, b}, p.attrs());
  ASSERT_EQ(y.dtype(), DType::kFloat16);
  const std::vector<double> exact = direct_conv2d(x, w, &b, p, y.shape());
  const Half* got = y.data<Half>();
  for (size_t i = 0; i < exact.size(); ++i) {
    const double g = float(got[i]);
    const double up = float(Half::from_bits(got[i].bits + 1));
    const double down = float(Half::from_bits(got[i].bits - 1));
    EXPECT_LE(std::abs(g - exact[i]), std::abs(up - exact[i])) << i;
    EXPECT_LE(std::abs(g - exact[i]), std::abs(down - exact[i])) << i;
  }
}

// 1 + 2^-11 + 2^-30 lies just above the halfway point between the halves 1 and 1 + 2^-10. A float
// accumulator loses the 2^-30, and so does rounding the double sum to float first: both give 1.
TEST(ConvTest, HalfPrecisionRoundsTheDoubleSumOnce) {
  const Tensor x = Tensor::from_vector<Half>(
      {1, 3, 1, 1}, {Half(1.0f), Half(std::ldexp(1.0f, -11)), Half(std::ldexp(1.0f, -15))});
  const Tensor w = Tensor::from_vector<Half>({1, 3, 1, 1},
                                             {Half(1.0f), Half(1.0f), Half(std::ldexp(1.0f, -15))});
  const Tensor y = run1("Conv", {x, w});
  EXPECT_EQ(values(y), (std::vector<double>{1 + std::ldexp(1.0, -10)}));
  const Tensor g = run1("MatMul", {x.reshaped({1, 3}), w.reshaped({3, 1})});
  EXPECT_EQ(values(g), (std::vector<double>{1 + std::ldexp(1.0, -10)}));
}

TEST(ConvTest, OneAndThreeSpatialAxes) {
  const Tensor x1 = iota({1, 1, 5});
  const Tensor w1 = Tensor::from_vector<float>({1, 1, 2}, {1, -1});
  EXPECT_EQ(values(run1("Conv", {x1, w1})), (std::vector<double>{-1, -1, -1, -1}));
  // All ones, 3x3x3 input, 2x2x2 kernel, padding 1: each output counts the overlapping taps.
  const Tensor x3 = Tensor::from_vector<float>({1, 1, 3, 3, 3}, std::vector<float>(27, 1.0f));
  const Tensor w3 = Tensor::from_vector<float>({1, 1, 2, 2, 2}, std::vector<float>(8, 1.0f));
  const Tensor y3 = run1("Conv", {x3, w3}, attrs({{"pads", ints{1, 1, 1, 1, 1, 1}}}));
  ASSERT_EQ(y3.shape(), (Shape{1, 1, 4, 4, 4}));
  const std::vector<double> v = values(y3);
  EXPECT_EQ(v[0], 1);                    // corner: one tap
  EXPECT_EQ(v[1], 2);                    // edge
  EXPECT_EQ(v[(1 * 4 + 1) * 4 + 1], 8);  // inside
}

TEST(ConvTest, SameUpperPadsAtTheEndAndSameLowerAtTheBeginning) {
  const Tensor x = iota({1, 1, 4, 4});
  const Tensor w = Tensor::from_vector<float>({1, 1, 2, 2}, {1, 1, 1, 1});
  const Tensor upper = run1("Conv", {x, w}, attrs({{"auto_pad", std::string("SAME_UPPER")}}));
  const Tensor lower = run1("Conv", {x, w}, attrs({{"auto_pad", std::string("SAME_LOWER")}}));
  ASSERT_EQ(upper.shape(), (Shape{1, 1, 4, 4}));
  ASSERT_EQ(lower.shape(), (Shape{1, 1, 4, 4}));
  EXPECT_EQ(values(upper)[0], 1 + 2 + 5 + 6);
  EXPECT_EQ(values(upper)[15], 16);
  EXPECT_EQ(values(lower)[0], 1);
  EXPECT_EQ(values(lower)[15], 11 + 12 + 15 + 16);
}

TEST(ConvTest, EmptyBatch) {
  const Tensor y = run1("Conv", {random({0, 3, 8, 8}), random({16, 3, 3, 3})});
  EXPECT_EQ(y.shape(), (Shape{0, 16, 6, 6}));
}

TEST(ConvTest, BadShapesArePreciseErrors) {
  Status s = error_of("Conv", {random({1, 3, 8, 8}), random({16, 4, 3, 3})});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("weights [16,4,3,3] expect 4 input channels per group, but input "
                             "[1,3,8,8] has 3 channels"),
            std::string::npos)
      << s;
  s = error_of("Conv", {random({1, 3, 8, 8}), random({16, 1, 3, 3})}, attrs({{"group", 2}}));
  EXPECT_NE(s.message().find("has 3 channels, which group=2 does not divide"), std::string::npos)
      << s;
  s = error_of("Conv", {random({1, 4, 8, 8}), random({6, 1, 3, 3})}, attrs({{"group", 4}}));
  EXPECT_NE(s.message().find("6 output channels, which group=4 does not divide"), std::string::npos)
      << s;
  s = error_of("Conv", {random({1, 3, 8, 8}), random({16, 3, 3, 3})},
               attrs({{"kernel_shape", ints{5, 5}}}));
  EXPECT_NE(s.message().find("kernel_shape [5,5] does not match"), std::string::npos) << s;
  s = error_of("Conv", {random({1, 3, 8, 8}), random({16, 3, 3, 3}), random({8})});
  EXPECT_NE(s.message().find("bias has shape [8], expected [16]"), std::string::npos) << s;
  s = error_of("Conv", {random({1, 3, 2, 2}), random({16, 3, 3, 3})});
  EXPECT_NE(s.message().find("smaller than the window's extent 3"), std::string::npos) << s;
  s = error_of("Conv", {random({1, 3, 8, 8}), random({16, 3, 3})});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  s = error_of("Conv", {random({1, 3, 8, 8}), random({16, 3, 3, 3})},
               attrs({{"strides", ints{1, 1, 1}}}));
  EXPECT_NE(s.message().find("attribute 'strides' has 3 values, expected 2"), std::string::npos)
      << s;
  s = error_of("Conv", {random({1, 3, 8, 8}), random({16, 3, 3, 3})},
               attrs({{"dilations", ints{std::numeric_limits<int64_t>::max(), 1}}}));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
}

TEST(ConvTest, FlopsAreTwicePerMultiplyAccumulate) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = 17;
  ir::Value* x = g->add_input("x", {DType::kFloat32, ir::SymShape::from(Shape{2, 4, 10, 10})});
  ir::Value* w = g->add_constant("w", random({6, 2, 3, 3}));
  ir::Node* n = g->add_node("Conv", {x, w}, 1, attrs({{"group", 2}}), "conv");
  g->add_output(n->output(0));
  StatusOr<ir::InferredTypes> types = ir::infer_types(*g, {});
  ASSERT_TRUE(types.ok()) << types.status();
  StatusOr<std::unordered_map<const ir::Node*, int64_t>> flops = ir::count_flops(*g, *types);
  ASSERT_TRUE(flops.ok()) << flops.status();
  // 2 x (2 * 6 * 8 * 8 outputs) x (2 channels * 9 taps).
  EXPECT_EQ(flops->at(n), 2 * (2 * 6 * 8 * 8) * (2 * 9));
}

// ---- ConvTranspose ----

TEST(ConvTransposeTest, GroupedStridedMatchesTheScatterDefinition) {
  const Tensor x = random({1, 4, 3, 3}, 12), w = random({4, 2, 3, 3}, 13), b = random({4}, 14);
  const Tensor y = run1("ConvTranspose", {x, w, b},
                        attrs({{"group", 2},
                               {"strides", ints{2, 2}},
                               {"pads", ints{1, 1, 1, 1}},
                               {"output_padding", ints{1, 1}}}));
  // 2 * (3 - 1) + 1 + 3 - 2 = 6.
  ASSERT_EQ(y.shape(), (Shape{1, 4, 6, 6}));
  const std::vector<double> xv = values(x), wv = values(w), bv = values(b);
  std::vector<double> want(4 * 36);
  for (int64_t m = 0; m < 4; ++m) {
    for (int64_t i = 0; i < 36; ++i) want[m * 36 + i] = bv[m];
  }
  for (int64_t c = 0; c < 4; ++c) {
    const int64_t g = c / 2;
    for (int64_t mm = 0; mm < 2; ++mm) {
      for (int64_t ih = 0; ih < 3; ++ih) {
        for (int64_t iw = 0; iw < 3; ++iw) {
          for (int64_t kh = 0; kh < 3; ++kh) {
            for (int64_t kw = 0; kw < 3; ++kw) {
              const int64_t oh = ih * 2 - 1 + kh, ow = iw * 2 - 1 + kw;
              if (oh < 0 || oh >= 6 || ow < 0 || ow >= 6) continue;
              want[(g * 2 + mm) * 36 + oh * 6 + ow] +=
                  xv[(c * 3 + ih) * 3 + iw] * wv[((c * 2 + mm) * 3 + kh) * 3 + kw];
            }
          }
        }
      }
    }
  }
  expect_near(values(y), want);
}

TEST(ConvTransposeTest, BadChannelsArePreciseErrors) {
  const Status s = error_of("ConvTranspose", {random({1, 3, 4, 4}), random({4, 2, 3, 3})});
  EXPECT_NE(s.message().find("weights [4,2,3,3] have 4 input channels (dimension 0), but input "
                             "[1,3,4,4] has 3"),
            std::string::npos)
      << s;
}

// ---- pools ----

TEST(PoolTest, MaxPoolCeilModeWithIndicesInBothStorageOrders) {
  // Two planes; the second is the first plus 100, so its indices are offset by 16.
  std::vector<float> v(32);
  for (int i = 0; i < 16; ++i) v[i] = float(i + 1), v[16 + i] = float(i + 101);
  const Tensor x = Tensor::from_vector<float>({1, 2, 4, 4}, v);
  for (int64_t order : {0, 1}) {
    StatusOr<std::vector<Tensor>> out = run_op("MaxPool", {x},
                                               attrs({{"kernel_shape", ints{3, 3}},
                                                      {"strides", ints{2, 2}},
                                                      {"ceil_mode", int64_t{1}},
                                                      {"storage_order", order}}),
                                               {.num_outputs = 2});
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ((*out)[0].shape(), (Shape{1, 2, 2, 2}));
    EXPECT_EQ(values((*out)[0]), (std::vector<double>{11, 12, 15, 16, 111, 112, 115, 116}));
    ASSERT_EQ((*out)[1].dtype(), DType::kInt64);
    // Row-major (h * 4 + w) or column-major (h + w * 4) positions of (2,2), (2,3), (3,2), (3,3).
    const std::vector<double> want = order == 0
                                         ? std::vector<double>{10, 11, 14, 15, 26, 27, 30, 31}
                                         : std::vector<double>{10, 14, 11, 15, 26, 30, 27, 31};
    EXPECT_EQ(values((*out)[1]), want);
  }
}

TEST(PoolTest, CeilModeDropsAWindowThatWouldStartInThePadding) {
  // in 5, kernel 2, stride 2, pads 1+1: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 3 would start at
  // 6 - 1 = 5, past the input: PyTorch and ONNX keep 3.
  const Tensor y = run1("MaxPool", {iota({1, 1, 1, 5})},
                        attrs({{"kernel_shape", ints{1, 2}},
                               {"strides", ints{1, 2}},
                               {"pads", ints{0, 1, 0, 1}},
                               {"ceil_mode", int64_t{1}}}));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 1, 3}));
  EXPECT_EQ(values(y), (std::vector<double>{1, 3, 5}));
}

TEST(PoolTest, MaxPoolOnInt8KeepsTheLowestValueAndPropagatesNanForFloats) {
  const Tensor x = Tensor::from_vector<int8_t>({1, 1, 2, 2}, {-128, -128, -128, -128});
  EXPECT_EQ(values(run1("MaxPool", {x}, attrs({{"kernel_shape", ints{2, 2}}}))),
            (std::vector<double>{-128}));
  const Tensor u = Tensor::from_vector<uint8_t>({1, 1, 1, 3}, {7, 255, 3});
  EXPECT_EQ(values(run1("MaxPool", {u}, attrs({{"kernel_shape", ints{1, 2}}}))),
            (std::vector<double>{255, 255}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor f = Tensor::from_vector<float>({1, 1, 1, 4}, {1, nan, 3, 4});
  const std::vector<double> y = values(run1("MaxPool", {f}, attrs({{"kernel_shape", ints{1, 2}}})));
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_TRUE(std::isnan(y[1]));
  EXPECT_EQ(y[2], 4);
}

TEST(PoolTest, AveragePoolCountsPaddingOnlyWhenAsked) {
  const Tensor x = Tensor::from_vector<float>({1, 1, 2, 2}, {1, 2, 3, 4});
  const Attributes a = attrs({{"kernel_shape", ints{2, 2}}, {"pads", ints{1, 1, 0, 0}}});
  // Output (2, 2): windows at (-1,-1), (-1,0), (0,-1), (0,0).
  EXPECT_EQ(values(run1("AveragePool", {x}, a)), (std::vector<double>{1, 1.5, 2, 2.5}));
  Attributes b = a;
  b.set("count_include_pad", int64_t{1});
  EXPECT_EQ(values(run1("AveragePool", {x}, b)), (std::vector<double>{0.25, 0.75, 1, 2.5}));
}

TEST(PoolTest, PadsMustBeSmallerThanTheWindow) {
  const Status s = error_of("MaxPool", {iota({1, 1, 4, 4})},
                            attrs({{"kernel_shape", ints{2, 2}}, {"pads", ints{2, 2, 2, 2}}}));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("must be smaller than the window's extent 2"), std::string::npos) << s;
}

TEST(PoolTest, GlobalPools) {
  const Tensor x = iota({1, 2, 2, 3});
  const Tensor avg = run1("GlobalAveragePool", {x});
  EXPECT_EQ(avg.shape(), (Shape{1, 2, 1, 1}));
  EXPECT_EQ(values(avg), (std::vector<double>{3.5, 9.5}));
  EXPECT_EQ(values(run1("GlobalMaxPool", {x})), (std::vector<double>{6, 12}));
}

// ---- channels-last FusedConv and pools (ir/ops/nn.cc's layouts) ----

// `t` with its channel axis (1) moved last ([N, C, S...] -> [N, S..., C]), or back.
Tensor move_channels(const Tensor& t, bool to_last) {
  const size_t r = t.rank();
  std::vector<size_t> perm = {0};  // output axis d reads input axis perm[d]
  if (to_last) {
    for (size_t d = 2; d < r; ++d) perm.push_back(d);
    perm.push_back(1);
  } else {
    perm.push_back(r - 1);
    for (size_t d = 1; d + 1 < r; ++d) perm.push_back(d);
  }
  std::vector<int64_t> dims(r), stride(r, 1);
  for (size_t d = r - 1; d > 0; --d) stride[d - 1] = stride[d] * t.shape()[d];
  for (size_t d = 0; d < r; ++d) dims[d] = t.shape()[perm[d]];
  Tensor out = Tensor::allocate(t.dtype(), Shape(dims)).value();
  const size_t size = dtype_size(t.dtype());
  std::vector<int64_t> index(r, 0);
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    int64_t at = 0;
    for (size_t d = 0; d < r; ++d) at += index[d] * stride[perm[d]];
    std::memcpy(static_cast<char*>(out.raw_data()) + i * size,
                static_cast<const char*>(t.raw_data()) + at * size, size);
    for (size_t d = r; d-- > 0;) {
      if (++index[d] < dims[d]) break;
      index[d] = 0;
    }
  }
  return out;
}
Tensor last(const Tensor& t) { return move_channels(t, true); }

// Bit patterns, so that NaNs compare equal and half-precision results must match exactly.
std::vector<uint8_t> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw_data());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// FusedConv channels-last on X, W, Z moved channels-last equals FusedConv NCHW, moved.
void expect_fused_conv_layouts_agree(const Tensor& x, const Tensor& w, const Tensor& b,
                                     const Tensor& z, Attributes a, bool reference = true) {
  const Tensor want = run1("FusedConv", {x, w, b, z}, a, {.constant_inputs = {1}});
  ASSERT_TRUE(want.defined());
  a.set("channels_last", int64_t{1});
  const Tensor got = run1("FusedConv", {last(x), last(w), b, z.defined() ? last(z) : z}, a,
                          {.reference = reference, .constant_inputs = {1}});
  ASSERT_TRUE(got.defined());
  EXPECT_EQ(got.shape(), last(want).shape());
  EXPECT_EQ(bytes_of(got), bytes_of(last(want)));
}

TEST(ChannelsLastTest, FusedConvMatchesTheChannelsFirstResult) {
  // Grouped, strided, dilated, asymmetric pads, bias, residual, SiLU.
  Attributes a = attrs({{"group", int64_t{2}},
                        {"strides", ints{2, 1}},
                        {"dilations", ints{1, 2}},
                        {"pads", ints{1, 0, 2, 1}},
                        {"activation", std::string("Silu")}});
  const Tensor x = random({2, 6, 9, 8}, 1), w = random({4, 3, 3, 3}, 2), b = random({4}, 3);
  expect_fused_conv_layouts_agree(x, w, b, random({2, 4, 5, 5}, 4), a);
  // The fast kernels leave channels-last to the reference: same result.
  expect_fused_conv_layouts_agree(x, w, b, random({2, 4, 5, 5}, 4), a, /*reference=*/false);
  // Depthwise with a channel multiplier, SAME_UPPER, LeakyRelu, no bias.
  expect_fused_conv_layouts_agree(random({1, 4, 7, 6}, 5), random({8, 1, 3, 3}, 6), Tensor(),
                                  Tensor(),
                                  attrs({{"group", int64_t{4}},
                                         {"auto_pad", std::string("SAME_UPPER")},
                                         {"strides", ints{2, 2}},
                                         {"activation", std::string("LeakyRelu")},
                                         {"activation_alpha", 0.1f}}));
  // YOLOv5's stem: 6x6 stride 2 over 3 channels.
  expect_fused_conv_layouts_agree(random({1, 3, 16, 16}, 7), random({8, 3, 6, 6}, 8),
                                  random({8}, 9), Tensor(),
                                  attrs({{"strides", ints{2, 2}}, {"pads", ints{2, 2, 2, 2}}}));
  // 1 and 3 spatial axes.
  expect_fused_conv_layouts_agree(
      random({2, 3, 11}, 10), random({5, 3, 3}, 11), random({5}, 12), random({2, 5, 5}, 13),
      attrs({{"strides", ints{2}}, {"activation", std::string("Relu")}}));
  expect_fused_conv_layouts_agree(random({1, 4, 5, 4, 6}, 14), random({6, 2, 2, 3, 1}, 15),
                                  random({6}, 16), Tensor(),
                                  attrs({{"group", int64_t{2}}, {"pads", ints{1, 0, 0, 0, 1, 0}}}));
  // Half precision: the same correctly rounded values.
  expect_fused_conv_layouts_agree(random<Half>({1, 3, 8, 8}, 17), random<Half>({4, 3, 3, 3}, 18),
                                  random<Half>({4}, 19), random<Half>({1, 4, 6, 6}, 20),
                                  attrs({{"activation", std::string("HardSwish")}}));
  // An empty batch.
  const Tensor y = run1("FusedConv", {random({0, 8, 8, 3}), random({16, 3, 3, 3})},
                        attrs({{"channels_last", int64_t{1}}}));
  EXPECT_EQ(y.shape(), (Shape{0, 6, 6, 16}));
}

TEST(ChannelsLastTest, FusedConvShapeErrorsNameTheChannelsLastShapes) {
  const Attributes a = attrs({{"channels_last", int64_t{1}}});
  // KCRS weights given to a channels-last convolution: C/group is read from the last axis.
  Status s = error_of("FusedConv", {random({1, 8, 8, 3}), random({16, 3, 3, 1})}, a);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("weights [16,3,3,1] expect 1 input channels per group, but input "
                             "[1,8,8,3] has 3 channels"),
            std::string::npos)
      << s;
  s = error_of("FusedConv", {random({1, 8, 8, 3}), random({16, 3, 3, 3}), random({1, 6, 6, 8})}, a);
  EXPECT_NE(s.message().find("bias has shape [1,6,6,8], expected [16]"), std::string::npos) << s;
  s = error_of("FusedConv",
               {random({1, 8, 8, 3}), random({16, 3, 3, 3}), Tensor(), random({1, 16, 6, 6})}, a);
  EXPECT_NE(s.message().find("residual input has shape [1,16,6,6], expected the output's "
                             "[1,6,6,16]"),
            std::string::npos)
      << s;
  s = error_of("FusedConv", {random({1, 8, 8, 3}), random({16, 3, 3, 3})},
               attrs({{"channels_last", int64_t{1}}, {"kernel_shape", ints{3, 1}}}));
  EXPECT_NE(s.message().find("kernel_shape [3,1] does not match"), std::string::npos) << s;
  s = error_of("FusedConv", {random({1, 2, 2, 3}), random({16, 3, 3, 3})}, a);
  EXPECT_NE(s.message().find("smaller than the window's extent 3"), std::string::npos) << s;
  s = error_of("FusedConv", {random({1, 8, 8, 3}), random({16, 3, 3, 3})},
               attrs({{"channels_last", int64_t{2}}}));
  EXPECT_NE(s.message().find("attribute 'channels_last' must be 0 or 1, got 2"), std::string::npos)
      << s;
  // ONNX's Conv has no such attribute.
  s = error_of("Conv", {random({1, 8, 8, 3}), random({16, 3, 3, 3})}, a);
  EXPECT_NE(s.message().find("channels_last"), std::string::npos) << s;
}

TEST(ChannelsLastTest, FusedConvFlopsDoNotDependOnTheLayout) {
  for (int64_t channels_last : {0, 1}) {
    auto g = std::make_unique<ir::Graph>();
    g->opset_version = 17;
    const Shape xs = channels_last ? Shape{2, 10, 10, 4} : Shape{2, 4, 10, 10};
    ir::Value* x = g->add_input("x", {DType::kFloat32, ir::SymShape::from(xs)});
    ir::Value* w =
        g->add_constant("w", random(channels_last ? Shape{6, 3, 3, 2} : Shape{6, 2, 3, 3}));
    ir::Node* n =
        g->add_node("FusedConv", {x, w}, 1,
                    attrs({{"group", int64_t{2}}, {"channels_last", channels_last}}), "conv");
    g->add_output(n->output(0));
    StatusOr<ir::InferredTypes> types = ir::infer_types(*g, {});
    ASSERT_TRUE(types.ok()) << types.status();
    StatusOr<std::unordered_map<const ir::Node*, int64_t>> flops = ir::count_flops(*g, *types);
    ASSERT_TRUE(flops.ok()) << flops.status();
    EXPECT_EQ(flops->at(n), 2 * (2 * 6 * 8 * 8) * (2 * 9));
  }
}

// Pool channels-last on X moved channels-last equals the pool NCHW, moved.
void expect_pool_layouts_agree(const std::string& op, const Tensor& x, Attributes a) {
  const Tensor want = run1(op, {x}, a);
  ASSERT_TRUE(want.defined());
  a.set("kestrel_channels_last", int64_t{1});
  const Tensor got = run1(op, {last(x)}, a);
  ASSERT_TRUE(got.defined());
  EXPECT_EQ(got.shape(), last(want).shape());
  EXPECT_EQ(bytes_of(got), bytes_of(last(want)));
}

TEST(ChannelsLastTest, PoolsMatchTheChannelsFirstResult) {
  const Attributes ceil = attrs({{"kernel_shape", ints{3, 2}},
                                 {"strides", ints{2, 2}},
                                 {"pads", ints{1, 0, 1, 1}},
                                 {"ceil_mode", int64_t{1}}});
  expect_pool_layouts_agree("MaxPool", random({2, 3, 9, 7}, 1), ceil);
  expect_pool_layouts_agree("AveragePool", random({2, 3, 9, 7}, 2), ceil);
  Attributes include_pad = ceil;
  include_pad.set("count_include_pad", int64_t{1});
  expect_pool_layouts_agree("AveragePool", random({2, 3, 9, 7}, 3), include_pad);
  // YOLOv5's SPPF pool.
  expect_pool_layouts_agree("MaxPool", random({1, 8, 10, 10}, 4),
                            attrs({{"kernel_shape", ints{5, 5}}, {"pads", ints{2, 2, 2, 2}}}));
  expect_pool_layouts_agree("MaxPool", random({2, 3, 9}, 5),
                            attrs({{"kernel_shape", ints{3}}, {"dilations", ints{2}}}));
  expect_pool_layouts_agree(
      "AveragePool", random({1, 2, 4, 5, 6}, 6),
      attrs({{"kernel_shape", ints{2, 2, 3}}, {"auto_pad", std::string("SAME_LOWER")}}));
  expect_pool_layouts_agree("MaxPool", random<Half>({1, 4, 6, 6}, 7),
                            attrs({{"kernel_shape", ints{2, 2}}, {"strides", ints{2, 2}}}));
  const Tensor q = Tensor::from_vector<int8_t>({1, 2, 2, 2}, {-128, 5, 7, -3, 0, 1, 2, 3});
  expect_pool_layouts_agree("MaxPool", q, attrs({{"kernel_shape", ints{2, 1}}}));
}

TEST(ChannelsLastTest, PoolErrors) {
  // No Indices output channels-last.
  const Status s =
      run_op("MaxPool", {random({1, 4, 4, 2})},
             attrs({{"kernel_shape", ints{2, 2}}, {"kestrel_channels_last", int64_t{1}}}),
             {.num_outputs = 2})
          .status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Indices output is not available with kestrel_channels_last=1"),
            std::string::npos)
      << s;
  // [N, H, W, C] = [1, 4, 2, 8]: the 3x3 window does not fit W = 2.
  const Status fit =
      error_of("AveragePool", {random({1, 4, 2, 8})},
               attrs({{"kernel_shape", ints{3, 3}}, {"kestrel_channels_last", int64_t{1}}}));
  EXPECT_NE(fit.message().find("spatial axis 1 has size 2"), std::string::npos) << fit;
  EXPECT_EQ(error_of("MaxPool", {random({1, 4, 4, 2})},
                     attrs({{"kernel_shape", ints{2, 2}}, {"kestrel_channels_last", int64_t{-1}}}))
                .code(),
            StatusCode::kInvalidArgument);
}

// ---- Resize ----

TEST(ResizeTest, NearestTimesTwoAsYoloV5UsesIt) {
  // YOLOv5's upsampling: scales [1, 1, 2, 2], asymmetric, nearest_mode floor: each pixel repeats.
  const Attributes a = attrs({{"mode", std::string("nearest")},
                              {"coordinate_transformation_mode", std::string("asymmetric")},
                              {"nearest_mode", std::string("floor")},
                              {"cubic_coeff_a", -0.75f}});
  const Tensor x = random({2, 3, 5, 4}, 15);
  const Tensor y = run1("Resize", {x, Tensor(), float32s({1, 1, 2, 2})}, a,
                        {.constant_inputs = {2}, .opset = 17});
  ASSERT_EQ(y.shape(), (Shape{2, 3, 10, 8}));
  const std::vector<double> xv = values(x), yv = values(y);
  for (int64_t p = 0; p < 6; ++p) {
    for (int64_t h = 0; h < 10; ++h) {
      for (int64_t w = 0; w < 8; ++w) {
        ASSERT_EQ(yv[(p * 10 + h) * 8 + w], xv[(p * 5 + h / 2) * 4 + w / 2]);
      }
    }
  }
  // Opset 11/12 exports pass an empty roi; uint8 images resize exactly.
  const Tensor u = Tensor::from_vector<uint8_t>({1, 1, 1, 2}, {7, 250});
  const Tensor yu = run1("Resize", {u, float32s({}), float32s({1, 1, 2, 2})}, a,
                         {.constant_inputs = {1, 2}, .opset = 12});
  EXPECT_EQ(values(yu), (std::vector<double>{7, 7, 250, 250, 7, 7, 250, 250}));
}

struct ResizeCase {
  std::string name;
  Attributes attrs;
  Tensor roi, scales, sizes;
  Shape shape;
  std::vector<double> want;  // from onnx/reference/ops/op_resize.py
};

TEST(ResizeTest, Opset18And19FeaturesMatchOnnxReference) {
  const Tensor x = iota({1, 1, 4, 4});
  auto s = [](const char* v) { return std::string(v); };
  const std::vector<ResizeCase> cases = {
      {"linear antialias",
       attrs({{"mode", s("linear")}, {"antialias", int64_t{1}}}),
       Tensor(),
       float32s({1, 1, 0.6f, 0.6f}),
       Tensor(),
       Shape{1, 1, 2, 2},
       {2.874999930150805, 4.499999877893257, 9.374999721120613, 10.999999668863065}},
      {"cubic antialias",
       attrs({{"mode", s("cubic")}, {"antialias", int64_t{1}}}),
       Tensor(),
       float32s({1, 1, 0.6f, 0.6f}),
       Tensor(),
       Shape{1, 1, 2, 2},
       {2.5180721353387834, 4.285886181017423, 9.589328318053337, 11.357142363731974}},
      {"cubic antialias sizes",
       attrs({{"mode", s("cubic")}, {"antialias", int64_t{1}}}),
       Tensor(),
       Tensor(),
       int64s({1, 1, 3, 3}),
       Shape{1, 1, 3, 3},
       {1.7750091608647858, 3.1200073286918286, 4.465005496518871, 7.155001832172957,
        8.500000000000002, 9.844998167827043, 12.53499450348113, 13.879992671308171,
        15.224990839135215}},
      {"linear antialias on the last axis only",
       attrs({{"mode", s("linear")}, {"antialias", int64_t{1}}, {"axes", ints{-1}}}),
       Tensor(),
       float32s({0.5f}),
       Tensor(),
       Shape{1, 1, 4, 2},
       {1.625, 3.375, 5.625, 7.375, 9.625, 11.375, 13.625, 15.375}},
      {"nearest not_smaller on axes 3, 2",
       attrs({{"keep_aspect_ratio_policy", s("not_smaller")}, {"axes", ints{3, 2}}}),
       Tensor(),
       Tensor(),
       int64s({2, 3}),
       Shape{1, 1, 3, 3},
       {1, 2, 4, 5, 6, 8, 13, 14, 16}},
      {"tf_crop_and_resize on axes 2, 3",
       attrs({{"mode", s("linear")},
              {"coordinate_transformation_mode", s("tf_crop_and_resize")},
              {"extrapolation_value", 10.0f},
              {"axes", ints{2, 3}}}),
       float32s({0.4f, 0.6f, 0.6f, 0.8f}),
       Tensor(),
       int64s({3, 3}),
       Shape{1, 1, 3, 3},
       {7.6, 7.9, 8.2, 8.8, 9.1, 9.4, 10.0, 10.3, 10.6}},
      {"tf_crop_and_resize extrapolation",
       attrs({{"mode", s("linear")},
              {"coordinate_transformation_mode", s("tf_crop_and_resize")},
              {"extrapolation_value", 10.0f}}),
       float32s({0, 0, 0.4f, 0.6f, 1, 1, 1.2f, 1.7f}),
       Tensor(),
       int64s({1, 1, 3, 3}),
       Shape{1, 1, 3, 3},
       {7.6, 10, 10, 12.4, 10, 10, 10, 10, 10}},
  };
  for (const ResizeCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Tensor y = run1("Resize", {x, c.roi, c.scales, c.sizes}, c.attrs,
                          {.constant_inputs = {1, 2, 3}, .opset = 19});
    ASSERT_EQ(y.shape(), c.shape);
    expect_near(values(y), c.want, 1e-6);
  }

  const Tensor x2 = iota({1, 1, 2, 2});
  const Tensor larger =
      run1("Resize", {x2, Tensor(), Tensor(), int64s({7, 8})},
           attrs({{"keep_aspect_ratio_policy", s("not_larger")}, {"axes", ints{2, 3}}}),
           {.constant_inputs = {3}, .opset = 19});
  ASSERT_EQ(larger.shape(), (Shape{1, 1, 7, 7}));
  expect_near(values(larger),
              {1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1,
               2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 3, 3, 3, 3, 4, 4, 4, 3, 3, 3, 3, 4, 4, 4});
  const Tensor symmetric = run1(
      "Resize", {x2, Tensor(), float32s({1, 1, 2.3f, 2.94f})},
      attrs({{"mode", s("linear")}, {"coordinate_transformation_mode", s("half_pixel_symmetric")}}),
      {.constant_inputs = {2}, .opset = 19});
  ASSERT_EQ(symmetric.shape(), (Shape{1, 1, 4, 5}));
  expect_near(values(symmetric), {1.0,
                                  1.159863952198211,
                                  1.5,
                                  1.840136047801789,
                                  2.0,
                                  1.5652173822904127,
                                  1.7250813344886238,
                                  2.0652173822904127,
                                  2.4053534300922017,
                                  2.5652173822904127,
                                  2.434782617709587,
                                  2.594646569907798,
                                  2.934782617709587,
                                  3.274918665511376,
                                  3.434782617709587,
                                  3.0,
                                  3.159863952198211,
                                  3.5,
                                  3.840136047801789,
                                  4.0});
}

TEST(ResizeTest, BadInputsArePreciseErrors) {
  const Tensor x = iota({1, 1, 2, 2});
  const OpOptions constants = {.constant_inputs = {1, 2, 3}, .opset = 19};
  Status s = error_of("Resize", {x, Tensor(), float32s({1, 1, 2, 2}), int64s({1, 1, 4, 4})}, {},
                      constants);
  EXPECT_NE(s.message().find("scales and sizes are both given"), std::string::npos) << s;
  s = error_of("Resize", {x, Tensor(), float32s({1, 1, -2, 2})}, {}, constants);
  EXPECT_NE(s.message().find("must be positive and finite"), std::string::npos) << s;
  s = error_of("Resize", {x, Tensor(), float32s({2, 2})}, {}, constants);
  EXPECT_NE(s.message().find("scales has shape [2], expected [4]"), std::string::npos) << s;
  s = error_of("Resize", {x, Tensor(), float32s({1, 1, 1e30f, 1e30f})}, {}, constants);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  s = error_of("Resize", {x, Tensor(), float32s({1, 1, 2, 2})},
               attrs({{"mode", std::string("bilinear")}}), constants);
  EXPECT_NE(s.message().find("attribute mode must be one of nearest, linear, cubic"),
            std::string::npos)
      << s;
}

// ---- Gemm, MatMul ----

// Row-major a (m x k) times b (k x n), in double.
std::vector<double> product(const std::vector<double>& a, const std::vector<double>& b, int64_t m,
                            int64_t k, int64_t n) {
  std::vector<double> out(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t t = 0; t < k; ++t) out[i * n + j] += a[i * k + t] * b[t * n + j];
    }
  }
  return out;
}

TEST(GemmTest, BiasBroadcastsFromAVectorAColumnAndAScalar) {
  const Tensor a = random({3, 5}, 16), bt = random({4, 5}, 17);  // B given transposed
  std::vector<double> b(20);
  for (int64_t k = 0; k < 5; ++k) {
    for (int64_t n = 0; n < 4; ++n) b[k * 4 + n] = values(bt)[n * 5 + k];
  }
  const std::vector<double> ab = product(values(a), b, 3, 5, 4);
  const Attributes at = attrs({{"transB", int64_t{1}}, {"alpha", 0.5f}, {"beta", 2.0f}});
  for (const Shape& cs : {Shape{4}, Shape{3, 1}, Shape{}, Shape{1, 4}, Shape{3, 4}}) {
    const Tensor c = random(cs, 18);
    const Tensor y = run1("Gemm", {a, bt, c}, at);
    ASSERT_EQ(y.shape(), (Shape{3, 4}));
    std::vector<double> want(12);
    const std::vector<double> cv = values(c);
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < 4; ++j) {
        const int64_t ci = cs.rank() == 0   ? 0
                           : cs.rank() == 1 ? j
                                            : (cs[0] == 1 ? 0 : i) * cs[1] + (cs[1] == 1 ? 0 : j);
        want[i * 4 + j] = 0.5 * ab[i * 4 + j] + 2.0 * cv[ci];
      }
    }
    expect_near(values(y), want);
  }
  const Status s = error_of("Gemm", {a, bt, random({3})}, at);
  EXPECT_NE(s.message().find("C [3] does not broadcast to the result's shape [3,4]"),
            std::string::npos)
      << s;
  const Status k = error_of("Gemm", {a, bt});
  EXPECT_NE(k.message().find("different inner dimensions 5 and 4"), std::string::npos) << k;
}

TEST(MatMulTest, BatchDimensionsBroadcast) {
  const Tensor a = random({2, 1, 3, 4}, 19), b = random({5, 4, 2}, 20);
  const Tensor y = run1("MatMul", {a, b});
  ASSERT_EQ(y.shape(), (Shape{2, 5, 3, 2}));
  const std::vector<double> av = values(a), bv = values(b), yv = values(y);
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 5; ++j) {
      const std::vector<double> am(av.begin() + i * 12, av.begin() + (i + 1) * 12);
      const std::vector<double> bm(bv.begin() + j * 8, bv.begin() + (j + 1) * 8);
      const std::vector<double> want = product(am, bm, 3, 4, 2);
      const std::vector<double> got(yv.begin() + (i * 5 + j) * 6, yv.begin() + (i * 5 + j + 1) * 6);
      expect_near(got, want);
    }
  }
}

TEST(MatMulTest, OneDimensionalOperandsDropTheirDimension) {
  const Tensor v = Tensor::from_vector<float>({3}, {1, 2, 3});
  const Tensor m = Tensor::from_vector<float>({3, 2}, {1, 2, 3, 4, 5, 6});
  const Tensor mt = Tensor::from_vector<float>({2, 3}, {1, 3, 5, 2, 4, 6});
  const Tensor vm = run1("MatMul", {v, m});
  EXPECT_EQ(vm.shape(), (Shape{2}));
  EXPECT_EQ(values(vm), (std::vector<double>{22, 28}));
  const Tensor mv = run1("MatMul", {mt, v});
  EXPECT_EQ(mv.shape(), (Shape{2}));
  EXPECT_EQ(values(mv), (std::vector<double>{22, 28}));
  const Tensor vv = run1("MatMul", {v, v});
  EXPECT_EQ(vv.shape(), (Shape{}));
  EXPECT_EQ(values(vv), (std::vector<double>{14}));
  const Tensor batched = run1("MatMul", {random({4, 2, 3}), v});
  EXPECT_EQ(batched.shape(), (Shape{4, 2}));
  const Status s = error_of("MatMul", {random({2, 3, 4}), random({3, 3, 2})});
  EXPECT_NE(s.message().find("different inner dimensions 4 and 3"), std::string::npos) << s;
  const Status b = error_of("MatMul", {random({2, 3, 4}), random({3, 4, 2})});
  EXPECT_NE(b.message().find("batch dimensions"), std::string::npos) << b;
}

// ---- Softmax family, BatchNormalization ----

TEST(SoftmaxTest, LargeValuesNegativeAxisAndHardmaxTies) {
  const Tensor x = Tensor::from_vector<float>({2, 3}, {1000, 1001, 1002, -5, -5, -5});
  const Attributes axis0 = attrs({{"axis", int64_t{0}}});
  const double e1 = std::exp(-1.0), e2 = std::exp(-2.0), s = 1 + e1 + e2;
  expect_near(values(run1("Softmax", {x})), {e2 / s, e1 / s, 1 / s, 1.0 / 3, 1.0 / 3, 1.0 / 3});
  expect_near(values(run1("LogSoftmax", {x})), {-2 - std::log(s), -1 - std::log(s), -std::log(s),
                                                -std::log(3.0), -std::log(3.0), -std::log(3.0)});
  expect_near(values(run1("Softmax", {x}, axis0)), {1, 1, 1, 0, 0, 0});
  EXPECT_EQ(values(run1("Hardmax", {x})), (std::vector<double>{0, 0, 1, 1, 0, 0}));
  EXPECT_EQ(values(run1("Hardmax", {x}, attrs({{"axis", int64_t{-2}}}))),
            (std::vector<double>{1, 1, 1, 0, 0, 0}));
  EXPECT_EQ(error_of("Softmax", {x}, attrs({{"axis", int64_t{2}}})).code(),
            StatusCode::kInvalidArgument);
}

TEST(BatchNormTest, HalfInputWithFloatStatistics) {
  const Tensor x =
      Tensor::from_vector<Half>({1, 2, 1, 2}, {Half(1.0f), Half(2.0f), Half(3.0f), Half(4.0f)});
  const Tensor scale = float32s({2, 0.5f}), bias = float32s({1, -1});
  const Tensor mean = float32s({1, 3}), var = float32s({4, 0.25f});
  const Tensor y =
      run1("BatchNormalization", {x, scale, bias, mean, var}, attrs({{"epsilon", 0.0f}}));
  ASSERT_EQ(y.dtype(), DType::kFloat16);
  // (x - mean) / sqrt(var) * scale + B.
  EXPECT_EQ(values(y), (std::vector<double>{1, 2, -1, 0}));
  const Status s = error_of("BatchNormalization", {x, scale, bias, mean, var},
                            attrs({{"training_mode", int64_t{1}}}));
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  const Status shape = error_of("BatchNormalization", {x, float32s({1, 2, 3}), bias, mean, var});
  EXPECT_NE(shape.message().find("scale has shape [3], expected [2]"), std::string::npos) << shape;
}

}  // namespace
}  // namespace kestrel::testing
