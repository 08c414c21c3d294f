// Edge cases of the reductions, ArgMax/ArgMin, TopK and NonMaxSuppression beyond ONNX's node tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "op_test_util.h"

namespace kestrel::testing {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = 0.5f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  // Random signs keep the values away from zero but not all positive.
  for (float& x : v) x = (rng() % 2 ? 1.0f : -1.0f) * dist(rng);
  return v;
}

Tensor axes_tensor(const ints& axes) {
  return Tensor::from_vector<int64_t>({static_cast<int64_t>(axes.size())}, axes);
}

// ReduceSum of a row-major tensor over `axes` (normalized), computed by brute force.
std::vector<double> brute_force_sum(const Shape& shape, const std::vector<float>& data,
                                    const std::vector<int64_t>& axes) {
  Shape kept = shape;
  for (int64_t a : axes) kept[static_cast<size_t>(a)] = 1;
  std::vector<double> out(static_cast<size_t>(kept.num_elements()), 0.0);
  std::vector<int64_t> index(shape.rank(), 0);
  for (size_t i = 0; i < data.size(); ++i) {
    int64_t rest = static_cast<int64_t>(i), o = 0;
    for (size_t d = shape.rank(); d-- > 0;) {
      index[d] = rest % shape[d];
      rest /= shape[d];
    }
    for (size_t d = 0; d < shape.rank(); ++d) o = o * kept[d] + (kept[d] == 1 ? 0 : index[d]);
    out[static_cast<size_t>(o)] += data[i];
  }
  return out;
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// ---- Reduce* ----

TEST(ReduceTest, NegativeAxesAndKeepdimsMatchBruteForce) {
  const Shape shape{2, 3, 4, 5};
  const std::vector<float> data = random_floats(120, 1);
  const Tensor x = Tensor::from_vector<float>(shape, data);
  for (int64_t keepdims : {0, 1}) {
    for (const ints& axes : {ints{-1}, ints{-3, 3}, ints{0, -2}, ints{-4, -3, -2, -1}}) {
      StatusOr<std::vector<Tensor>> out =
          run_op("ReduceSum", {x, axes_tensor(axes)}, attrs({{"keepdims", keepdims}}));
      ASSERT_TRUE(out.ok()) << out.status();
      ints normalized;
      std::vector<int64_t> dims;
      for (int64_t a : axes) normalized.push_back(a < 0 ? a + 4 : a);
      for (int64_t d = 0; d < 4; ++d) {
        const bool reduced = std::count(normalized.begin(), normalized.end(), d) > 0;
        if (!reduced || keepdims) dims.push_back(reduced ? 1 : shape[static_cast<size_t>(d)]);
      }
      EXPECT_EQ((*out)[0].shape(), Shape(dims));
      expect_near(values((*out)[0]), brute_force_sum(shape, data, normalized), 1e-4);
    }
  }
}

TEST(ReduceTest, AxesFromAGraphInputAreReadAtRunTime) {
  const Tensor x = Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  // As a constant (inferred when the model is built) and as a graph input (only at run time).
  for (const OpOptions& options : {OpOptions{.constant_inputs = {1}}, OpOptions{}}) {
    StatusOr<std::vector<Tensor>> out =
        run_op("ReduceMean", {x, axes_tensor({-1})}, attrs({{"keepdims", int64_t{0}}}), options);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ((*out)[0].shape(), (Shape{2}));
    EXPECT_EQ(values((*out)[0]), (std::vector<double>{2, 5}));
  }
}

TEST(ReduceTest, AbsentOrEmptyAxesReduceEverything) {
  const Tensor x = Tensor::from_vector<float>({2, 2}, {1, 2, 3, 4});
  for (const Tensor& axes : {Tensor(), axes_tensor({})}) {
    StatusOr<std::vector<Tensor>> out = run_op("ReduceProd", {x, axes});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ((*out)[0].shape(), (Shape{1, 1}));
    EXPECT_EQ(values((*out)[0]), (std::vector<double>{24}));
    out = run_op("ReduceMax", {x, axes}, attrs({{"keepdims", int64_t{0}}}));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ((*out)[0].shape(), Shape{});
    EXPECT_EQ(values((*out)[0]), (std::vector<double>{4}));
  }
}

TEST(ReduceTest, NoopWithEmptyAxesStillAppliesTheElementwiseSteps) {
  const Tensor x = Tensor::from_vector<float>({2, 2}, {1, -2, 3, -4});
  const Attributes noop = attrs({{"noop_with_empty_axes", int64_t{1}}});
  struct Case {
    const char* op;
    std::vector<double> want;
  };
  for (const Case& c : {Case{"ReduceSum", {1, -2, 3, -4}}, Case{"ReduceMean", {1, -2, 3, -4}},
                        Case{"ReduceMax", {1, -2, 3, -4}}, Case{"ReduceSumSquare", {1, 4, 9, 16}},
                        Case{"ReduceL1", {1, 2, 3, 4}}, Case{"ReduceL2", {1, 2, 3, 4}},
                        Case{"ReduceLogSumExp", {1, -2, 3, -4}}}) {
    for (const Tensor& axes : {Tensor(), axes_tensor({})}) {
      StatusOr<std::vector<Tensor>> out = run_op(c.op, {x, axes}, noop);
      ASSERT_TRUE(out.ok()) << c.op << ": " << out.status();
      EXPECT_EQ((*out)[0].shape(), (Shape{2, 2})) << c.op;
      expect_near(values((*out)[0]), c.want, 1e-6);
    }
  }
  const Tensor positive = Tensor::from_vector<float>({2}, {1, std::exp(2.0f)});
  StatusOr<std::vector<Tensor>> out = run_op("ReduceLogSum", {positive, Tensor()}, noop);
  ASSERT_TRUE(out.ok()) << out.status();
  expect_near(values((*out)[0]), {0, 2}, 1e-6);
}

TEST(ReduceTest, EmptyReductionsGiveTheOnnxIdentities) {
  const Tensor x = Tensor::from_vector<float>({2, 0, 3}, {});
  struct Case {
    const char* op;
    double want;
  };
  for (const Case& c :
       {Case{"ReduceSum", 0}, Case{"ReduceSumSquare", 0}, Case{"ReduceL1", 0}, Case{"ReduceL2", 0},
        Case{"ReduceProd", 1}, Case{"ReduceMax", -kInf}, Case{"ReduceMin", kInf},
        Case{"ReduceLogSum", -kInf}, Case{"ReduceLogSumExp", -kInf}}) {
    StatusOr<std::vector<Tensor>> out = run_op(c.op, {x, axes_tensor({1})});
    ASSERT_TRUE(out.ok()) << c.op << ": " << out.status();
    EXPECT_EQ((*out)[0].shape(), (Shape{2, 1, 3})) << c.op;
    EXPECT_EQ(values((*out)[0]), std::vector<double>(6, c.want)) << c.op;
  }
  // ONNX leaves the mean of nothing undefined: NaN for floats.
  StatusOr<std::vector<Tensor>> out = run_op("ReduceMean", {x, axes_tensor({1})});
  ASSERT_TRUE(out.ok()) << out.status();
  for (double v : values((*out)[0])) EXPECT_TRUE(std::isnan(v));
  // Integers have no infinity: the extreme values of the type; the mean is 0, not a crash.
  const Tensor xi = Tensor::from_vector<int32_t>({0, 2}, {});
  out = run_op("ReduceMax", {xi, axes_tensor({0})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{INT32_MIN, INT32_MIN}));
  out = run_op("ReduceMin", {xi, axes_tensor({0})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{INT32_MAX, INT32_MAX}));
  out = run_op("ReduceMean", {xi, axes_tensor({0})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{0, 0}));
  // Reducing a non-empty axis of an empty tensor gives an empty tensor.
  out = run_op("ReduceSum", {xi, axes_tensor({1})}, attrs({{"keepdims", int64_t{0}}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{0}));
}

TEST(ReduceTest, SumsAccumulateInDouble) {
  // In float, 1e8 + 1 == 1e8: a float accumulator would return 0.
  std::vector<float> data(202, 1.0f);
  data.front() = 1e8f;
  data.back() = -1e8f;
  const Tensor x = Tensor::from_vector<float>({202}, data);
  StatusOr<std::vector<Tensor>> out = run_op("ReduceSum", {x, Tensor()});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{200}));
  out = run_op("ReduceMean", {x, Tensor()});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NEAR(values((*out)[0])[0], 200.0 / 202.0, 1e-6);
}

