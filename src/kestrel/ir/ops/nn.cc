// Shape rules and FLOPs rules of the neural-network operators: Conv, ConvTranspose, the pools,
// BatchNormalization, Gemm, MatMul, Softmax/LogSoftmax/Hardmax and Resize.
//
// Attribute values and the contents of value inputs are untrusted: every size derived from them is
// computed with overflow checks, and each rule rejects what its kernel could not compute with an
// error naming the node and the offending values. Convolutions and pools support 1 to 3 spatial
// axes, which covers every model Kestrel targets; more is UNIMPLEMENTED.
//
// FLOPs count 2 per multiply-accumulate for Conv, ConvTranspose, Gemm and MatMul, one per window
// element for the pools, and one per output element (the default) for the rest.
//
// Channels-last layouts (written by optimize/to_channels_last.h; not ONNX). FusedConv's
// `channels_last` and MaxPool's / AveragePool's `kestrel_channels_last` (int, default 0) move the
// channel axis of X, Y (and FusedConv's W and Z) innermost; the arithmetic, every other attribute
// (kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, count_include_pad, group) and the
// FLOPs are unchanged, and spatial attributes still list the spatial axes in order:
//   NCHW (0)                         channels-last (1)
//   X [N, C, D1, ..., Dn]            X [N, D1, ..., Dn, C]          (n = 1, 2 or 3)
//   W [K, C/group, k1, ..., kn]      W [K, k1, ..., kn, C/group]    (FusedConv; "KRSC")
//   B [K]                            B [K]
//   Z, Y [N, K, O1, ..., On]         Z, Y [N, O1, ..., On, K]
// that is, Y_last[n, o..., k] = Y_nchw[n, k, o...], computed from
// X_nchw[n, c, d...] = X_last[n, d..., c] and W_nchw[k, c, r...] = W_last[k, r..., c]. With
// group > 1, input channel c belongs to group c / (C/group) and output channel k to group
// k / (K/group), as in ONNX. MaxPool's Indices output is not available channels-last.
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "kestrel/ir/op_families.h"
#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {
namespace {

constexpr size_t kMaxSpatialAxes = 3;

// a * b and a + b, or nullopt when the result does not fit in int64.
std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}
std::optional<int64_t> checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// A product for FLOPs counts, saturating at INT64_MAX instead of overflowing.
int64_t saturating_product(std::initializer_list<int64_t> factors) {
  int64_t r = 1;
  for (int64_t f : factors) {
    if (f <= 0) return 0;
    r = checked_mul(r, f).value_or(std::numeric_limits<int64_t>::max());
  }
  return r;
}

int64_t product(std::span<const int64_t> dims) {
  int64_t r = 1;
  for (int64_t d : dims) r = checked_mul(r, d).value_or(std::numeric_limits<int64_t>::max());
  return r;
}

Status require_flag(const InferContext& ctx, std::string_view name) {
  const int64_t v = ctx.attrs().get_int(name, 0);
  if (v != 0 && v != 1) return ctx.error("attribute '{}' must be 0 or 1, got {}", name, v);
  return Status();
}

// ---- sliding windows: Conv, ConvTranspose and the pools ----

enum class AutoPad { kNotSet, kSameUpper, kSameLower, kValid };

StatusOr<AutoPad> auto_pad_attribute(const InferContext& ctx) {
  const std::string s = ctx.attrs().get_string("auto_pad", "NOTSET");
  if (s == "NOTSET") return AutoPad::kNotSet;
  if (s == "SAME_UPPER") return AutoPad::kSameUpper;
  if (s == "SAME_LOWER") return AutoPad::kSameLower;
  if (s == "VALID") return AutoPad::kValid;
  return ctx.error("auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '{}'", s);
}

// An ints attribute with `per_axis` values per spatial axis (2 for pads), each at least `min`;
// `fallback` fills an absent attribute.
StatusOr<std::vector<int64_t>> spatial_ints(const InferContext& ctx, std::string_view name,
                                            size_t axes, int64_t fallback, int64_t min,
                                            size_t per_axis = 1) {
  if (!ctx.attrs().has(name)) return std::vector<int64_t>(axes * per_axis, fallback);
  std::vector<int64_t> v = ctx.attrs().get_ints(name);
  if (v.size() != axes * per_axis) {
    return ctx.error("attribute '{}' has {} values, expected {} for {} spatial axes", name,
                     v.size(), axes * per_axis, axes);
  }
  for (int64_t x : v) {
    if (x < min) {
      return ctx.error("attribute '{}' = [{}] has a value below {}", name, fmt::join(v, ","), min);
    }
  }
  return v;
}

