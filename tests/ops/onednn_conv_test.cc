// The oneDNN Conv kernel (runtime/cpu/onednn_conv.cc) against a float64 convolution written here
// and against the reference kernel: many shapes, float32, float16 and bfloat16, constant and
// per-call weights, several batch sizes through one kernel, and concurrent calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "op_test_util.h"

namespace kestrel::testing {
namespace {

// One convolution: shapes and ONNX attributes.
struct ConvCase {
  std::string name = {};
  Shape x = {}, w = {};
  bool bias = true;
  int64_t group = 1;
  ints strides = {}, dilations = {}, pads = {};  // empty: the attribute is absent
  std::string auto_pad = {};                     // empty: absent
};

void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

Attributes conv_attrs(const ConvCase& c) {
  Attributes a;
  if (c.group != 1) a.set("group", c.group);
  if (!c.strides.empty()) a.set("strides", c.strides);
  if (!c.dilations.empty()) a.set("dilations", c.dilations);
  if (!c.pads.empty()) a.set("pads", c.pads);
  if (!c.auto_pad.empty()) a.set("auto_pad", c.auto_pad);
  a.set("kernel_shape", ints(c.w.begin() + 2, c.w.end()));
  return a;
}

// Uniform in +-[0.1, 1): random and never zero.
template <typename T>
Tensor random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> magnitude(0.1f, 1.0f);
  std::vector<T> v(static_cast<size_t>(shape.num_elements()));
  for (T& x : v) x = T(rng() & 1 ? magnitude(rng) : -magnitude(rng));
  return Tensor::from_vector<T>(shape, v);
}

Tensor random_tensor(DType dtype, const Shape& shape, uint32_t seed) {
  switch (dtype) {
    case DType::kFloat16:
      return random_tensor<Half>(shape, seed);
    case DType::kBFloat16:
      return random_tensor<BFloat16>(shape, seed);
    default:
      return random_tensor<float>(shape, seed);
  }
}

// The convolution in float64, straight from ONNX's definition. 1-D and 2-D cases are run as 3-D
// ones with size-1 leading spatial axes.
std::vector<double> oracle(const ConvCase& c, const Tensor& xt, const Tensor& wt, const Tensor& bt,
                           Shape* out_shape) {
  const size_t n = c.x.rank() - 2;
  const std::vector<double> x = xt.to_double_vector(), w = wt.to_double_vector();
  const std::vector<double> b = bt.defined() ? bt.to_double_vector() : std::vector<double>();
  int64_t in[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1};
  int64_t pb[3] = {0, 0, 0}, out[3] = {1, 1, 1};
  std::vector<int64_t> dims = {xt.shape()[0], c.w[0]};
  for (size_t i = 0; i < n; ++i) {
    const size_t a = 3 - n + i;
    in[a] = xt.shape()[2 + i];
    k[a] = c.w[2 + i];
    s[a] = c.strides.empty() ? 1 : c.strides[i];
    d[a] = c.dilations.empty() ? 1 : c.dilations[i];
    const int64_t extent = (k[a] - 1) * d[a] + 1;
    int64_t begin = c.pads.empty() ? 0 : c.pads[i], end = c.pads.empty() ? 0 : c.pads[n + i];
    if (c.auto_pad == "VALID") begin = end = 0;
    if (c.auto_pad == "SAME_UPPER" || c.auto_pad == "SAME_LOWER") {
      const int64_t o = (in[a] + s[a] - 1) / s[a];
      const int64_t total = std::max<int64_t>(0, (o - 1) * s[a] + extent - in[a]);
      begin = c.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      end = total - begin;
    }
    pb[a] = begin;
    out[a] = (in[a] + begin + end - extent) / s[a] + 1;
    dims.push_back(out[a]);
  }
  *out_shape = Shape(dims);
  const int64_t batch = xt.shape()[0], channels = c.x[1], out_channels = c.w[0];
  const int64_t cg = channels / c.group, mg = out_channels / c.group;
  std::vector<double> y(static_cast<size_t>(out_shape->num_elements()));
  size_t yi = 0;
  for (int64_t bn = 0; bn < batch; ++bn)
    for (int64_t m = 0; m < out_channels; ++m)
      for (int64_t o0 = 0; o0 < out[0]; ++o0)
        for (int64_t o1 = 0; o1 < out[1]; ++o1)
          for (int64_t o2 = 0; o2 < out[2]; ++o2) {
            double acc = b.empty() ? 0.0 : b[m];
            const int64_t g = m / mg;
            for (int64_t ci = 0; ci < cg; ++ci)
              for (int64_t k0 = 0; k0 < k[0]; ++k0)
                for (int64_t k1 = 0; k1 < k[1]; ++k1)
                  for (int64_t k2 = 0; k2 < k[2]; ++k2) {
                    const int64_t i0 = o0 * s[0] - pb[0] + k0 * d[0];
                    const int64_t i1 = o1 * s[1] - pb[1] + k1 * d[1];
                    const int64_t i2 = o2 * s[2] - pb[2] + k2 * d[2];
                    if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1] || i2 < 0 || i2 >= in[2])
                      continue;
                    const int64_t xi =
                        (((bn * channels + g * cg + ci) * in[0] + i0) * in[1] + i1) * in[2] + i2;
                    const int64_t wi = (((m * cg + ci) * k[0] + k0) * k[1] + k1) * k[2] + k2;
                    acc += x[xi] * w[wi];
                  }
            y[yi++] = acc;
          }
  return y;
}