TEST(ReduceTest, LogSumExpDoesNotOverflow) {
  const Tensor x = Tensor::from_vector<float>({2, 2}, {1000, 1000, -1000, -1001});
  StatusOr<std::vector<Tensor>> out = run_op("ReduceLogSumExp", {x, axes_tensor({1})});
  ASSERT_TRUE(out.ok()) << out.status();
  expect_near(values((*out)[0]), {1000 + std::log(2.0), -1000 + std::log1p(std::exp(-1.0))}, 1e-3);
  const Tensor inf = Tensor::from_vector<float>({2, 2}, {INFINITY, 1, -INFINITY, -INFINITY});
  out = run_op("ReduceLogSumExp", {inf, axes_tensor({1})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{kInf, -kInf}));
}

TEST(ReduceTest, MaxAndMinPropagateNan) {
  const Tensor x = Tensor::from_vector<float>({2, 3}, {1, kNan, 3, 4, 5, 6});
  for (const char* op : {"ReduceMax", "ReduceMin"}) {
    StatusOr<std::vector<Tensor>> out = run_op(op, {x, axes_tensor({1})});
    ASSERT_TRUE(out.ok()) << out.status();
    const std::vector<double> v = values((*out)[0]);
    EXPECT_TRUE(std::isnan(v[0])) << op;
    EXPECT_EQ(v[1], std::string(op) == "ReduceMax" ? 6 : 4) << op;
  }
}