// The input's rank and its number of spatial axes, checked: (N, C, D1, ..., Dn), or
// (N, D1, ..., Dn, C) channels-last, with 1 <= n <= 3.
StatusOr<size_t> spatial_axes(const InferContext& ctx, bool channels_last = false) {
  const Shape& x = ctx.input_shape(0);
  if (x.rank() < 3) {
    return ctx.error("input must have shape {} with at least one spatial axis, got {}",
                     channels_last ? "(N, D1, ..., C)" : "(N, C, D1, ...)", x);
  }
  if (x.rank() - 2 > kMaxSpatialAxes) {
    return ctx.unsupported("input {} has {} spatial axes; at most {} are supported", x,
                           x.rank() - 2, kMaxSpatialAxes);
  }
  return x.rank() - 2;
}

// One spatial axis of a convolution or pool: input size, window, padding and output size.
struct WindowAxis {
  int64_t in = 0, kernel = 1, stride = 1, dilation = 1, pad_begin = 0, pad_end = 0, out = 0;
  int64_t extent = 1;  // (kernel - 1) * dilation + 1: the span of the dilated window
};

// The output geometry of Conv and the pools (ONNX's formulas):
//   explicit pads: out = floor((in + pads - extent) / stride) + 1 (ceil with ceil_mode, dropping a
//                  last window that would start in the end padding, as PyTorch does)
//   SAME_*:        out = ceil(in / stride); the padding needed is split evenly, the odd one at the
//                  end (SAME_UPPER) or at the beginning (SAME_LOWER)
//   VALID:         no padding
// For pools, the padding must be smaller than the window's extent, as onnxruntime requires.
// The spatial axes of the input start at `first_spatial` (2, or 1 channels-last).
StatusOr<std::vector<WindowAxis>> window_geometry(const InferContext& ctx,
                                                  std::span<const int64_t> kernel, bool pool,
                                                  size_t first_spatial = 2) {
  const Shape& x = ctx.input_shape(0);
  const size_t n = kernel.size();
  KS_ASSIGN_OR_RETURN(const AutoPad auto_pad, auto_pad_attribute(ctx));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> strides, spatial_ints(ctx, "strides", n, 1, 1));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> dilations,
                      spatial_ints(ctx, "dilations", n, 1, 1));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> pads, spatial_ints(ctx, "pads", n, 0, 0, 2));
  const bool ceil_mode = pool && ctx.attrs().get_int("ceil_mode", 0) != 0;
  if (auto_pad != AutoPad::kNotSet &&
      std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; })) {
    return ctx.error("pads [{}] cannot be combined with auto_pad={}", fmt::join(pads, ","),
                     ctx.attrs().get_string("auto_pad", ""));
  }
  std::vector<WindowAxis> axes(n);
  for (size_t i = 0; i < n; ++i) {
    WindowAxis& a = axes[i];
    a.in = x[first_spatial + i];
    a.kernel = kernel[i];
    a.stride = strides[i];
    a.dilation = dilations[i];
    std::optional<int64_t> extent = checked_mul(a.kernel - 1, a.dilation);
    if (extent) extent = checked_add(*extent, 1);
    if (!extent) {
      return ctx.error("kernel size {} with dilation {} overflows", a.kernel, a.dilation);
    }
    a.extent = *extent;
    if (auto_pad == AutoPad::kSameUpper || auto_pad == AutoPad::kSameLower) {
      a.out = a.in == 0 ? 0 : (a.in - 1) / a.stride + 1;
      // (out - 1) * stride <= in - 1, so only the extent can overflow here.
      const std::optional<int64_t> needed =
          checked_add(std::max<int64_t>(a.out - 1, 0) * a.stride, a.extent);
      if (!needed) return ctx.error("kernel extent {} overflows", a.extent);
      const int64_t total = std::max<int64_t>(0, *needed - a.in);
      a.pad_begin = auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
      a.pad_end = total - a.pad_begin;
    } else {
      if (auto_pad == AutoPad::kNotSet) {
        a.pad_begin = pads[i];
        a.pad_end = pads[n + i];
      }
      std::optional<int64_t> padded = checked_add(a.in, a.pad_begin);
      if (padded) padded = checked_add(*padded, a.pad_end);
      if (!padded) return ctx.error("pads [{}] overflow", fmt::join(pads, ","));
      if (*padded < a.extent) {
        return ctx.error(
            "spatial axis {} has size {} ({} with padding), smaller than the window's extent {} "
            "(kernel {}, dilation {}); input shape {}",
            i, a.in, *padded, a.extent, a.kernel, a.dilation, x);
      }
      const int64_t span = *padded - a.extent;
      a.out = span / a.stride + 1;
      if (ceil_mode && span % a.stride != 0) {
        ++a.out;
        // The last window must start inside the input or its begin padding.
        if (checked_mul(a.out - 1, a.stride).value_or(std::numeric_limits<int64_t>::max()) >=
            a.in + a.pad_begin) {
          --a.out;
        }
      }
    }
    if (pool && (a.pad_begin >= a.extent || a.pad_end >= a.extent)) {
      return ctx.error(
          "pads {} and {} of spatial axis {} must be smaller than the window's extent {} "
          "(kernel {}, dilation {})",
          a.pad_begin, a.pad_end, i, a.extent, a.kernel, a.dilation);
    }
  }
  return axes;
}

