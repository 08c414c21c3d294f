// Reference kernels of Conv and ConvTranspose, for 1 to 3 spatial axes.
//
// Accuracy comes first: products are accumulated in double for every element type (float is not
// enough for the 16-bit types either) and rounded once on the way out, so that a model's float64
// results are reproduced closely. 1-D and 2-D convolutions run as 3-D ones whose leading spatial
// axes have size 1.
//
// Conv loop order: for each output row, the receptive fields of the whole row are gathered into a
// double "patch" (one patch row per input channel and kernel offset, zeros where the window
// overhangs the padding); then each output channel accumulates weight * patch row into a double
// row buffer. The innermost loop runs over output columns, contiguous for every stride, which is
// what makes the reference fast enough to run YOLO models at 640x640.
//
// FusedConv with channels_last=1 (layout in ir/ops/nn.cc) is the same computation on channels-first
// copies: X, W and Z have their channel axis moved to position 1, and the result's moved back.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "kestrel/runtime/activation.h"
#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

template <typename T>
double to_double(T v) {
  return static_cast<double>(ComputeType<T>(v));
}

template <typename T>
std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.num_elements()));
  const T* p = t.data<T>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = to_double(p[i]);
  return out;
}

// Floor division (toward negative infinity), for ConvTranspose's possibly negative padding.
int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

// One spatial axis of a window operation; `pad` is the padding before the first element.
struct Axis {
  int64_t in = 1, out = 1, kernel = 1, stride = 1, dilation = 1, pad = 0;
};
using Axes = std::array<Axis, 3>;

// The axes of a convolution with input x, weights w and output y, aligned to the last of three
// positions. The shape rule (ir/ops/nn.cc) has validated the attributes and computed y's shape;
// only the begin padding is derived here.
Axes window_axes(const Attributes& attrs, const Shape& x, const Shape& w, const Shape& y) {
  const size_t n = x.rank() - 2;
  const std::string auto_pad = attrs.get_string("auto_pad", "NOTSET");
  const std::vector<int64_t> strides = attrs.get_ints("strides");
  const std::vector<int64_t> dilations = attrs.get_ints("dilations");
  const std::vector<int64_t> pads = attrs.get_ints("pads");
  Axes axes;
  for (size_t i = 0; i < n; ++i) {
    Axis& a = axes[3 - n + i];
    a.in = x[2 + i];
    a.out = y[2 + i];
    a.kernel = w[2 + i];
    a.stride = strides.empty() ? 1 : strides[i];
    a.dilation = dilations.empty() ? 1 : dilations[i];
    if (auto_pad == "NOTSET" && !pads.empty()) a.pad = pads[i];
  }
  return axes;
}

// Conv: SAME_UPPER / SAME_LOWER pad so that out = ceil(in / stride), the odd padding at the end
// (SAME_UPPER) or the beginning (SAME_LOWER).
Axes conv_axes(const Attributes& attrs, const Shape& x, const Shape& w, const Shape& y) {
  Axes axes = window_axes(attrs, x, w, y);
  const std::string auto_pad = attrs.get_string("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (Axis& a : axes) {
      const int64_t total =
          std::max<int64_t>(0, (a.out - 1) * a.stride + (a.kernel - 1) * a.dilation + 1 - a.in);
      a.pad = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    }
  }
  return axes;
}