TEST(ReduceTest, IntegerTypes) {
  // Overflow wraps around like two's complement instead of being undefined behaviour.
  const Tensor big = Tensor::from_vector<int32_t>({2}, {INT32_MAX, 1});
  StatusOr<std::vector<Tensor>> out = run_op("ReduceSum", {big, Tensor()});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].data<int32_t>()[0], INT32_MIN);
  const Tensor min64 = Tensor::from_vector<int64_t>({2}, {INT64_MIN, 3});
  out = run_op("ReduceL1", {min64, Tensor()});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].data<int64_t>()[0], INT64_MIN + 3);
  // The mean truncates toward zero.
  const Tensor xi = Tensor::from_vector<int32_t>({2, 2}, {1, 2, -3, -4});
  out = run_op("ReduceMean", {xi, axes_tensor({1})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{1, -3}));
  // 8-bit integers and bool (false < true) for ReduceMax and ReduceMin only, as in ONNX.
  const Tensor x8 = Tensor::from_vector<int8_t>({3}, {-7, 5, -128});
  out = run_op("ReduceMin", {x8, Tensor()});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{-128}));
  const Tensor b = Tensor::from_vector<bool>({2, 2}, {false, true, false, false});
  out = run_op("ReduceMax", {b, axes_tensor({1})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{1, 0}));
  out = run_op("ReduceMin", {b, axes_tensor({1})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{0, 0}));
  EXPECT_EQ(run_op("ReduceSum", {x8, Tensor()}).status().code(), StatusCode::kInvalidArgument);
}

