// Reference kernels of MaxPool (with its optional Indices), AveragePool, GlobalAveragePool and
// GlobalMaxPool, for 1 to 3 spatial axes (1-D and 2-D pools run as 3-D ones whose leading spatial
// axes have size 1).
//
// Every window visits only its taps inside the input, computed per axis, so the work is bounded by
// the input whatever the attributes say. Maxima propagate NaN (the first NaN of a window wins), as
// numpy.max and PyTorch do; averages are summed in double and rounded once.
//
// MaxPool and AveragePool with kestrel_channels_last=1 (layout in ir/ops/nn.cc) are the same
// computation on a channels-first copy of X, whose result's channels are moved back last.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

template <typename C>
bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>) return std::isnan(v);
  return false;
}

// One spatial axis of a pool; pad_begin/pad_end are the padding before and after the input.
struct Axis {
  int64_t in = 1, out = 1, kernel = 1, stride = 1, dilation = 1, pad_begin = 0, pad_end = 0;

  // The range [first, last) of taps j whose position start + j * dilation lies in [lo, hi), for
  // the window of output position o.
  std::pair<int64_t, int64_t> taps(int64_t o, int64_t lo, int64_t hi) const {
    const int64_t start = o * stride - pad_begin;
    const int64_t first =
        start >= lo ? 0 : (lo - start) / dilation + ((lo - start) % dilation != 0);
    const int64_t last = start >= hi ? 0 : std::min(kernel, (hi - 1 - start) / dilation + 1);
    return {first, std::max(first, last)};
  }
  // Taps inside the input.
  std::pair<int64_t, int64_t> inside(int64_t o) const { return taps(o, 0, in); }
};
using Axes = std::array<Axis, 3>;

// The axes of a pool from input x to output y, aligned to the last of three positions. The shape
// rule (ir/ops/nn.cc) has validated the attributes and computed y's shape.
Axes pool_axes(const Attributes& attrs, const Shape& x, const Shape& y) {
  const size_t n = x.rank() - 2;
  const std::string auto_pad = attrs.get_string("auto_pad", "NOTSET");
  const std::vector<int64_t> kernel = attrs.get_ints("kernel_shape");
  const std::vector<int64_t> strides = attrs.get_ints("strides");
  const std::vector<int64_t> dilations = attrs.get_ints("dilations");
  const std::vector<int64_t> pads = attrs.get_ints("pads");
  Axes axes;
  for (size_t i = 0; i < n; ++i) {
    Axis& a = axes[3 - n + i];
    a.in = x[2 + i];
    a.out = y[2 + i];
    a.kernel = kernel[i];
    a.stride = strides.empty() ? 1 : strides[i];
    a.dilation = dilations.empty() ? 1 : dilations[i];
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      // out = ceil(in / stride); the odd padding goes last (SAME_UPPER) or first (SAME_LOWER).
      const int64_t total =
          std::max<int64_t>(0, (a.out - 1) * a.stride + (a.kernel - 1) * a.dilation + 1 - a.in);
      a.pad_begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      a.pad_end = total - a.pad_begin;
    } else if (auto_pad == "NOTSET" && !pads.empty()) {
      a.pad_begin = pads[i];
      a.pad_end = pads[n + i];
    }
  }
  return axes;
}