// The weights' spatial dimensions (`spatial`, those of `w`) must not be empty, and kernel_shape,
// when given, must match them.
Status check_kernel_shape(const InferContext& ctx, const Shape& w,
                          std::span<const int64_t> spatial_dims) {
  if (std::any_of(spatial_dims.begin(), spatial_dims.end(), [](int64_t d) { return d < 1; })) {
    return ctx.error("weights {} have an empty spatial dimension", w);
  }
  if (!ctx.attrs().has("kernel_shape")) return Status();
  const std::vector<int64_t> k = ctx.attrs().get_ints("kernel_shape");
  const std::vector<int64_t> spatial(spatial_dims.begin(), spatial_dims.end());
  if (k != spatial) {
    return ctx.error("kernel_shape [{}] does not match the weights' shape {}", fmt::join(k, ","),
                     w);
  }
  return Status();
}

// The optional bias: same element type as X, shape [channels].
Status check_bias(const InferContext& ctx, size_t i, int64_t channels) {
  if (!ctx.has_input(i)) return Status();
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, i));
  if (ctx.input_shape(i) != Shape{channels}) {
    return ctx.error("bias has shape {}, expected [{}] (one value per output channel)",
                     ctx.input_shape(i), channels);
  }
  return Status();
}

// Conv, and FusedConv with its `channels_last` attribute (0 for Conv, which does not have it).
Status conv_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 1));
  KS_RETURN_IF_ERROR(require_flag(ctx, "channels_last"));
  const bool last = ctx.attrs().get_int("channels_last", 0) != 0;
  KS_ASSIGN_OR_RETURN(const size_t n, spatial_axes(ctx, last));
  const Shape& x = ctx.input_shape(0);
  const Shape& w = ctx.input_shape(1);
  if (w.rank() != x.rank()) {
    return ctx.error("weights {} must have the input's rank {} (input {})", w, x.rank(), x);
  }
  // X's and W's channel axis, and their first spatial axis.
  const size_t channel_axis = last ? x.rank() - 1 : 1, first_spatial = last ? 1 : 2;
  const int64_t group = ctx.attrs().get_int("group", 1);
  if (group < 1) return ctx.error("group must be positive, got {}", group);
  const int64_t channels = x[channel_axis], out_channels = w[0];
  if (channels % group != 0) {
    return ctx.error("input {} has {} channels, which group={} does not divide", x, channels,
                     group);
  }
  if (w[channel_axis] != channels / group) {
    return ctx.error(
        "weights {} expect {} input channels per group, but input {} has {} channels in {} "
        "group(s), {} per group",
        w, w[channel_axis], x, channels, group, channels / group);
  }
  if (out_channels % group != 0) {
    return ctx.error("weights {} have {} output channels, which group={} does not divide", w,
                     out_channels, group);
  }
  const std::span<const int64_t> kernel = std::span(w.dims()).subspan(first_spatial, n);
  KS_RETURN_IF_ERROR(check_kernel_shape(ctx, w, kernel));
  KS_RETURN_IF_ERROR(check_bias(ctx, 2, out_channels));
  KS_ASSIGN_OR_RETURN(const std::vector<WindowAxis> axes,
                      window_geometry(ctx, kernel, /*pool=*/false, first_spatial));
  std::vector<int64_t> dims = {x[0]};
  if (!last) dims.push_back(out_channels);
  for (size_t i = 0; i < n; ++i) dims.push_back(axes[i].out);
  if (last) dims.push_back(out_channels);
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

// Kestrel's FusedConv (produced by optimize/fuse_conv_activation.h): Conv's rule, plus an
// optional residual input Z of the output's shape and type, and a known activation:
//   Y = activation(conv(X, W) + B) + Z
// in either layout (`channels_last`, see the top of this file).
Status fused_conv_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(conv_rule(ctx));
  static const std::set<std::string, std::less<>> kActivations = {
      "", "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Silu"};
  const std::string activation = ctx.attrs().get_string("activation", "");
  if (!kActivations.count(activation)) return ctx.error("unknown activation '{}'", activation);
  if (ctx.has_input(3)) {
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 3));
    const Shape y(ctx.outputs()[0].dims);
    if (ctx.input_shape(3) != y) {
      return ctx.error("residual input has shape {}, expected the output's {}", ctx.input_shape(3),
                       y);
    }
  }
  return Status();
}

// Each output element is a dot product over C/group channels and the kernel window: the product
// of W's dimensions after the first, in either layout.
int64_t conv_flops(const InferContext& ctx) {
  const Shape& w = ctx.input_shape(1);
  return saturating_product(
      {2, product(ctx.outputs()[0].dims), product(std::span(w.dims()).subspan(1))});
}