TEST(ReduceTest, HalfComputesInFloatAndRoundsOnce) {
  const Tensor x = Tensor::from_vector<Half>({3}, {Half(0.1f), Half(0.2f), Half(0.3f)});
  StatusOr<std::vector<Tensor>> out = run_op("ReduceSum", {x, Tensor()});
  ASSERT_TRUE(out.ok()) << out.status();
  const double sum = static_cast<float>(Half(0.1f)) + static_cast<double>(Half(0.2f)) +
                     static_cast<float>(Half(0.3f));
  EXPECT_EQ((*out)[0].data<Half>()[0].bits, Half(static_cast<float>(sum)).bits);
}

TEST(ReduceTest, RejectsBadAxes) {
  const Tensor x = Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  // Axes as a constant (checked when the model is built) and as a graph input (at run time).
  for (const OpOptions& options : {OpOptions{.constant_inputs = {1}}, OpOptions{}}) {
    EXPECT_EQ(run_op("ReduceSum", {x, axes_tensor({2})}, {}, options).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(run_op("ReduceMean", {x, axes_tensor({-3})}, {}, options).status().code(),
              StatusCode::kInvalidArgument);
    // Duplicates are rejected, as numpy (ONNX's reference) does.
    EXPECT_EQ(run_op("ReduceMax", {x, axes_tensor({1, -1})}, {}, options).status().code(),
              StatusCode::kInvalidArgument);
    const Tensor axes32 = Tensor::from_vector<int32_t>({1}, {0});
    EXPECT_EQ(run_op("ReduceSum", {x, axes32}, {}, options).status().code(),
              StatusCode::kInvalidArgument);
  }
}

// ---- ArgMax / ArgMin ----

TEST(ArgReduceTest, TiesPickTheFirstOrWithSelectLastIndexTheLastOccurrence) {
  const Tensor x = Tensor::from_vector<float>({2, 4}, {3, 1, 3, 1, 2, 2, 0, 0});
  struct Case {
    const char* op;
    int64_t last;
    std::vector<double> want;
  };
  for (const Case& c : {Case{"ArgMax", 0, {0, 0}}, Case{"ArgMax", 1, {2, 1}},
                        Case{"ArgMin", 0, {1, 2}}, Case{"ArgMin", 1, {3, 3}}}) {
    StatusOr<std::vector<Tensor>> out =
        run_op(c.op, {x}, attrs({{"axis", int64_t{-1}}, {"select_last_index", c.last}}));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ((*out)[0].dtype(), DType::kInt64);
    EXPECT_EQ((*out)[0].shape(), (Shape{2, 1}));
    EXPECT_EQ(values((*out)[0]), c.want) << c.op << " select_last_index=" << c.last;
  }
}

TEST(ArgReduceTest, MiddleAxisWithoutKeepdims) {
  const Shape shape{2, 3, 2};
  const std::vector<float> data = random_floats(12, 7);
  StatusOr<std::vector<Tensor>> out =
      run_op("ArgMin", {Tensor::from_vector<float>(shape, data)},
             attrs({{"axis", int64_t{-2}}, {"keepdims", int64_t{0}}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 2}));
  for (int64_t o = 0; o < 2; ++o) {
    for (int64_t i = 0; i < 2; ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < 3; ++k) {
        if (data[(o * 3 + k) * 2 + i] < data[(o * 3 + best) * 2 + i]) best = k;
      }
      EXPECT_EQ((*out)[0].data<int64_t>()[o * 2 + i], best);
    }
  }
}

TEST(ArgReduceTest, NanIsTheExtremeLikeNumpy) {
  const Tensor x = Tensor::from_vector<float>({5}, {1, kNan, 9, kNan, -9});
  for (const char* op : {"ArgMax", "ArgMin"}) {
    StatusOr<std::vector<Tensor>> out = run_op(op, {x});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(values((*out)[0]), (std::vector<double>{1})) << op;
    out = run_op(op, {x}, attrs({{"select_last_index", int64_t{1}}}));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(values((*out)[0]), (std::vector<double>{3})) << op;
  }
}