double relative_l2(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// Tolerances against float64: float32 math, then one rounding to the 16-bit type.
double tolerance(DType dtype) {
  return dtype == DType::kFloat16 ? 1e-3 : dtype == DType::kBFloat16 ? 8e-3 : 1e-6;
}

// Random inputs for a case: x, w, and b (undefined without bias).
std::vector<Tensor> case_inputs(const ConvCase& c, DType dtype, const Shape& x_shape,
                                uint32_t seed = 1) {
  return {random_tensor(dtype, x_shape, seed), random_tensor(dtype, c.w, seed + 1),
          c.bias ? random_tensor(dtype, Shape{c.w[0]}, seed + 2) : Tensor()};
}

runtime::KernelDef kernel_def(const ConvCase& c, DType dtype, const std::vector<Tensor>& inputs,
                              bool constant_weights) {
  runtime::KernelDef def;
  def.op_type = "Conv";
  def.node_name = c.name;
  def.attrs = conv_attrs(c);
  def.input_dtypes = {dtype, dtype, c.bias ? dtype : DType::kUndefined};
  def.output_dtypes = {dtype};
  def.constant_inputs.resize(3);
  if (constant_weights) {
    def.constant_inputs[1] = inputs[1];
    def.constant_inputs[2] = inputs[2];
  }
  return def;
}

// The oneDNN kernel itself, not whatever the backend falls back to.
StatusOr<std::unique_ptr<runtime::Kernel>> onednn_kernel(const runtime::KernelDef& def) {
  for (const runtime::cpu::KernelEntry& e : runtime::cpu::onednn_kernels()) {
    if (e.op_type == def.op_type) return e.create(def);
  }
  return not_found("no oneDNN kernel for {}", def.op_type);
}

// Runs `kernel` on inputs (x, w, b) and returns the output.
StatusOr<Tensor> run_kernel(runtime::Kernel& kernel, std::vector<Tensor> inputs, DType dtype,
                            const Shape& out_shape) {
  std::vector<Tensor> outputs(1);
  KS_ASSIGN_OR_RETURN(outputs[0], Tensor::allocate(dtype, out_shape));
  runtime::KernelContext ctx(inputs, outputs,
                             [](DType d, const Shape& s) { return Tensor::allocate(d, s); });
  KS_RETURN_IF_ERROR(kernel.run(ctx));
  return outputs[0];
}

const std::vector<ConvCase>& cases() {
  static const std::vector<ConvCase> all = {
      {.name = "pointwise", .x = {2, 16, 9, 7}, .w = {8, 16, 1, 1}},
      {.name = "pointwise_deep", .x = {1, 512, 8, 8}, .w = {64, 512, 1, 1}, .bias = false},
      {.name = "3x3", .x = {1, 8, 12, 10}, .w = {16, 8, 3, 3}, .pads = {1, 1, 1, 1}},
      {.name = "3x3_no_bias", .x = {1, 8, 12, 10}, .w = {16, 8, 3, 3}, .bias = false},
      {.name = "3x3_deep", .x = {1, 64, 20, 20}, .w = {64, 64, 3, 3}, .pads = {1, 1, 1, 1}},
      {.name = "3x3_stride2",
       .x = {1, 8, 13, 11},
       .w = {16, 8, 3, 3},
       .strides = {2, 2},
       .pads = {1, 1, 1, 1}},
      {.name = "yolov5_stem",
       .x = {1, 3, 64, 64},
       .w = {16, 3, 6, 6},
       .strides = {2, 2},
       .pads = {2, 2, 2, 2}},
      {.name = "grouped",
       .x = {1, 8, 10, 10},
       .w = {12, 4, 3, 3},
       .group = 2,
       .pads = {1, 1, 1, 1}},
      {.name = "depthwise",
       .x = {1, 16, 10, 9},
       .w = {16, 1, 3, 3},
       .group = 16,
       .pads = {1, 1, 1, 1}},
      {.name = "depthwise_multiplier_stride2",
       .x = {1, 8, 11, 9},
       .w = {16, 1, 3, 3},
       .bias = false,
       .group = 8,
       .strides = {2, 2},
       .pads = {1, 1, 1, 1}},
      {.name = "dilated",
       .x = {1, 4, 15, 14},
       .w = {6, 4, 3, 3},
       .dilations = {2, 3},
       .pads = {2, 3, 2, 3}},
      {.name = "asymmetric_pads",
       .x = {1, 5, 11, 9},
       .w = {7, 5, 3, 2},
       .strides = {2, 1},
       .pads = {0, 1, 2, 0}},
      {.name = "pads_beyond_kernel", .x = {1, 2, 5, 5}, .w = {3, 2, 2, 2}, .pads = {3, 1, 2, 3}},
      {.name = "stride_beyond_kernel", .x = {1, 3, 11, 11}, .w = {4, 3, 1, 1}, .strides = {3, 3}},
      {.name = "same_upper",
       .x = {1, 3, 10, 9},
       .w = {4, 3, 4, 3},
       .strides = {2, 2},
       .auto_pad = "SAME_UPPER"},
      {.name = "same_lower",
       .x = {1, 3, 10, 9},
       .w = {4, 3, 4, 3},
       .strides = {2, 2},
       .auto_pad = "SAME_LOWER"},
      {.name = "valid", .x = {1, 3, 10, 9}, .w = {4, 3, 4, 3}, .auto_pad = "VALID"},
      {.name = "conv1d",
       .x = {2, 6, 20},
       .w = {5, 6, 4},
       .strides = {3},
       .dilations = {2},
       .pads = {1, 2}},
      {.name = "conv1d_grouped", .x = {1, 6, 17}, .w = {9, 2, 3}, .bias = false, .group = 3},
      {.name = "conv3d",
       .x = {1, 3, 6, 7, 5},
       .w = {4, 3, 3, 2, 3},
       .strides = {1, 2, 1},
       .pads = {1, 0, 1, 1, 1, 0}},
  };
  return all;
}

const ConvCase& find_case(std::string_view name) {
  for (const ConvCase& c : cases()) {
    if (c.name == name) return c;
  }
  std::abort();
}

class OneDnnConvTest : public ::testing::TestWithParam<std::tuple<ConvCase, DType>> {};

std::string case_name(const ::testing::TestParamInfo<std::tuple<ConvCase, DType>>& info) {
  return std::get<0>(info.param).name + "_" + std::string(dtype_name(std::get<1>(info.param)));
}

// The fast path (constant weights), the per-call-weights path and the reference kernel all agree
// with float64.
TEST_P(OneDnnConvTest, MatchesFloat64AndTheReferenceKernel) {
  const auto& [c, dtype] = GetParam();
  const std::vector<Tensor> in = case_inputs(c, dtype, c.x);
  Shape out_shape;
  const std::vector<double> want = oracle(c, in[0], in[1], in[2], &out_shape);

  // The backend must not quietly fall back to the reference kernel for these.
  ASSERT_TRUE(onednn_kernel(kernel_def(c, dtype, in, true)).ok());
  ASSERT_TRUE(onednn_kernel(kernel_def(c, dtype, in, false)).ok());

  const Attributes a = conv_attrs(c);
  for (const std::vector<size_t>& constants : {std::vector<size_t>{1, 2}, std::vector<size_t>{}}) {
    SCOPED_TRACE(constants.empty() ? "weights per call" : "constant weights");
    StatusOr<std::vector<Tensor>> fast =
        run_op("Conv", in, a, {.reference = false, .constant_inputs = constants});
    ASSERT_TRUE(fast.ok()) << fast.status();
    const Tensor& y = (*fast)[0];
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_EQ(y.shape(), out_shape);
    EXPECT_LE(relative_l2(values(y), want), tolerance(dtype));
  }

  StatusOr<std::vector<Tensor>> reference =
      run_op("Conv", in, a, {.reference = true, .constant_inputs = {1, 2}});
  ASSERT_TRUE(reference.ok()) << reference.status();
  StatusOr<std::vector<Tensor>> fast =
      run_op("Conv", in, a, {.reference = false, .constant_inputs = {1, 2}});
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_LE(relative_l2(values((*fast)[0]), values((*reference)[0])), tolerance(dtype));
}

INSTANTIATE_TEST_SUITE_P(Float32, OneDnnConvTest,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(DType::kFloat32)),
                         case_name);