// ConvTranspose's geometry (ONNX's formulas), per spatial axis:
//   full = stride * (in - 1) + output_padding + extent
//   out  = output_shape if given; in * stride for SAME_*; else full - pad_begin - pad_end
//   when out is given or SAME_*, the padding total = full - out is split with the odd one at the
//   end for SAME_UPPER and at the beginning otherwise (floor division, so a negative total, an
//   output larger than `full`, puts the extra zeros at the end).
StatusOr<std::vector<int64_t>> conv_transpose_output(const InferContext& ctx, size_t n) {
  const Shape& x = ctx.input_shape(0);
  const Shape& w = ctx.input_shape(1);
  KS_ASSIGN_OR_RETURN(const AutoPad auto_pad, auto_pad_attribute(ctx));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> strides, spatial_ints(ctx, "strides", n, 1, 1));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> dilations,
                      spatial_ints(ctx, "dilations", n, 1, 1));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> pads, spatial_ints(ctx, "pads", n, 0, 0, 2));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> output_padding,
                      spatial_ints(ctx, "output_padding", n, 0, 0));
  std::vector<int64_t> output_shape = ctx.attrs().get_ints("output_shape");
  const bool has_output_shape = ctx.attrs().has("output_shape");
  if (has_output_shape) {
    // Either the spatial sizes or the whole shape (N, C, spatial...); only the spatial part counts.
    if (output_shape.size() == n + 2) {
      output_shape.erase(output_shape.begin(), output_shape.begin() + 2);
    }
    if (output_shape.size() != n) {
      return ctx.error("output_shape has {} values, expected {} (one per spatial axis)",
                       ctx.attrs().get_ints("output_shape").size(), n);
    }
  }
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = x[2 + i];
    if (in < 1) return ctx.error("spatial axis {} of input {} is empty", i, x);
    // full = stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1, checked.
    std::optional<int64_t> full = checked_mul(strides[i], in - 1);
    const std::optional<int64_t> extent = checked_mul(w[2 + i] - 1, dilations[i]);
    if (full && extent) full = checked_add(*full, *extent);
    if (full) full = checked_add(*full, output_padding[i]);
    if (full) full = checked_add(*full, 1);
    if (!full || !extent) return ctx.error("the output size of spatial axis {} overflows", i);
    if (has_output_shape) {
      out[i] = output_shape[i];
      if (out[i] < 0) return ctx.error("output_shape has a negative size {}", out[i]);
    } else if (auto_pad == AutoPad::kSameUpper || auto_pad == AutoPad::kSameLower) {
      const std::optional<int64_t> o = checked_mul(in, strides[i]);
      if (!o) return ctx.error("the output size of spatial axis {} overflows", i);
      out[i] = *o;
    } else {
      const int64_t pb = auto_pad == AutoPad::kValid ? 0 : pads[i];
      const int64_t pe = auto_pad == AutoPad::kValid ? 0 : pads[n + i];
      const std::optional<int64_t> padding = checked_add(pb, pe);
      if (!padding || *padding > *full) {
        return ctx.error("pads {} and {} exceed the output size {} of spatial axis {}", pb, pe,
                         *full, i);
      }
      out[i] = *full - *padding;
    }
  }
  return out;
}

Status conv_transpose_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 1));
  KS_ASSIGN_OR_RETURN(const size_t n, spatial_axes(ctx));
  const Shape& x = ctx.input_shape(0);
  const Shape& w = ctx.input_shape(1);
  if (w.rank() != x.rank()) {
    return ctx.error("weights {} must have the input's rank {} (input {})", w, x.rank(), x);
  }
  const int64_t group = ctx.attrs().get_int("group", 1);
  if (group < 1) return ctx.error("group must be positive, got {}", group);
  if (w[0] != x[1]) {
    return ctx.error("weights {} have {} input channels (dimension 0), but input {} has {}", w,
                     w[0], x, x[1]);
  }
  if (x[1] % group != 0) {
    return ctx.error("input {} has {} channels, which group={} does not divide", x, x[1], group);
  }
  const std::optional<int64_t> out_channels = checked_mul(w[1], group);
  if (!out_channels) return ctx.error("output channels {} x group {} overflow", w[1], group);
  KS_RETURN_IF_ERROR(check_kernel_shape(ctx, w, std::span(w.dims()).subspan(2)));
  KS_RETURN_IF_ERROR(check_bias(ctx, 2, *out_channels));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> spatial, conv_transpose_output(ctx, n));
  std::vector<int64_t> dims = {x[0], *out_channels};
  dims.insert(dims.end(), spatial.begin(), spatial.end());
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

// Each input element is scattered through the kernel window into M/group output channels.
int64_t conv_transpose_flops(const InferContext& ctx) {
  const Shape& w = ctx.input_shape(1);
  return saturating_product(
      {2, ctx.input_shape(0).num_elements(), product(std::span(w.dims()).subspan(1))});
}