// Conv, and FusedConv when `epilogue` is given: y = activation(conv(x, w) + b) + z, computed in
// double and rounded once.
template <typename T>
Status conv(const Attributes& attrs, KernelContext& ctx, const ActivationSpec& activation = {}) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  Tensor& y = ctx.output(0);
  const Axes ax = conv_axes(attrs, x.shape(), w.shape(), y.shape());
  const int64_t batch = x.shape()[0], channels = x.shape()[1], out_channels = w.shape()[0];
  const int64_t group = attrs.get_int("group", 1);
  const int64_t group_in = channels / group, group_out = out_channels / group;
  const int64_t kernel_size = ax[0].kernel * ax[1].kernel * ax[2].kernel;
  const int64_t patch_rows = group_in * kernel_size;  // = weights per output channel
  const int64_t in_plane = ax[0].in * ax[1].in * ax[2].in;
  const int64_t out_plane = ax[0].out * ax[1].out * ax[2].out;
  const int64_t width = ax[2].out;

  const std::vector<double> weights = to_doubles<T>(w);  // [out_channels][patch_rows]
  std::vector<double> bias(static_cast<size_t>(out_channels), 0.0);
  if (ctx.has_input(2)) bias = to_doubles<T>(ctx.input(2));
  std::vector<double> patch(static_cast<size_t>(patch_rows * width));
  std::vector<double> row(static_cast<size_t>(width));
  const T* in = x.data<T>();
  T* out = y.data<T>();
  const T* residual = ctx.has_input(3) ? ctx.input(3).data<T>() : nullptr;

  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < group; ++g) {
      for (int64_t od = 0; od < ax[0].out; ++od) {
        for (int64_t oh = 0; oh < ax[1].out; ++oh) {
          // Gather the receptive fields of output row (od, oh) for this group's input channels.
          double* p = patch.data();
          for (int64_t c = 0; c < group_in; ++c) {
            const T* plane = in + ((b * channels) + g * group_in + c) * in_plane;
            for (int64_t kd = 0; kd < ax[0].kernel; ++kd) {
              const int64_t id = od * ax[0].stride - ax[0].pad + kd * ax[0].dilation;
              for (int64_t kh = 0; kh < ax[1].kernel; ++kh) {
                const int64_t ih = oh * ax[1].stride - ax[1].pad + kh * ax[1].dilation;
                const bool row_inside = id >= 0 && id < ax[0].in && ih >= 0 && ih < ax[1].in;
                const T* src = row_inside ? plane + (id * ax[1].in + ih) * ax[2].in : nullptr;
                for (int64_t kw = 0; kw < ax[2].kernel; ++kw, p += width) {
                  const int64_t offset = kw * ax[2].dilation - ax[2].pad;
                  for (int64_t ow = 0; ow < width; ++ow) {
                    const int64_t iw = ow * ax[2].stride + offset;
                    p[ow] = row_inside && iw >= 0 && iw < ax[2].in ? to_double(src[iw]) : 0.0;
                  }
                }
              }
            }
          }
          // Each output channel of the group: row = bias + sum over patch rows of weight * row.
          for (int64_t m = 0; m < group_out; ++m) {
            const int64_t oc = g * group_out + m;
            const double* wm = weights.data() + oc * patch_rows;
            std::fill(row.begin(), row.end(), bias[oc]);
            // Four patch rows per pass: the same additions in the same order as one row at a
            // time, with a quarter of the loads and stores of the row buffer.
            int64_t r = 0;
            for (; r + 4 <= patch_rows; r += 4) {
              const double w0 = wm[r], w1 = wm[r + 1], w2 = wm[r + 2], w3 = wm[r + 3];
              const double* p0 = patch.data() + r * width;
              const double* p1 = p0 + width;
              const double* p2 = p1 + width;
              const double* p3 = p2 + width;
              for (int64_t ow = 0; ow < width; ++ow) {
                row[ow] = (((row[ow] + w0 * p0[ow]) + w1 * p1[ow]) + w2 * p2[ow]) + w3 * p3[ow];
              }
            }
            for (; r < patch_rows; ++r) {
              const double wv = wm[r];
              const double* pr = patch.data() + r * width;
              for (int64_t ow = 0; ow < width; ++ow) row[ow] += wv * pr[ow];
            }
            const int64_t at = (b * out_channels + oc) * out_plane + (od * ax[1].out + oh) * width;
            T* dst = out + at;
            for (int64_t ow = 0; ow < width; ++ow) {
              double v = apply_activation(activation, row[ow]);
              if (residual) v += to_double(residual[at + ow]);
              dst[ow] = round_to<T>(v);
            }
          }
        }
      }
    }
  }
  return Status();
}

