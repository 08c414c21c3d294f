// Reference kernel of Resize (opsets 11 to 19), following ONNX's reference implementation
// (onnx/reference/ops/op_resize.py) in double precision:
//
// - Each resized axis maps output coordinate x to an input coordinate x_ori with the
//   coordinate_transformation_mode, using scale (given, or sizes / input size) and the fractional
//   output width scale * input size.
// - The interpolation window is the n input positions nearest x_ori (ties to the lower one), the
//   input padded by repeating its edges; weights come from the fraction
//   ratio = x_ori - floor(x_ori), taken as 1 rather than 0 at integer coordinates: nearest picks
//   one of two positions, linear weighs two, cubic four, and antialias (downscaling with linear or
//   cubic) stretches the filter by 1 / scale. exclude_outside drops the padded positions and
//   renormalizes (linear and cubic; antialias and exclude_outside do not apply to nearest).
// - Axes are separable: an output element is the weighted sum over the product of the axes'
//   windows. tf_crop_and_resize gives extrapolation_value where some axis falls outside the input.
//
// Deliberate differences from the reference, which only matter for non-finite inputs or degenerate
// attributes: nearest selects its input element rather than multiplying by 0 and 1 (so an
// infinite neighbour cannot make a NaN); zero-weight taps are skipped for the same reason; and an
// axis is left alone only when its scale is 1 and the mapping is the identity (not for
// tf_crop_and_resize, whose roi may crop it, nor tf_half_pixel_for_nn, which shifts it).
#include <algorithm>
#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

struct Options {
  std::string mode, ctm, nearest_mode, policy;
  std::vector<int64_t> axes;
  double cubic_a = -0.75;
  bool antialias = false, exclude_outside = false;
  double extrapolation_value = 0;
};

// Input position and weight of one tap.
struct Tap {
  int64_t index;
  double weight;
};

// How one axis maps its output positions to input taps.
struct AxisPlan {
  bool identity = true;
  std::vector<std::vector<Tap>> taps;  // per output position
  std::vector<bool> outside;           // tf_crop_and_resize: the position extrapolates
};