using MaxPoolTypes = TypeList<float, double, Half, BFloat16, int8_t, uint8_t>;

template <bool kMax>
Status pool_rule(InferContext& ctx) {
  if constexpr (kMax) {
    KS_RETURN_IF_ERROR(require_dtype<MaxPoolTypes>(ctx, 0));
    KS_RETURN_IF_ERROR(require_flag(ctx, "storage_order"));
  } else {
    KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
    KS_RETURN_IF_ERROR(require_flag(ctx, "count_include_pad"));
  }
  KS_RETURN_IF_ERROR(require_flag(ctx, "ceil_mode"));
  KS_RETURN_IF_ERROR(require_flag(ctx, "kestrel_channels_last"));
  const bool last = ctx.attrs().get_int("kestrel_channels_last", 0) != 0;
  if (last && ctx.num_outputs() > 1) {
    return ctx.error("the Indices output is not available with kestrel_channels_last=1");
  }
  KS_ASSIGN_OR_RETURN(const size_t n, spatial_axes(ctx, last));
  KS_ASSIGN_OR_RETURN(const std::vector<int64_t> kernel,
                      spatial_ints(ctx, "kernel_shape", n, 1, 1));
  KS_ASSIGN_OR_RETURN(const std::vector<WindowAxis> axes,
                      window_geometry(ctx, kernel, /*pool=*/true, last ? 1 : 2));
  const Shape& x = ctx.input_shape(0);
  const int64_t channels = x[last ? x.rank() - 1 : 1];
  std::vector<int64_t> dims = {x[0]};
  if (!last) dims.push_back(channels);
  for (size_t i = 0; i < n; ++i) dims.push_back(axes[i].out);
  if (last) dims.push_back(channels);
  ctx.set_output(0, ctx.input_dtype(0), Shape(dims));
  // MaxPool's optional Indices: flat positions in the input, int64.
  if (kMax && ctx.num_outputs() > 1) ctx.set_output(1, DType::kInt64, Shape(std::move(dims)));
  return Status();
}

int64_t pool_flops(const InferContext& ctx) {
  return saturating_product(
      {product(ctx.outputs()[0].dims), product(ctx.attrs().get_ints("kernel_shape"))});
}

// GlobalAveragePool / GlobalMaxPool: (N, C, D1, ...) -> (N, C, 1, ...).
template <bool kMax>
Status global_pool_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
  const Shape& x = ctx.input_shape(0);
  if (x.rank() < 2) return ctx.error("input must have shape (N, C, D1, ...), got {}", x);
  if (kMax && x.num_elements(2, x.rank()) == 0 && x.num_elements() != 0) {
    return ctx.error("cannot take the maximum over the empty spatial extent of input {}", x);
  }
  std::vector<int64_t> dims = {x[0], x[1]};
  dims.resize(x.rank(), 1);
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

int64_t global_pool_flops(const InferContext& ctx) { return ctx.input_shape(0).num_elements(); }

// ---- BatchNormalization ----

Status batch_norm_rule(InferContext& ctx) {
  if (ctx.attrs().get_int("training_mode", 0) != 0) {
    return ctx.unsupported("training_mode=1 (training) is not supported; Kestrel runs inference");
  }
  for (size_t i = 0; i < 5; ++i) KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, i));
  // Opset 15 lets scale/B and mean/var have their own float types.
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 1, 2));
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 3, 4));
  const Shape& x = ctx.input_shape(0);
  if (x.rank() < 2) return ctx.error("input must have shape (N, C, ...), got {}", x);
  static constexpr std::string_view kNames[] = {"", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i) {
    if (ctx.input_shape(i) != Shape{x[1]}) {
      return ctx.error("{} has shape {}, expected [{}] (one value per channel of input {})",
                       kNames[i], ctx.input_shape(i), x[1], x);
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), x);
  return Status();
}

// ---- Gemm and MatMul ----

Status gemm_rule(InferContext& ctx) {
  if (!dtype_in<FloatTypes>(ctx.input_dtype(0)) && is_integer(ctx.input_dtype(0))) {
    return ctx.unsupported("Gemm on {} is not supported (floating-point types only)",
                           ctx.input_dtype(0));
  }
  KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 1));
  KS_RETURN_IF_ERROR(require_rank(ctx, 0, 2));
  KS_RETURN_IF_ERROR(require_rank(ctx, 1, 2));
  const Shape& a = ctx.input_shape(0);
  const Shape& b = ctx.input_shape(1);
  const bool trans_a = ctx.attrs().get_int("transA", 0) != 0;
  const bool trans_b = ctx.attrs().get_int("transB", 0) != 0;
  const int64_t m = trans_a ? a[1] : a[0], k = trans_a ? a[0] : a[1];
  const int64_t kb = trans_b ? b[1] : b[0], n = trans_b ? b[0] : b[1];
  if (k != kb) {
    return ctx.error("A {}{} and B {}{} have different inner dimensions {} and {}", a,
                     trans_a ? " (transposed)" : "", b, trans_b ? " (transposed)" : "", k, kb);
  }
  if (ctx.has_input(2)) {
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 2));
    // C broadcasts to (M, N) in one direction only.
    const Shape& c = ctx.input_shape(2);
    const std::vector<int64_t> out = {m, n};
    bool ok = c.rank() <= 2;
    for (size_t i = 0; ok && i < c.rank(); ++i) {
      const int64_t d = c[c.rank() - 1 - i];
      ok = d == 1 || d == out[1 - i];
    }
    if (!ok) return ctx.error("C {} does not broadcast to the result's shape [{},{}]", c, m, n);
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape{m, n});
  return Status();
}