// float16 and bfloat16 on a selection: the same code path as float32 between the conversions.
std::vector<ConvCase> sixteen_bit_cases() {
  std::vector<ConvCase> out;
  for (const ConvCase& c : cases()) {
    if (c.name == "pointwise" || c.name == "3x3_deep" || c.name == "yolov5_stem" ||
        c.name == "depthwise" || c.name == "asymmetric_pads" || c.name == "conv1d" ||
        c.name == "3x3_no_bias") {
      out.push_back(c);
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(SixteenBit, OneDnnConvTest,
                         ::testing::Combine(::testing::ValuesIn(sixteen_bit_cases()),
                                            ::testing::Values(DType::kFloat16, DType::kBFloat16)),
                         case_name);

// float16 is computed in float32 and rounded once: exactly float32's result on the widened
// inputs, rounded to float16.
TEST(OneDnnConvHalfTest, RoundsFloat32ResultOnce) {
  const ConvCase c = {
      .name = "half", .x = {1, 32, 16, 16}, .w = {16, 32, 3, 3}, .pads = {1, 1, 1, 1}};
  const std::vector<Tensor> in = case_inputs(c, DType::kFloat16, c.x, 7);
  std::vector<Tensor> widened;
  for (const Tensor& t : in) {
    std::vector<float> v;
    for (double d : values(t)) v.push_back(static_cast<float>(d));
    widened.push_back(Tensor::from_vector<float>(t.shape(), v));
  }
  const OpOptions fast = {.reference = false, .constant_inputs = {1, 2}};
  StatusOr<std::vector<Tensor>> half = run_op("Conv", in, conv_attrs(c), fast);
  StatusOr<std::vector<Tensor>> single = run_op("Conv", widened, conv_attrs(c), fast);
  ASSERT_TRUE(half.ok()) << half.status();
  ASSERT_TRUE(single.ok()) << single.status();
  const Half* got = (*half)[0].data<Half>();
  const float* want = (*single)[0].data<float>();
  for (int64_t i = 0; i < (*half)[0].num_elements(); ++i) {
    ASSERT_EQ(got[i].bits, Half(want[i]).bits) << "element " << i << ": " << want[i];
  }
}

// An identity 1x1 convolution reproduces float16 inputs bit for bit, subnormals included.
TEST(OneDnnConvHalfTest, IdentityIsExact) {
  std::vector<Half> xs;
  for (uint16_t bits : {0x0001, 0x03ff, 0x0400, 0x3c00, 0xbc01, 0x7bff, 0xfbff, 0x8001, 0x1234,
                        0x5678, 0x9abc, 0x2001, 0x3555, 0xc000, 0x0200, 0x7000, 0x0123}) {
    xs.push_back(Half::from_bits(bits));
  }
  const Tensor x = Tensor::from_vector<Half>({1, 1, 1, static_cast<int64_t>(xs.size())}, xs);
  const Tensor w = Tensor::from_vector<Half>({1, 1, 1, 1}, {Half(1.0f)});
  StatusOr<std::vector<Tensor>> fast =
      run_op("Conv", {x, w}, {}, {.reference = false, .constant_inputs = {1}});
  ASSERT_TRUE(fast.ok()) << fast.status();
  for (size_t i = 0; i < xs.size(); ++i) EXPECT_EQ((*fast)[0].data<Half>()[i].bits, xs[i].bits);
}

// One kernel sees batch 1, then 3, then 1 again (a cached plan): each result is right.
TEST(OneDnnConvCacheTest, BatchesThroughOneKernel) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16}) {
    for (bool constant_weights : {true, false}) {
      const ConvCase& c = find_case("3x3");
      const std::vector<Tensor> in = case_inputs(c, dtype, c.x);
      StatusOr<std::unique_ptr<runtime::Kernel>> kernel =
          onednn_kernel(kernel_def(c, dtype, in, constant_weights));
      ASSERT_TRUE(kernel.ok()) << kernel.status();
      for (int64_t batch : {1, 3, 1, 3}) {
        Shape x_shape = c.x;
        x_shape[0] = batch;
        // New input values each call; the weights are the kernel's.
        const std::vector<Tensor> inputs = {random_tensor(dtype, x_shape, 10 + batch), in[1],
                                            in[2]};
        Shape out_shape;
        const std::vector<double> want = oracle(c, inputs[0], inputs[1], inputs[2], &out_shape);
        StatusOr<Tensor> y = run_kernel(**kernel, inputs, dtype, out_shape);
        ASSERT_TRUE(y.ok()) << y.status();
        EXPECT_LE(relative_l2(values(*y), want), tolerance(dtype)) << "batch " << batch;
      }
    }
  }
}