// ConvTranspose's begin padding (the shape rule's formulas): with output_shape or SAME_*, the total
// padding full - out is split with the odd one at the end for SAME_UPPER, at the beginning
// otherwise; floor division, so an output larger than `full` gets its extra zeros at the end.
Axes conv_transpose_axes(const Attributes& attrs, const Shape& x, const Shape& w, const Shape& y) {
  Axes axes = window_axes(attrs, x, w, y);
  const std::string auto_pad = attrs.get_string("auto_pad", "NOTSET");
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  const std::vector<int64_t> output_padding = attrs.get_ints("output_padding");
  const size_t n = x.rank() - 2;
  for (size_t i = 0; i < n; ++i) {
    Axis& a = axes[3 - n + i];
    if (!same && !attrs.has("output_shape")) continue;
    const int64_t full = a.stride * (a.in - 1) + (output_padding.empty() ? 0 : output_padding[i]) +
                         (a.kernel - 1) * a.dilation + 1;
    const int64_t total = full - a.out;
    a.pad = auto_pad == "SAME_UPPER" ? floor_div(total, 2) : total - floor_div(total, 2);
  }
  return axes;
}

// Scatter form, the operator's definition: input element i of channel c adds x * w[c][m][k] to
// output position i * stride - pad + k * dilation of every output channel m in c's group.
template <typename T>
Status conv_transpose(const Attributes& attrs, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  Tensor& y = ctx.output(0);
  const Axes ax = conv_transpose_axes(attrs, x.shape(), w.shape(), y.shape());
  const int64_t batch = x.shape()[0], channels = x.shape()[1], out_channels = y.shape()[1];
  const int64_t group = attrs.get_int("group", 1);
  const int64_t group_in = channels / group, group_out = out_channels / group;
  const int64_t kernel_size = ax[0].kernel * ax[1].kernel * ax[2].kernel;
  const int64_t in_plane = ax[0].in * ax[1].in * ax[2].in;
  const int64_t out_plane = ax[0].out * ax[1].out * ax[2].out;

  const std::vector<double> weights = to_doubles<T>(w);  // [channels][group_out][kernel_size]
  std::vector<double> bias(static_cast<size_t>(out_channels), 0.0);
  if (ctx.has_input(2)) bias = to_doubles<T>(ctx.input(2));
  std::vector<double> acc(static_cast<size_t>(group_out * out_plane));
  const T* in = x.data<T>();
  T* out = y.data<T>();

  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < group; ++g) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t c = 0; c < group_in; ++c) {
        const int64_t ic = g * group_in + c;
        const T* plane = in + (b * channels + ic) * in_plane;
        for (int64_t m = 0; m < group_out; ++m) {
          const double* wk = weights.data() + (ic * group_out + m) * kernel_size;
          double* dst = acc.data() + m * out_plane;
          for (int64_t kd = 0; kd < ax[0].kernel; ++kd) {
            for (int64_t kh = 0; kh < ax[1].kernel; ++kh) {
              for (int64_t kw = 0; kw < ax[2].kernel; ++kw) {
                const double wv = *wk++;
                for (int64_t id = 0; id < ax[0].in; ++id) {
                  const int64_t od = id * ax[0].stride - ax[0].pad + kd * ax[0].dilation;
                  if (od < 0 || od >= ax[0].out) continue;
                  for (int64_t ih = 0; ih < ax[1].in; ++ih) {
                    const int64_t oh = ih * ax[1].stride - ax[1].pad + kh * ax[1].dilation;
                    if (oh < 0 || oh >= ax[1].out) continue;
                    const T* src = plane + (id * ax[1].in + ih) * ax[2].in;
                    double* drow = dst + (od * ax[1].out + oh) * ax[2].out;
                    for (int64_t iw = 0; iw < ax[2].in; ++iw) {
                      const int64_t ow = iw * ax[2].stride - ax[2].pad + kw * ax[2].dilation;
                      if (ow >= 0 && ow < ax[2].out) drow[ow] += wv * to_double(src[iw]);
                    }
                  }
                }
              }
            }
          }
        }
      }
      for (int64_t m = 0; m < group_out; ++m) {
        const int64_t oc = g * group_out + m;
        T* dst = out + (b * out_channels + oc) * out_plane;
        const double* src = acc.data() + m * out_plane;
        for (int64_t i = 0; i < out_plane; ++i) dst[i] = round_to<T>(src[i] + bias[oc]);
      }
    }
  }
  return Status();
}