// MaxPool. Indices are flat positions in the input (batch and channel included, padding not):
// row-major, or with the spatial axes in column-major order for storage_order=1.
template <typename T>
Status max_pool(const Attributes& attrs, KernelContext& ctx) {
  using C = ComputeType<T>;
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const Axes ax = pool_axes(attrs, x.shape(), y.shape());
  const bool column_major = attrs.get_int("storage_order", 0) != 0;
  int64_t* indices =
      ctx.num_outputs() > 1 && ctx.output(1).defined() ? ctx.output(1).data<int64_t>() : nullptr;
  const int64_t planes = x.shape()[0] * x.shape()[1];
  const int64_t in_plane = ax[0].in * ax[1].in * ax[2].in;
  const T* in = x.data<T>();
  T* out = y.data<T>();
  int64_t o = 0;
  for (int64_t p = 0; p < planes; ++p) {
    const T* plane = in + p * in_plane;
    for (int64_t od = 0; od < ax[0].out; ++od) {
      const auto [d0, d1] = ax[0].inside(od);
      for (int64_t oh = 0; oh < ax[1].out; ++oh) {
        const auto [h0, h1] = ax[1].inside(oh);
        for (int64_t ow = 0; ow < ax[2].out; ++ow, ++o) {
          const auto [w0, w1] = ax[2].inside(ow);
          // An empty window (possible only with dilation over a tiny input) gives max's identity.
          C best = std::numeric_limits<C>::has_infinity ? -std::numeric_limits<C>::infinity()
                                                        : std::numeric_limits<C>::lowest();
          int64_t best_at = -1;
          for (int64_t kd = d0; kd < d1; ++kd) {
            const int64_t id = od * ax[0].stride - ax[0].pad_begin + kd * ax[0].dilation;
            for (int64_t kh = h0; kh < h1; ++kh) {
              const int64_t ih = oh * ax[1].stride - ax[1].pad_begin + kh * ax[1].dilation;
              for (int64_t kw = w0; kw < w1; ++kw) {
                const int64_t iw = ow * ax[2].stride - ax[2].pad_begin + kw * ax[2].dilation;
                const int64_t at = (id * ax[1].in + ih) * ax[2].in + iw;
                const C v = C(plane[at]);
                if (is_nan(best)) continue;
                if (best_at < 0 || v > best || is_nan(v)) {
                  best = v;
                  best_at = column_major ? id + (ih + iw * ax[1].in) * ax[0].in : at;
                }
              }
            }
          }
          out[o] = to_storage<T>(best);
          if (indices) indices[o] = best_at < 0 ? -1 : p * in_plane + best_at;
        }
      }
    }
  }
  return Status();
}

// AveragePool: the sum of the taps inside the input, over their count, or with
// count_include_pad=1 over the count of taps inside the input or its explicit padding (not the
// extra room of ceil_mode), as PyTorch and onnxruntime count.
template <typename T>
Status average_pool(const Attributes& attrs, KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const Axes ax = pool_axes(attrs, x.shape(), y.shape());
  const bool include_pad = attrs.get_int("count_include_pad", 0) != 0;
  const int64_t planes = x.shape()[0] * x.shape()[1];
  const int64_t in_plane = ax[0].in * ax[1].in * ax[2].in;
  auto padded_taps = [](const Axis& a, int64_t o) {
    const auto [first, last] = a.taps(o, -a.pad_begin, a.in + a.pad_end);
    return last - first;
  };
  const T* in = x.data<T>();
  T* out = y.data<T>();
  int64_t o = 0;
  for (int64_t p = 0; p < planes; ++p) {
    const T* plane = in + p * in_plane;
    for (int64_t od = 0; od < ax[0].out; ++od) {
      const auto [d0, d1] = ax[0].inside(od);
      for (int64_t oh = 0; oh < ax[1].out; ++oh) {
        const auto [h0, h1] = ax[1].inside(oh);
        for (int64_t ow = 0; ow < ax[2].out; ++ow, ++o) {
          const auto [w0, w1] = ax[2].inside(ow);
          double sum = 0;
          for (int64_t kd = d0; kd < d1; ++kd) {
            const int64_t id = od * ax[0].stride - ax[0].pad_begin + kd * ax[0].dilation;
            for (int64_t kh = h0; kh < h1; ++kh) {
              const int64_t ih = oh * ax[1].stride - ax[1].pad_begin + kh * ax[1].dilation;
              for (int64_t kw = w0; kw < w1; ++kw) {
                const int64_t iw = ow * ax[2].stride - ax[2].pad_begin + kw * ax[2].dilation;
                sum += static_cast<double>(
                    ComputeType<T>(plane[(id * ax[1].in + ih) * ax[2].in + iw]));
              }
            }
          }
          const int64_t count =
              include_pad ? padded_taps(ax[0], od) * padded_taps(ax[1], oh) * padded_taps(ax[2], ow)
                          : (d1 - d0) * (h1 - h0) * (w1 - w0);
          out[o] = round_to<T>(count > 0 ? sum / static_cast<double>(count)
                                         : std::numeric_limits<double>::quiet_NaN());
        }
      }
    }
  }
  return Status();
}