// Four threads call one kernel at once, with different batch sizes, so that they build plans and
// run them concurrently: constant weights (shared packed weights) and weights given per call.
TEST(OneDnnConvCacheTest, ConcurrentRuns) {
  const ConvCase& c = find_case("3x3_stride2");
  for (bool constant_weights : {true, false}) {
    SCOPED_TRACE(constant_weights ? "constant weights" : "weights per call");
    const std::vector<Tensor> weights = case_inputs(c, DType::kFloat32, c.x);
    StatusOr<std::unique_ptr<runtime::Kernel>> kernel =
        onednn_kernel(kernel_def(c, DType::kFloat32, weights, constant_weights));
    ASSERT_TRUE(kernel.ok()) << kernel.status();
    std::vector<double> errors(4, -1.0);
    std::vector<Status> statuses(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        double worst = 0;
        for (int iteration = 0; iteration < 8; ++iteration) {
          Shape x_shape = c.x;
          x_shape[0] = 1 + (t + iteration) % 3;
          const Tensor x = random_tensor<float>(x_shape, 100 * t + iteration);
          Shape out_shape;
          const std::vector<double> want = oracle(c, x, weights[1], weights[2], &out_shape);
          StatusOr<Tensor> y =
              run_kernel(**kernel, {x, weights[1], weights[2]}, DType::kFloat32, out_shape);
          if (!y.ok()) {
            statuses[t] = y.status();
            return;
          }
          worst = std::max(worst, relative_l2(values(*y), want));
        }
        errors[t] = worst;
      });
    }
    for (std::thread& th : threads) th.join();
    for (int t = 0; t < 4; ++t) {
      EXPECT_TRUE(statuses[t].ok()) << statuses[t];
      EXPECT_GE(errors[t], 0.0);
      EXPECT_LE(errors[t], 1e-6);
    }
  }
}