TEST(ArgReduceTest, IntegerTypesAndErrors) {
  const Tensor x = Tensor::from_vector<uint8_t>({4}, {3, 255, 0, 255});
  StatusOr<std::vector<Tensor>> out = run_op("ArgMax", {x}, attrs({{"keepdims", int64_t{0}}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), Shape{});
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{1}));
  EXPECT_EQ(run_op("ArgMax", {x}, attrs({{"axis", int64_t{1}}})).status().code(),
            StatusCode::kInvalidArgument);
  // No element to take the index of.
  const Tensor empty = Tensor::from_vector<float>({0, 3}, {});
  EXPECT_EQ(run_op("ArgMin", {empty}).status().code(), StatusCode::kInvalidArgument);
  out = run_op("ArgMin", {empty}, attrs({{"axis", int64_t{1}}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{0, 1}));
}

// ---- TopK ----

StatusOr<std::vector<Tensor>> top_k(const Tensor& x, int64_t k, const Attributes& a,
                                    bool k_constant = true) {
  return run_op("TopK", {x, Tensor::from_vector<int64_t>({1}, {k})}, a,
                {.constant_inputs = k_constant ? std::vector<size_t>{1} : std::vector<size_t>{},
                 .num_outputs = 2});
}

TEST(TopKTest, TiesKeepTheLowerIndexFirst) {
  const Tensor x = Tensor::from_vector<float>({7}, {2, 5, 2, 5, 1, 2, 5});
  StatusOr<std::vector<Tensor>> out = top_k(x, 5, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{5, 5, 5, 2, 2}));
  EXPECT_EQ(values((*out)[1]), (std::vector<double>{1, 3, 6, 0, 2}));
  out = top_k(x, 4, attrs({{"largest", int64_t{0}}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[0]), (std::vector<double>{1, 2, 2, 2}));
  EXPECT_EQ(values((*out)[1]), (std::vector<double>{4, 0, 2, 5}));
  // sorted=0 leaves the order to the implementation; Kestrel's is the sorted one.
  out = top_k(x, 2, attrs({{"sorted", int64_t{0}}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[1]), (std::vector<double>{1, 3}));
}

TEST(TopKTest, NegativeMiddleAxisMatchesBruteForce) {
  const Shape shape{3, 6, 4};
  const std::vector<float> data = random_floats(72, 3);
  for (int64_t largest : {0, 1}) {
    for (bool k_constant : {true, false}) {
      StatusOr<std::vector<Tensor>> out =
          top_k(Tensor::from_vector<float>(shape, data), 4,
                attrs({{"axis", int64_t{-2}}, {"largest", largest}}), k_constant);
      ASSERT_TRUE(out.ok()) << out.status();
      ASSERT_EQ((*out)[0].shape(), (Shape{3, 4, 4}));
      ASSERT_EQ((*out)[1].shape(), (Shape{3, 4, 4}));
      for (int64_t o = 0; o < 3; ++o) {
        for (int64_t i = 0; i < 4; ++i) {
          std::vector<std::pair<float, int64_t>> slice;
          for (int64_t j = 0; j < 6; ++j) slice.push_back({data[(o * 6 + j) * 4 + i], j});
          std::stable_sort(slice.begin(), slice.end(), [&](const auto& a, const auto& b) {
            return largest ? a.first > b.first : a.first < b.first;
          });
          for (int64_t j = 0; j < 4; ++j) {
            const int64_t at = (o * 4 + j) * 4 + i;
            EXPECT_EQ((*out)[0].data<float>()[at], slice[j].first);
            EXPECT_EQ((*out)[1].data<int64_t>()[at], slice[j].second);
          }
        }
      }
    }
  }
}

TEST(TopKTest, NanOrdersAboveEveryNumber) {
  const Tensor x = Tensor::from_vector<float>({4}, {1, kNan, 3, kNan});
  StatusOr<std::vector<Tensor>> out = top_k(x, 3, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[1]), (std::vector<double>{1, 3, 2}));
  out = top_k(x, 3, attrs({{"largest", int64_t{0}}}));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[1]), (std::vector<double>{0, 2, 1}));
}