// [N, C, S...] -> [N, S..., C] (to_last) or back: `out` receives `in` with its channel axis moved.
// REQUIRES: out has the moved shape.
template <typename T>
void move_channels(const Tensor& in, Tensor& out, bool to_last) {
  const Shape& s = in.shape();
  const int64_t n = s[0], c = to_last ? s[1] : s[s.rank() - 1];
  const int64_t inner = n == 0 || c == 0 ? 0 : in.num_elements() / (n * c);
  const T* src = in.data<T>();
  T* dst = out.data<T>();
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t first = (b * c + ch) * inner + i, last = (b * inner + i) * c + ch;
        dst[to_last ? last : first] = src[to_last ? first : last];
      }
    }
  }
}

// The shape of `s` with its last axis moved to position 1.
Shape channels_first_shape(const Shape& s) {
  std::vector<int64_t> dims = s.vec();
  std::rotate(dims.begin() + 1, dims.end() - 1, dims.end());
  return Shape(std::move(dims));
}

// Runs `f` on a context whose inputs `channel_inputs` and output 0 are channels-first copies of
// ctx's channels-last ones (other inputs shared), then moves the result's channels last into ctx's
// output 0.
template <typename T, typename F>
Status run_channels_first(KernelContext& ctx, std::initializer_list<size_t> channel_inputs, F f) {
  std::vector<Tensor> inputs(ctx.num_inputs());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!ctx.has_input(i)) continue;
    const Tensor& in = ctx.input(i);
    if (std::find(channel_inputs.begin(), channel_inputs.end(), i) == channel_inputs.end()) {
      inputs[i] = in;
      continue;
    }
    if (in.rank() < 2) return invalid_argument("input {} {} has no channel axis", i, in.shape());
    KS_ASSIGN_OR_RETURN(inputs[i], Tensor::allocate(in.dtype(), channels_first_shape(in.shape())));
    move_channels<T>(in, inputs[i], /*to_last=*/false);
  }
  Tensor& y = ctx.output(0);
  std::vector<Tensor> outputs(1);
  KS_ASSIGN_OR_RETURN(outputs[0], Tensor::allocate(y.dtype(), channels_first_shape(y.shape())));
  KernelContext inner(inputs, outputs, [](DType dtype, const Shape& shape) {
    return Tensor::allocate(dtype, shape);
  });
  KS_RETURN_IF_ERROR(f(inner));
  move_channels<T>(outputs[0], y, /*to_last=*/true);
  return Status();
}

template <bool kTranspose>
StatusOr<std::unique_ptr<Kernel>> create(const KernelDef& def) {
  if (!dtype_in<FloatTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([attrs = def.attrs](KernelContext& ctx) -> Status {
    if (ctx.input(0).rank() < 3 || ctx.input(0).rank() > 5) {
      return unimplemented("{} spatial axes are not supported", ctx.input(0).rank() - 2);
    }
    return dispatch_dtype<FloatTypes>(ctx.input(0).dtype(), [&]<typename T>(TypeTag<T>) {
      return kTranspose ? conv_transpose<T>(attrs, ctx) : conv<T>(attrs, ctx);
    });
  });
}

// Kestrel's FusedConv: the reference convolution with the activation and residual applied to the
// double accumulator; channels-last through channels-first copies of X, W, Z and Y.
StatusOr<std::unique_ptr<Kernel>> create_fused(const KernelDef& def) {
  if (!dtype_in<FloatTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  KS_ASSIGN_OR_RETURN(const ActivationSpec activation, parse_activation(def.attrs));
  const bool channels_last = def.attrs.get_int("channels_last", 0) != 0;
  return make_kernel([attrs = def.attrs, activation, channels_last](KernelContext& ctx) -> Status {
    if (ctx.input(0).rank() < 3 || ctx.input(0).rank() > 5) {
      return unimplemented("{} spatial axes are not supported", ctx.input(0).rank() - 2);
    }
    return dispatch_dtype<FloatTypes>(ctx.input(0).dtype(), [&]<typename T>(TypeTag<T>) {
      if (!channels_last) return conv<T>(attrs, ctx, activation);
      return run_channels_first<T>(
          ctx, {0, 1, 3}, [&](KernelContext& inner) { return conv<T>(attrs, inner, activation); });
    });
  });
}

}  // namespace

std::vector<KernelEntry> conv_kernels() {
  return {{"Conv", create<false>}, {"ConvTranspose", create<true>}, {"FusedConv", create_fused}};
}

}  // namespace kestrel::runtime::cpu