int64_t gemm_flops(const InferContext& ctx) {
  const Shape& a = ctx.input_shape(0);
  const int64_t k = ctx.attrs().get_int("transA", 0) != 0 ? a[0] : a[1];
  return saturating_product({2, product(ctx.outputs()[0].dims), k});
}

// MatMul follows numpy.matmul: a 1-D A is a row vector and a 1-D B a column vector (that dimension
// is dropped from the result); the batch dimensions broadcast.
Status matmul_rule(InferContext& ctx) {
  if (!dtype_in<FloatTypes>(ctx.input_dtype(0)) && is_integer(ctx.input_dtype(0))) {
    return ctx.unsupported("MatMul on {} is not supported (floating-point types only)",
                           ctx.input_dtype(0));
  }
  KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 1));
  const Shape& a = ctx.input_shape(0);
  const Shape& b = ctx.input_shape(1);
  if (a.rank() == 0 || b.rank() == 0) {
    return ctx.error("operands must have rank 1 or more, got {} and {}", a, b);
  }
  const int64_t ka = a[a.rank() - 1];
  const int64_t kb = b.rank() == 1 ? b[0] : b[b.rank() - 2];
  if (ka != kb) {
    return ctx.error("A {} and B {} have different inner dimensions {} and {}", a, b, ka, kb);
  }
  const Shape batch_a(std::vector<int64_t>(a.begin(), a.end() - std::min<size_t>(a.rank(), 2)));
  const Shape batch_b(std::vector<int64_t>(b.begin(), b.end() - std::min<size_t>(b.rank(), 2)));
  StatusOr<Shape> batch = broadcast_shapes(batch_a, batch_b);
  if (!batch.ok()) {
    return ctx.error("the batch dimensions of A {} and B {} do not broadcast: {}", a, b,
                     batch.status().message());
  }
  std::vector<int64_t> dims = batch->vec();
  if (a.rank() >= 2) dims.push_back(a[a.rank() - 2]);
  if (b.rank() >= 2) dims.push_back(b[b.rank() - 1]);
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

int64_t matmul_flops(const InferContext& ctx) {
  const Shape& a = ctx.input_shape(0);
  return saturating_product({2, product(ctx.outputs()[0].dims), a[a.rank() - 1]});
}

// ---- Softmax, LogSoftmax, Hardmax (opset 13: one axis, default -1) ----

Status softmax_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
  const Shape& x = ctx.input_shape(0);
  const int64_t axis = ctx.attrs().get_int("axis", -1);
  if (!normalize_axis(axis, static_cast<int64_t>(x.rank())).ok()) {
    return ctx.error("axis {} is out of range for input {}", axis, x);
  }
  ctx.set_output(0, ctx.input_dtype(0), x);
  return Status();
}

// ---- Resize ----