// More input shapes than the kernel keeps plans for: the cache starts over and results stay right.
TEST(OneDnnConvCacheTest, ManyShapesThroughOneKernel) {
  const ConvCase& c = find_case("3x3");
  const std::vector<Tensor> in = case_inputs(c, DType::kFloat32, c.x);
  StatusOr<std::unique_ptr<runtime::Kernel>> kernel =
      onednn_kernel(kernel_def(c, DType::kFloat32, in, true));
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  for (int round = 0; round < 2; ++round) {
    for (int64_t size = 1; size <= 40; ++size) {
      const Tensor x = random_tensor<float>(Shape{1, c.x[1], size, 3}, size);
      Shape out_shape;
      const std::vector<double> want = oracle(c, x, in[1], in[2], &out_shape);
      StatusOr<Tensor> y = run_kernel(**kernel, {x, in[1], in[2]}, DType::kFloat32, out_shape);
      ASSERT_TRUE(y.ok()) << y.status();
      EXPECT_LE(relative_l2(values(*y), want), 1e-6) << "height " << size;
    }
  }
}

// An empty batch gives an empty output; no input channels give the bias.
TEST(OneDnnConvEdgeTest, EmptyInputs) {
  const ConvCase c = {.name = "empty", .x = {0, 4, 5, 5}, .w = {3, 4, 3, 3}};
  const std::vector<Tensor> in = case_inputs(c, DType::kFloat32, c.x);
  StatusOr<std::unique_ptr<runtime::Kernel>> kernel =
      onednn_kernel(kernel_def(c, DType::kFloat32, in, true));
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  StatusOr<Tensor> y = run_kernel(**kernel, in, DType::kFloat32, Shape{0, 3, 3, 3});
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->num_elements(), 0);

  const ConvCase no_channels = {.name = "no_channels", .x = {1, 0, 2, 2}, .w = {2, 0, 1, 1}};
  const std::vector<Tensor> in2 = case_inputs(no_channels, DType::kFloat32, no_channels.x);
  kernel = onednn_kernel(kernel_def(no_channels, DType::kFloat32, in2, true));
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  y = run_kernel(**kernel, in2, DType::kFloat32, Shape{1, 2, 2, 2});
  ASSERT_TRUE(y.ok()) << y.status();
  const std::vector<double> b = values(in2[2]);
  EXPECT_EQ(values(*y), (std::vector<double>{b[0], b[0], b[0], b[0], b[1], b[1], b[1], b[1]}));
}