// The interpolation weights of the window around a coordinate with fraction `ratio` in (0, 1].
std::vector<double> coefficients(double ratio, double scale, const Options& o) {
  if (o.mode == "nearest") {
    bool second = true;  // at integer coordinates (ratio 1) the second position is x_ori itself
    if (ratio != 1.0) {
      if (o.nearest_mode == "round_prefer_floor") {
        second = ratio > 0.5;
      } else if (o.nearest_mode == "round_prefer_ceil") {
        second = ratio >= 0.5;
      } else {
        second = o.nearest_mode == "ceil";
      }
    }
    return {second ? 0.0 : 1.0, second ? 1.0 : 0.0};
  }
  const double a = o.cubic_a;
  if (!o.antialias) {  // (antialias is defined for linear and cubic only)
    if (o.mode == "linear") return {1 - ratio, ratio};
    const double r = ratio, s = 1 - ratio;
    return {((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1, ((a + 2) * s - (a + 3)) * s * s + 1,
            ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a};
  }
  // Antialias: the filter stretched by 1 / scale when downscaling, normalized to sum 1.
  const double sc = std::min(scale, 1.0);
  std::vector<double> c;
  if (o.mode == "linear") {
    const auto start = static_cast<int64_t>(std::floor(-1 / sc) + 1);
    for (int64_t i = start; i < 2 - start; ++i) {
      c.push_back(std::clamp(1 - std::abs((static_cast<double>(i) - ratio) * sc), 0.0, 1.0));
    }
  } else {
    const auto start = static_cast<int64_t>(std::floor(-2 / sc) + 1);
    for (int64_t i = start; i < 2 - start; ++i) {
      const double x = std::abs(sc * (static_cast<double>(i) - ratio));
      c.push_back(x <= 1  ? ((a + 2) * x - (a + 3)) * x * x + 1
                  : x < 2 ? ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
                          : 0.0);
    }
  }
  double sum = 0;
  for (double v : c) sum += v;
  for (double& v : c) v /= sum;
  return c;
}

// The input coordinate of output position x along an axis of size `in` resized to `out` with
// `scale` (roi: the axis' start and end for tf_crop_and_resize).
double source_coordinate(double x, int64_t in, int64_t out, double scale, double roi_start,
                         double roi_end, const std::string& ctm) {
  const double in_d = static_cast<double>(in);
  const double width = scale * in_d;  // the fractional output width
  if (ctm == "align_corners") return width == 1 ? 0.0 : x * (in_d - 1) / (width - 1);
  if (ctm == "asymmetric") return x / scale;
  if (ctm == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
  if (ctm == "pytorch_half_pixel") return width == 1 ? -0.5 : (x + 0.5) / scale - 0.5;
  if (ctm == "half_pixel_symmetric") {
    const double offset = in_d / 2 * (1 - static_cast<double>(out) / width);
    return offset + (x + 0.5) / scale - 0.5;
  }
  if (ctm == "tf_crop_and_resize") {
    const double span = (roi_end - roi_start) * (in_d - 1);
    return (width == 1 ? span / 2 : x * span / (width - 1)) + roi_start * (in_d - 1);
  }
  return (x + 0.5) / scale - 0.5;  // half_pixel
}

AxisPlan plan_axis(int64_t in, int64_t out, double scale, double roi_start, double roi_end,
                   const Options& o) {
  AxisPlan plan;
  plan.identity =
      scale == 1.0 && in == out && o.ctm != "tf_crop_and_resize" && o.ctm != "tf_half_pixel_for_nn";
  if (plan.identity) return plan;
  plan.taps.resize(static_cast<size_t>(out));
  plan.outside.resize(static_cast<size_t>(out), false);
  const double limit = static_cast<double>(in) + 64;  // keeps far-off coordinates castable
  for (int64_t x = 0; x < out; ++x) {
    double x_ori =
        source_coordinate(static_cast<double>(x), in, out, scale, roi_start, roi_end, o.ctm);
    if (o.ctm == "tf_crop_and_resize" && !(x_ori >= 0 && x_ori <= static_cast<double>(in - 1))) {
      plan.outside[x] = true;
      continue;
    }
    x_ori = std::clamp(x_ori, -limit, limit);
    const double x_floor = std::floor(x_ori);
    const bool integral = x_ori == x_floor;
    const double ratio = integral ? 1.0 : x_ori - x_floor;
    std::vector<double> c = coefficients(ratio, scale, o);
    const auto n = static_cast<int64_t>(c.size());
    // The n nearest positions (ties to the lower) are base - n/2 + 1 ... base + n/2, where base is
    // the last position strictly below x_ori; kept within the edge-padded input.
    const int64_t base = static_cast<int64_t>(x_floor) - (integral ? 1 : 0);
    const int64_t pad = (n + 1) / 2;
    const int64_t start = std::clamp(base - n / 2 + 1, -pad, in + pad - n);
    if (o.exclude_outside && o.mode != "nearest") {
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) {
        if (start + k < 0 || start + k >= in) c[k] = 0;
        sum += c[k];
      }
      for (double& v : c) v /= sum;
    }
    for (int64_t k = 0; k < n; ++k) {
      if (c[k] != 0) plan.taps[x].push_back({std::clamp<int64_t>(start + k, 0, in - 1), c[k]});
    }
  }
  return plan;
}

// The weighted sum over the windows of axes d and after, for output position `pos`; `offset` is
// the input offset chosen by the axes before d.
template <typename T>
double interpolate(const T* x, const std::vector<AxisPlan>& plans,
                   const std::vector<int64_t>& strides, const std::vector<int64_t>& pos, size_t d,
                   int64_t offset) {
  if (d == plans.size()) return static_cast<double>(ComputeType<T>(x[offset]));
  if (plans[d].identity) {
    return interpolate(x, plans, strides, pos, d + 1, offset + pos[d] * strides[d]);
  }
  double sum = 0;
  for (const Tap& t : plans[d].taps[pos[d]]) {
    sum += t.weight * interpolate(x, plans, strides, pos, d + 1, offset + t.index * strides[d]);
  }
  return sum;
}

template <typename T>
Status resize(const Options& o, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const size_t rank = x.rank();
  if (y.num_elements() == 0) return Status();
  std::vector<int64_t> axes = o.axes;
  if (axes.empty()) {
    for (size_t d = 0; d < rank; ++d) axes.push_back(static_cast<int64_t>(d));
  }
  for (int64_t& a : axes) a = a < 0 ? a + static_cast<int64_t>(rank) : a;

  // The scale of each axis, as the shape rule derived the output size from it.
  std::vector<double> scale(rank, 1.0), roi_start(rank, 0.0), roi_end(rank, 1.0);
  if (ctx.has_input(2) && ctx.input(2).num_elements() > 0) {
    const float* s = ctx.input(2).data<float>();
    for (size_t i = 0; i < axes.size(); ++i) scale[axes[i]] = s[i];
  } else {
    // A resized axis of size 0 only occurs with an empty output, handled above.
    const int64_t* sizes = ctx.input(3).data<int64_t>();
    std::vector<double> ratio(axes.size());
    for (size_t i = 0; i < axes.size(); ++i) {
      ratio[i] = static_cast<double>(sizes[i]) / static_cast<double>(x.shape()[axes[i]]);
    }
    for (size_t i = 0; i < axes.size(); ++i) {
      scale[axes[i]] = o.policy == "not_larger"    ? *std::min_element(ratio.begin(), ratio.end())
                       : o.policy == "not_smaller" ? *std::max_element(ratio.begin(), ratio.end())
                                                   : ratio[i];
    }
  }
  if (o.ctm == "tf_crop_and_resize") {
    const std::vector<double> roi = ctx.input(1).to_double_vector();
    for (size_t i = 0; i < axes.size(); ++i) {
      roi_start[axes[i]] = roi[i];
      roi_end[axes[i]] = roi[axes.size() + i];
    }
  }
  std::vector<AxisPlan> plans(rank);
  for (size_t d = 0; d < rank; ++d) {
    plans[d] = plan_axis(x.shape()[d], y.shape()[d], scale[d], roi_start[d], roi_end[d], o);
  }

  const std::vector<int64_t> strides = contiguous_strides(x.shape());
  const T* in = x.data<T>();
  T* out = y.data<T>();
  std::vector<int64_t> pos(rank, 0);
  const int64_t total = y.num_elements();
  for (int64_t i = 0; i < total; ++i) {
    bool outside = false;
    for (size_t d = 0; d < rank; ++d) outside |= !plans[d].identity && plans[d].outside[pos[d]];
    if (outside) {
      if constexpr (std::is_integral_v<T>) {
        out[i] = saturating_cast<T>(o.extrapolation_value);
      } else {
        out[i] = round_to<T>(o.extrapolation_value);
      }
    } else if (o.mode == "nearest") {
      // One tap per axis: a plain copy, exact for every element type.
      int64_t offset = 0;
      for (size_t d = 0; d < rank; ++d) {
        offset += (plans[d].identity ? pos[d] : plans[d].taps[pos[d]].front().index) * strides[d];
      }
      out[i] = in[offset];
    } else {
      if constexpr (!std::is_integral_v<T>) {
        out[i] = round_to<T>(interpolate(in, plans, strides, pos, 0, 0));
      }
    }
    for (size_t d = rank; d-- > 0;) {
      if (++pos[d] < y.shape()[d]) break;
      pos[d] = 0;
    }
  }
  return Status();
}

StatusOr<std::unique_ptr<Kernel>> create_resize(const KernelDef& def) {
  const Attributes& a = def.attrs;
  Options o;
  o.mode = a.get_string("mode", "nearest");
  o.ctm = a.get_string("coordinate_transformation_mode", "half_pixel");
  o.nearest_mode = a.get_string("nearest_mode", "round_prefer_floor");
  o.policy = a.get_string("keep_aspect_ratio_policy", "stretch");
  o.cubic_a = a.get_float("cubic_coeff_a", -0.75f);
  o.antialias = a.get_int("antialias", 0) != 0;
  o.exclude_outside = a.get_int("exclude_outside", 0) != 0;
  o.extrapolation_value = a.get_float("extrapolation_value", 0.0f);
  o.axes = a.get_ints("axes");
  const DType dtype = def.input_dtypes[0];
  if (o.mode == "nearest" ? !dtype_in<NumericTypes>(dtype) : !dtype_in<FloatTypes>(dtype)) {
    return unimplemented("{}: no CPU kernel for {} resize of {}", def.describe(), o.mode, dtype);
  }
  return make_kernel([o](KernelContext& ctx) -> Status {
    return dispatch_dtype<NumericTypes>(ctx.input(0).dtype(),
                                        [&]<typename T>(TypeTag<T>) { return resize<T>(o, ctx); });
  });
}

}  // namespace

std::vector<KernelEntry> resize_kernels() { return {{"Resize", create_resize}}; }

}  // namespace kestrel::runtime::cpu
