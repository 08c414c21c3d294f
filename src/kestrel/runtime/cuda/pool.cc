// Engine kernels for MaxPool (without its Indices output), AveragePool and GlobalAveragePool on the
// GPU, for NCHW or NHWC (kestrel_channels_last) tensors with two spatial dimensions. Window
// geometry follows ONNX; the output shape comes from the shape rule, so ceil_mode is already in it.
// Device code in pool.cu.
#include <algorithm>

#include "kestrel/runtime/cuda/cuda_kernels.h"

namespace kestrel::runtime::cuda {
namespace {

StatusOr<std::unique_ptr<Kernel>> create_pool(const KernelDef& def, bool average) {
  KS_ASSIGN_OR_RETURN(FloatType t, float_type(def, def.input_dtypes[0]));
  if (def.output_dtypes.size() > 1) {
    return unimplemented("{}: the Indices output runs on the CPU", def.describe());
  }
  const std::vector<int64_t> k = def.attrs.get_ints("kernel_shape");
  if (k.size() != 2) return unimplemented("{}: CUDA pooling is 2-D only", def.describe());
  const std::vector<int64_t> s = def.attrs.get_ints("strides", {1, 1});
  const std::vector<int64_t> d = def.attrs.get_ints("dilations", {1, 1});
  const std::vector<int64_t> p = def.attrs.get_ints("pads", {0, 0, 0, 0});
  const std::string auto_pad = def.attrs.get_string("auto_pad", "NOTSET");
  auto i = [](int64_t v) { return static_cast<int>(v); };
  const PoolWindow base{i(k[0]), i(k[1]), i(s[0]), i(s[1]),
                        i(d[0]), i(d[1]), i(p[0]), i(p[1]),
                        i(p[2]), i(p[3]), average, def.attrs.get_int("count_include_pad", 0) != 0};
  const bool nhwc = def.attrs.get_int("kestrel_channels_last", 0) != 0;
  return make_kernel([t, base, auto_pad, nhwc](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.output(0);
    if (x.rank() != 4) return unimplemented("CUDA pooling takes 4-D tensors");
    // Nothing to compute (and with no channels, NHWC would read as NCHW below).
    if (y.num_elements() == 0) return Status();
    // NCHW: planes of N*C; NHWC: N images with the channels innermost.
    const size_t ha = nhwc ? 1 : 2, wa = nhwc ? 2 : 3;
    const int h = static_cast<int>(x.shape()[ha]), w = static_cast<int>(x.shape()[wa]);
    const int oh = static_cast<int>(y.shape()[ha]), ow = static_cast<int>(y.shape()[wa]);
    PoolWindow win = base;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      // Total padding so that the output covers ceil(in / stride) windows; the odd pixel goes at
      // the end for SAME_UPPER and at the start for SAME_LOWER.
      const int th = std::max(0, (oh - 1) * win.sh + (win.kh - 1) * win.dh + 1 - h);
      const int tw = std::max(0, (ow - 1) * win.sw + (win.kw - 1) * win.dw + 1 - w);
      win.ph = auto_pad == "SAME_UPPER" ? th / 2 : th - th / 2;
      win.pw = auto_pad == "SAME_UPPER" ? tw / 2 : tw - tw / 2;
      win.pad_bottom = th - win.ph;
      win.pad_right = tw - win.pw;
    } else if (auto_pad == "VALID") {
      win.ph = win.pw = win.pad_bottom = win.pad_right = 0;
    }
    const int64_t planes = nhwc ? x.shape()[0] : x.shape()[0] * x.shape()[1];
    const int channels = nhwc ? static_cast<int>(x.shape()[3]) : 0;
    return check_launch("pool2d", launch_pool2d(t, x.raw_data(), y.raw_data(), planes, h, w, oh, ow,
                                                channels, win, stream_of(ctx)));
  });
}

StatusOr<std::unique_ptr<Kernel>> create_global_average(const KernelDef& def) {
  KS_ASSIGN_OR_RETURN(FloatType t, float_type(def, def.input_dtypes[0]));
  return make_kernel([t](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    if (x.rank() < 3) return unimplemented("GlobalAveragePool needs spatial dimensions");
    return check_launch("global_average",
                        launch_global_average(t, x.raw_data(), ctx.output(0).raw_data(),
                                              x.shape()[0] * x.shape()[1],
                                              x.shape().num_elements(2, x.rank()), stream_of(ctx)));
  });
}

}  // namespace

std::vector<KernelEntry> pool_kernels() {
  return {
      {"MaxPool", +[](const KernelDef& def) { return create_pool(def, false); }},
      {"AveragePool", +[](const KernelDef& def) { return create_pool(def, true); }},
      {"GlobalAveragePool", create_global_average},
  };
}

}  // namespace kestrel::runtime::cuda