TEST(TopKTest, IntegerTypesAndEdgeValuesOfK) {
  const Tensor x = Tensor::from_vector<int64_t>({2, 3}, {INT64_MIN, 0, INT64_MAX, 7, 7, -7});
  StatusOr<std::vector<Tensor>> out = top_k(x, 3, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(values((*out)[1]), (std::vector<double>{2, 1, 0, 0, 1, 2}));
  out = top_k(x, 0, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 0}));
  EXPECT_EQ((*out)[1].shape(), (Shape{2, 0}));
  for (bool k_constant : {true, false}) {
    EXPECT_EQ(top_k(x, 4, {}, k_constant).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(top_k(x, -1, {}, k_constant).status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(top_k(x, 1, attrs({{"axis", int64_t{2}}})).status().code(),
            StatusCode::kInvalidArgument);
}

// ---- NonMaxSuppression ----

struct Nms {
  std::vector<float> boxes;   // [batch, n, 4]
  std::vector<float> scores;  // [batch, classes, n]
  int64_t batch = 1, classes = 1;
  Tensor max_out = Tensor::from_vector<int64_t>({1}, {100});
  Tensor iou = Tensor::from_vector<float>({1}, {0.5f});
  Tensor score = Tensor();
  int64_t center = 0;

  StatusOr<std::vector<Tensor>> run() const {
    const auto n = static_cast<int64_t>(boxes.size() / 4 / static_cast<size_t>(batch));
    std::vector<Tensor> in = {Tensor::from_vector<float>({batch, n, 4}, boxes),
                              Tensor::from_vector<float>({batch, classes, n}, scores), max_out, iou,
                              score};
    while (!in.back().defined()) in.pop_back();
    return run_op("NonMaxSuppression", in, attrs({{"center_point_box", center}}));
  }
};

std::vector<double> nms_result(const Nms& nms) {
  StatusOr<std::vector<Tensor>> out = nms.run();
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return {};
  EXPECT_EQ((*out)[0].dtype(), DType::kInt64);
  EXPECT_EQ((*out)[0].rank(), 2u);
  EXPECT_EQ((*out)[0].shape()[1], 3);
  return values((*out)[0]);
}

// IoU of two [y1, x1, y2, x2] boxes, written independently of the kernel's.
double test_iou(const float* a, const float* b) {
  auto lo = [](float p, float q) { return std::min<double>(p, q); };
  auto hi = [](float p, float q) { return std::max<double>(p, q); };
  const double ih =
      std::min(hi(a[0], a[2]), hi(b[0], b[2])) - std::max(lo(a[0], a[2]), lo(b[0], b[2]));
  const double iw =
      std::min(hi(a[1], a[3]), hi(b[1], b[3])) - std::max(lo(a[1], a[3]), lo(b[1], b[3]));
  if (ih <= 0 || iw <= 0) return 0;
  const double area_a = (hi(a[0], a[2]) - lo(a[0], a[2])) * (hi(a[1], a[3]) - lo(a[1], a[3]));
  const double area_b = (hi(b[0], b[2]) - lo(b[0], b[2])) * (hi(b[1], b[3]) - lo(b[1], b[3]));
  return ih * iw / (area_a + area_b - ih * iw);
}

TEST(NmsTest, NoBoxesSelectsNothing) {
  Nms nms;
  EXPECT_TRUE(nms_result(nms).empty());
  nms.batch = 2;
  nms.classes = 3;
  EXPECT_TRUE(nms_result(nms).empty());
}

TEST(NmsTest, MaxOutputBoxesAbsentOrZeroSelectsNothing) {
  Nms nms{.boxes = {0, 0, 1, 1, 2, 2, 3, 3}, .scores = {0.9f, 0.8f}};
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0, 0, 0, 1}));
  nms.max_out = Tensor::from_vector<int64_t>({1}, {0});
  EXPECT_TRUE(nms_result(nms).empty());
  nms.max_out = Tensor();
  nms.iou = Tensor();
  EXPECT_TRUE(nms_result(nms).empty());
  nms.max_out = Tensor::from_vector<int64_t>({1}, {INT64_MAX});
  EXPECT_EQ(nms_result(nms).size(), 6u);
}