// GlobalAveragePool / GlobalMaxPool: one value per (batch, channel) plane.
template <typename T, bool kMax>
Status global_pool(KernelContext& ctx) {
  using C = ComputeType<T>;
  const Tensor& x = ctx.input(0);
  const int64_t planes = x.shape()[0] * x.shape()[1];
  const int64_t size = x.shape().num_elements(2, x.rank());
  const T* in = x.data<T>();
  T* out = ctx.output(0).data<T>();
  for (int64_t p = 0; p < planes; ++p) {
    const T* plane = in + p * size;
    if constexpr (kMax) {
      C best = -std::numeric_limits<C>::infinity();
      for (int64_t i = 0; i < size && !is_nan(best); ++i) {
        const C v = C(plane[i]);
        if (v > best || is_nan(v)) best = v;
      }
      out[p] = to_storage<T>(best);
    } else {
      double sum = 0;
      for (int64_t i = 0; i < size; ++i) sum += static_cast<double>(C(plane[i]));
      out[p] = round_to<T>(sum / static_cast<double>(size));
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

// Runs `f` on a context holding channels-first copies of ctx's channels-last input 0 and output 0,
// then moves the result's channels last into ctx's output 0.
template <typename T, typename F>
Status run_channels_first(KernelContext& ctx, F f) {
  if (ctx.num_outputs() != 1) {
    return invalid_argument("the Indices output is not available with kestrel_channels_last=1");
  }
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  std::vector<Tensor> inputs(1), outputs(1);
  KS_ASSIGN_OR_RETURN(inputs[0], Tensor::allocate(x.dtype(), channels_first_shape(x.shape())));
  move_channels<T>(x, inputs[0], /*to_last=*/false);
  KS_ASSIGN_OR_RETURN(outputs[0], Tensor::allocate(y.dtype(), channels_first_shape(y.shape())));
  KernelContext inner(inputs, outputs, [](DType dtype, const Shape& shape) {
    return Tensor::allocate(dtype, shape);
  });
  KS_RETURN_IF_ERROR(f(inner));
  move_channels<T>(outputs[0], y, /*to_last=*/true);
  return Status();
}

using MaxPoolTypes = TypeList<float, double, Half, BFloat16, int8_t, uint8_t>;

template <typename List, typename F>
StatusOr<std::unique_ptr<Kernel>> create(const KernelDef& def, F run) {
  if (!dtype_in<List>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  const bool channels_last = def.attrs.get_int("kestrel_channels_last", 0) != 0;
  return make_kernel([attrs = def.attrs, run, channels_last](KernelContext& ctx) -> Status {
    if (ctx.input(0).rank() > 5) {
      return unimplemented("{} spatial axes are not supported", ctx.input(0).rank() - 2);
    }
    return dispatch_dtype<List>(ctx.input(0).dtype(), [&]<typename T>(TypeTag<T> tag) {
      if (!channels_last) return run(tag, attrs, ctx);
      return run_channels_first<T>(ctx,
                                   [&](KernelContext& inner) { return run(tag, attrs, inner); });
    });
  });
}

}  // namespace

std::vector<KernelEntry> pool_kernels() {
  return {
      {"MaxPool",
       [](const KernelDef& def) {
         return create<MaxPoolTypes>(
             def, []<typename T>(TypeTag<T>, const Attributes& attrs, KernelContext& ctx) {
               return max_pool<T>(attrs, ctx);
             });
       }},
      {"AveragePool",
       [](const KernelDef& def) {
         return create<FloatTypes>(
             def, []<typename T>(TypeTag<T>, const Attributes& attrs, KernelContext& ctx) {
               return average_pool<T>(attrs, ctx);
             });
       }},
      {"GlobalAveragePool",
       [](const KernelDef& def) {
         return create<FloatTypes>(
             def, []<typename T>(TypeTag<T>, const Attributes&, KernelContext& ctx) {
               return global_pool<T, false>(ctx);
             });
       }},
      {"GlobalMaxPool",
       [](const KernelDef& def) {
         return create<FloatTypes>(
             def, []<typename T>(TypeTag<T>, const Attributes&, KernelContext& ctx) {
               return global_pool<T, true>(ctx);
             });
       }},
  };
}

}  // namespace kestrel::runtime::cpu