// Resize output sizes (ONNX's reference implementation):
//   scales: out = floor(in * scale), the product taken in double precision
//   sizes:  out = sizes with keep_aspect_ratio_policy=stretch; otherwise one scale for every
//           resized axis, the smallest (not_larger) or largest (not_smaller) of sizes / in, and
//           out = floor(in * scale + 0.5)
// `axes` (opset 18) names the axes that scales/sizes/roi describe; the others keep their size.
Status resize_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<NumericTypes>(ctx, 0));
  const Attributes& attrs = ctx.attrs();
  const Shape& x = ctx.input_shape(0);
  const auto rank = static_cast<int64_t>(x.rank());
  auto one_of = [&](std::string_view name, std::string fallback,
                    std::initializer_list<std::string_view> allowed) -> Status {
    const std::string v = attrs.get_string(name, fallback);
    if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return Status();
    return ctx.error("attribute {} must be one of {}, got '{}'", name, fmt::join(allowed, ", "), v);
  };
  KS_RETURN_IF_ERROR(one_of("mode", "nearest", {"nearest", "linear", "cubic"}));
  KS_RETURN_IF_ERROR(
      one_of("coordinate_transformation_mode", "half_pixel",
             {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
              "asymmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn"}));
  KS_RETURN_IF_ERROR(one_of("nearest_mode", "round_prefer_floor",
                            {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}));
  KS_RETURN_IF_ERROR(
      one_of("keep_aspect_ratio_policy", "stretch", {"stretch", "not_larger", "not_smaller"}));
  KS_RETURN_IF_ERROR(require_flag(ctx, "antialias"));
  KS_RETURN_IF_ERROR(require_flag(ctx, "exclude_outside"));

  std::vector<int64_t> axes;
  if (attrs.has("axes")) {
    std::set<int64_t> seen;
    for (int64_t a : attrs.get_ints("axes")) {
      StatusOr<int64_t> n = normalize_axis(a, rank);
      if (!n.ok()) return ctx.error("axes: {}", n.status().message());
      if (!seen.insert(*n).second) return ctx.error("axes name axis {} twice", a);
      axes.push_back(*n);
    }
  } else {
    for (int64_t a = 0; a < rank; ++a) axes.push_back(a);
  }
  const size_t count = axes.size();

  // In opsets 11 and 12 an unused scales or roi input is an empty tensor rather than omitted.
  const bool has_scales = ctx.has_input(2) && ctx.input_shape(2).num_elements() > 0;
  const bool has_sizes = ctx.has_input(3) && ctx.input_shape(3).num_elements() > 0;
  if (has_scales == has_sizes) {
    if (has_scales) return ctx.error("scales and sizes are both given; exactly one is allowed");
    return ctx.error("one of scales and sizes must be given");
  }
  const std::string ctm = attrs.get_string("coordinate_transformation_mode", "half_pixel");
  if (ctm == "tf_crop_and_resize") {
    if (!ctx.has_input(1) || ctx.input_shape(1).num_elements() == 0) {
      return ctx.error("coordinate_transformation_mode tf_crop_and_resize needs the roi input");
    }
    KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 1));
    if (ctx.input_shape(1) != Shape{static_cast<int64_t>(2 * count)}) {
      return ctx.error("roi has shape {}, expected [{}] (start and end for each of {} axes)",
                       ctx.input_shape(1), 2 * count, count);
    }
  }

  std::vector<int64_t> dims = x.vec();
  if (has_scales) {
    if (ctx.input_dtype(2) != DType::kFloat32) {
      return ctx.error("scales must be float32, got {}", ctx.input_dtype(2));
    }
    if (ctx.input_shape(2) != Shape{static_cast<int64_t>(count)}) {
      return ctx.error("scales has shape {}, expected [{}] (one per resized axis)",
                       ctx.input_shape(2), count);
    }
    const float* scales = ctx.input_value(2).data<float>();
    for (size_t i = 0; i < count; ++i) {
      const double s = scales[i];
      if (!(s > 0) || !std::isfinite(s)) {
        return ctx.error("scales [{}] must be positive and finite",
                         fmt::join(std::span(scales, count), ","));
      }
      const double out = std::floor(static_cast<double>(x[axes[i]]) * s);
      if (!(out < 0x1p62)) return ctx.error("scale {} makes axis {} too large", s, axes[i]);
      dims[axes[i]] = static_cast<int64_t>(out);
    }
  } else {
    if (ctx.input_dtype(3) != DType::kInt64) {
      return ctx.error("sizes must be int64, got {}", ctx.input_dtype(3));
    }
    if (ctx.input_shape(3) != Shape{static_cast<int64_t>(count)}) {
      return ctx.error("sizes has shape {}, expected [{}] (one per resized axis)",
                       ctx.input_shape(3), count);
    }
    const int64_t* sizes = ctx.input_value(3).data<int64_t>();
    for (size_t i = 0; i < count; ++i) {
      if (sizes[i] < 0) {
        return ctx.error("sizes [{}] has a negative size", fmt::join(std::span(sizes, count), ","));
      }
      if (x[axes[i]] == 0 && sizes[i] != 0) {
        return ctx.error("cannot resize the empty axis {} of input {} to size {}", axes[i], x,
                         sizes[i]);
      }
    }
    const std::string policy = attrs.get_string("keep_aspect_ratio_policy", "stretch");
    if (policy == "stretch") {
      for (size_t i = 0; i < count; ++i) dims[axes[i]] = sizes[i];
    } else {
      double scale = policy == "not_larger" ? std::numeric_limits<double>::infinity() : 0.0;
      for (size_t i = 0; i < count; ++i) {
        if (x[axes[i]] == 0) continue;
        const double s = static_cast<double>(sizes[i]) / static_cast<double>(x[axes[i]]);
        scale = policy == "not_larger" ? std::min(scale, s) : std::max(scale, s);
      }
      for (size_t i = 0; i < count; ++i) {
        const double out = std::floor(scale * static_cast<double>(x[axes[i]]) + 0.5);
        if (!(out < 0x1p62)) return ctx.error("sizes make axis {} too large", axes[i]);
        dims[axes[i]] = x[axes[i]] == 0 ? 0 : static_cast<int64_t>(out);
      }
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

// ---- schemas ----

OpSchema schema(std::string_view name, int min_inputs, int max_inputs, InferFn infer,
                std::vector<AttrSpec> attrs, FlopsFn flops = nullptr) {
  OpSchema s;
  s.op_type = name;
  s.min_inputs = min_inputs;
  s.max_inputs = max_inputs;
  s.attributes = std::move(attrs);
  s.infer = infer;
  s.flops = flops;
  return s;
}

}  // namespace

std::vector<OpSchema> nn_op_schemas() {
  using A = AttributeType;
  // The sliding-window attributes shared by the convolutions and pools; pools need kernel_shape.
  auto with = [](std::vector<AttrSpec> extra, bool kernel_required = false) {
    std::vector<AttrSpec> all = {{"auto_pad", A::kString},
                                 {"dilations", A::kInts},
                                 {"kernel_shape", A::kInts, kernel_required},
                                 {"pads", A::kInts},
                                 {"strides", A::kInts}};
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  std::vector<OpSchema> s;
  // kestrel_kernel (Kestrel's, both operators): "direct", "cudnn" or "graph" (cuDNN's fused
  // graph, channels-last FusedConv) pins the GPU kernel instead of measuring the candidates
  // (runtime/cuda/conv.cc); for tests and per-layer overrides. "no_graph" measures the others
  // only (engine::BuildOptions::cudnn_graph off).
  // kestrel_tf32 (Kestrel's, both operators): 1 lets a float32 convolution use TF32 tensor cores
  // on the GPU (engine::BuildOptions::tf32 sets it; runtime/cuda/conv.cc honours it).
  s.push_back(
      schema("Conv", 2, 3, conv_rule,
             with({{"group", A::kInt}, {"kestrel_kernel", A::kString}, {"kestrel_tf32", A::kInt}}),
             conv_flops));
  s.push_back(schema("FusedConv", 2, 4, fused_conv_rule,
                     with({{"group", A::kInt},
                           {"kestrel_kernel", A::kString},
                           {"kestrel_tf32", A::kInt},
                           {"activation", A::kString},
                           {"activation_alpha", A::kFloat},
                           {"activation_beta", A::kFloat},
                           {"channels_last", A::kInt}}),
                     conv_flops));
  s.push_back(
      schema("ConvTranspose", 2, 3, conv_transpose_rule,
             with({{"group", A::kInt}, {"output_padding", A::kInts}, {"output_shape", A::kInts}}),
             conv_transpose_flops));
  OpSchema max_pool = schema(
      "MaxPool", 1, 1, pool_rule<true>,
      with({{"ceil_mode", A::kInt}, {"storage_order", A::kInt}, {"kestrel_channels_last", A::kInt}},
           true),
      pool_flops);
  max_pool.max_outputs = 2;
  s.push_back(std::move(max_pool));
  s.push_back(schema("AveragePool", 1, 1, pool_rule<false>,
                     with({{"ceil_mode", A::kInt},
                           {"count_include_pad", A::kInt},
                           {"kestrel_channels_last", A::kInt}},
                          true),
                     pool_flops));
  s.push_back(schema("GlobalAveragePool", 1, 1, global_pool_rule<false>, {}, global_pool_flops));
  s.push_back(schema("GlobalMaxPool", 1, 1, global_pool_rule<true>, {}, global_pool_flops));
  OpSchema batch_norm =
      schema("BatchNormalization", 5, 5, batch_norm_rule,
             {{"epsilon", A::kFloat}, {"momentum", A::kFloat}, {"training_mode", A::kInt}});
  // Training outputs (running mean and variance; saved statistics before opset 14) may be
  // declared; using them is UNIMPLEMENTED (the rule leaves them unset).
  batch_norm.max_outputs = 5;
  s.push_back(std::move(batch_norm));
  s.push_back(
      schema("Gemm", 2, 3, gemm_rule,
             {{"alpha", A::kFloat}, {"beta", A::kFloat}, {"transA", A::kInt}, {"transB", A::kInt}},
             gemm_flops));
  s.push_back(schema("MatMul", 2, 2, matmul_rule, {}, matmul_flops));
  for (std::string_view name : {"Softmax", "LogSoftmax", "Hardmax"}) {
    s.push_back(schema(name, 1, 1, softmax_rule, {{"axis", A::kInt}}));
  }
  OpSchema resize = schema("Resize", 1, 4, resize_rule,
                           {{"antialias", A::kInt},
                            {"axes", A::kInts},
                            {"coordinate_transformation_mode", A::kString},
                            {"cubic_coeff_a", A::kFloat},
                            {"exclude_outside", A::kInt},
                            {"extrapolation_value", A::kFloat},
                            {"keep_aspect_ratio_policy", A::kString},
                            {"mode", A::kString},
                            {"nearest_mode", A::kString}});
  resize.value_inputs = {1, 2, 3};
  s.push_back(std::move(resize));
  return s;
}

}  // namespace kestrel::ir