TEST(NmsTest, IdenticalScoresKeepTheLowerIndex) {
  // Four disjoint boxes and two copies of box 0, all with the same score.
  Nms nms{.boxes = {0, 0, 1, 1, 0, 2, 1, 3, 0, 4, 1, 5, 0, 6, 1, 7, 0, 0, 1, 1, 0, 0, 1, 1},
          .scores = std::vector<float>(6, 0.7f)};
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3}));
  nms.max_out = Tensor::from_vector<int64_t>({1}, {2});
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0, 0, 0, 1}));
}

TEST(NmsTest, ScoreThresholdIsStrictAndIouMustExceedTheThreshold) {
  // Boxes 0 and 1 overlap with IoU exactly 1/3.
  Nms nms{.boxes = {0, 0, 1, 2, 0, 1, 1, 3, 5, 5, 6, 6}, .scores = {0.9f, 0.8f, 0.5f}};
  nms.iou = Tensor::from_vector<float>({1}, {1.0f / 3.0f});
  nms.score = Tensor::from_vector<float>({1}, {0.5f});
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0, 0, 0, 1}));
  nms.iou = Tensor::from_vector<float>({1}, {0.3f});
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0}));
}

TEST(NmsTest, ZeroAreaAndFlippedBoxes) {
  // Zero-area boxes overlap nothing, themselves included; flipped corners are the same box.
  Nms nms{.boxes = {0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 2, 2, 2, 2, 0, 0},
          .scores = {0.9f, 0.8f, 0.7f, 0.6f}};
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0, 0, 0, 1, 0, 0, 2}));
}

TEST(NmsTest, CenterPointBoxMatchesCornerFormat) {
  const std::vector<float> scores = random_floats(200, 11, 0.01f, 1.0f);
  std::vector<float> corners, centers;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> pos(0, 20), size(1, 6);
  for (int i = 0; i < 200; ++i) {
    const float x = pos(rng), y = pos(rng), w = size(rng), h = size(rng);
    corners.insert(corners.end(), {y, x, y + h, x + w});
    centers.insert(centers.end(), {x + w / 2, y + h / 2, w, h});
  }
  std::vector<float> abs_scores;
  for (float s : scores) abs_scores.push_back(std::abs(s));
  Nms corner{.boxes = corners, .scores = abs_scores};
  Nms center{.boxes = centers, .scores = abs_scores, .center = 1};
  const std::vector<double> want = nms_result(corner);
  EXPECT_GT(want.size(), 3u * 10);
  EXPECT_EQ(nms_result(center), want);
}