// What the kernel leaves to the reference: other element types, more than 3 spatial axes.
TEST(OneDnnConvEdgeTest, UnimplementedFallsBackToTheReference) {
  const ConvCase c = {.name = "double", .x = {1, 2, 5, 5}, .w = {3, 2, 3, 3}};
  std::vector<Tensor> in = {random_tensor<float>(c.x, 1), random_tensor<float>(c.w, 2), Tensor()};
  runtime::KernelDef def = kernel_def(c, DType::kFloat64, in, false);
  def.input_dtypes = {DType::kFloat64, DType::kFloat64, DType::kUndefined};
  EXPECT_EQ(onednn_kernel(def).status().code(), StatusCode::kUnimplemented);

  const ConvCase c4 = {.name = "4d", .x = {1, 2, 3, 3, 3, 3}, .w = {2, 2, 2, 2, 2, 2}};
  in = {random_tensor<float>(c4.x, 1), random_tensor<float>(c4.w, 2), Tensor()};
  EXPECT_EQ(onednn_kernel(kernel_def(c4, DType::kFloat32, in, true)).status().code(),
            StatusCode::kUnimplemented);

  // Weights given per call and no attribute saying how many spatial axes there are: the kernel
  // cannot know before run(), where falling back is no longer possible.
  const ConvCase plain = find_case("3x3_no_bias");
  in = case_inputs(plain, DType::kFloat32, plain.x);
  def = kernel_def(plain, DType::kFloat32, in, false);
  def.attrs = Attributes();
  EXPECT_EQ(onednn_kernel(def).status().code(), StatusCode::kUnimplemented);
  def.attrs.set("strides", ints{1, 1});
  EXPECT_TRUE(onednn_kernel(def).ok());
}

// Input shapes that contradict the constant weights are an error, not a crash.
TEST(OneDnnConvEdgeTest, MismatchedInputIsAnError) {
  const ConvCase& c = find_case("3x3");
  const std::vector<Tensor> in = case_inputs(c, DType::kFloat32, c.x);
  StatusOr<std::unique_ptr<runtime::Kernel>> kernel =
      onednn_kernel(kernel_def(c, DType::kFloat32, in, true));
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  const Tensor x = random_tensor<float>(Shape{1, 5, 12, 10}, 3);  // 5 channels, weights want 8
  StatusOr<Tensor> y = run_kernel(**kernel, {x, in[1], in[2]}, DType::kFloat32, {1, 16, 12, 10});
  EXPECT_EQ(y.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::testing