TEST(NmsTest, ThousandsOfBoxesFollowTheGreedyDefinition) {
  constexpr int kBoxes = 3000;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> pos(0, 100), size(2, 15), score(0.0f, 1.0f);
  Nms nms;
  nms.classes = 2;
  for (int i = 0; i < kBoxes; ++i) {
    const float y = pos(rng), x = pos(rng);
    nms.boxes.insert(nms.boxes.end(), {y, x, y + size(rng), x + size(rng)});
  }
  for (int i = 0; i < 2 * kBoxes; ++i) nms.scores.push_back(score(rng));
  nms.iou = Tensor::from_vector<float>({1}, {0.4f});
  nms.score = Tensor::from_vector<float>({1}, {0.2f});
  nms.max_out = Tensor::from_vector<int64_t>({1}, {kBoxes});
  const std::vector<double> got = nms_result(nms);
  ASSERT_FALSE(got.empty());
  for (int64_t c = 0; c < 2; ++c) {
    std::vector<int64_t> selected;
    for (size_t r = 0; r < got.size(); r += 3) {
      if (got[r + 1] == c) selected.push_back(static_cast<int64_t>(got[r + 2]));
    }
    const float* s = nms.scores.data() + c * kBoxes;
    // Descending scores, pairwise IoU at most the threshold.
    for (size_t i = 0; i < selected.size(); ++i) {
      EXPECT_GT(s[selected[i]], 0.2f);
      if (i > 0) {
        EXPECT_GE(s[selected[i - 1]], s[selected[i]]);
      }
      for (size_t j = 0; j < i; ++j) {
        EXPECT_LE(test_iou(&nms.boxes[selected[i] * 4], &nms.boxes[selected[j] * 4]), 0.4 + 1e-6);
      }
    }
    // Every other box above the score threshold overlaps a selected box with a higher score.
    for (int64_t b = 0; b < kBoxes; ++b) {
      if (!(s[b] > 0.2f) || std::count(selected.begin(), selected.end(), b)) continue;
      const bool suppressed = std::any_of(selected.begin(), selected.end(), [&](int64_t k) {
        return s[k] >= s[b] && test_iou(&nms.boxes[b * 4], &nms.boxes[k * 4]) > 0.4 - 1e-6;
      });
      EXPECT_TRUE(suppressed) << "box " << b << " of class " << c;
    }
  }
}

TEST(NmsTest, ImagesOfABatchNeverMix) {
  // Image 1 holds the same boxes as image 0 but in reverse order, with other scores: a mix-up of
  // images would suppress or index the wrong boxes.
  Nms nms{.boxes = {0, 0, 1, 1, 0, 0.1f, 1, 1.1f, 5, 5, 6, 6,   // image 0
                    5, 5, 6, 6, 0, 0.1f, 1, 1.1f, 0, 0, 1, 1},  // image 1
          .scores = {0.9f, 0.8f, 0.1f, 0.2f, 0.3f, 0.95f, 0.6f, 0.7f, 0.8f, 0.9f, 0.4f, 0.5f},
          .batch = 2,
          .classes = 2};
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0, 0, 0, 2,  // image 0, class 0
                                                  0, 1, 2, 0, 1, 1,  // image 0, class 1
                                                  1, 0, 2, 1, 0, 0,  // image 1, class 0
                                                  1, 1, 0, 1, 1, 2}));
  // Per image and class, max_output_boxes_per_class applies separately.
  nms.max_out = Tensor::from_vector<int64_t>({1}, {1});
  EXPECT_EQ(nms_result(nms), (std::vector<double>{0, 0, 0, 0, 1, 2, 1, 0, 2, 1, 1, 0}));
}

TEST(NmsTest, RejectsMalformedInputs) {
  const Tensor boxes = Tensor::from_vector<float>({1, 1, 4}, {0, 0, 1, 1});
  const Tensor two_scores = Tensor::from_vector<float>({1, 1, 2}, {0.5f, 0.5f});
  EXPECT_EQ(run_op("NonMaxSuppression", {boxes, two_scores}).status().code(),
            StatusCode::kInvalidArgument);
  Nms nms{.boxes = {0, 0, 1, 1}, .scores = {0.5f}};
  nms.iou = Tensor::from_vector<float>({1}, {1.5f});
  EXPECT_EQ(nms.run().status().code(), StatusCode::kInvalidArgument);
  nms.iou = Tensor::from_vector<float>({2}, {0.5f, 0.5f});
  EXPECT_EQ(nms.run().status().code(), StatusCode::kInvalidArgument);
  nms.iou = Tensor::from_vector<float>({1}, {0.5f});
  nms.max_out = Tensor::from_vector<int32_t>({1}, {3});
  EXPECT_EQ(nms.run().status().code(), StatusCode::kInvalidArgument);
  const Tensor boxes3 = Tensor::from_vector<float>({1, 1, 3}, {0, 0, 1});
  const Tensor scores = Tensor::from_vector<float>({1, 1, 1}, {0.5f});
  EXPECT_EQ(run_op("NonMaxSuppression", {boxes3, scores}).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::testing
