// Engine kernel for Resize on the GPU: nearest mode over the two spatial axes of NCHW or NHWC
// tensors, what detectors' upsampling layers use. Other modes and layouts run on the CPU
// (UNIMPLEMENTED here). Device code in resize.cu.
#include "kestrel/runtime/cuda/cuda_kernels.h"

namespace kestrel::runtime::cuda {
namespace {

StatusOr<ResizeCoordinates> parse_coordinates(const std::string& s) {
  if (s == "half_pixel") return ResizeCoordinates::kHalfPixel;
  if (s == "half_pixel_symmetric") return ResizeCoordinates::kHalfPixelSymmetric;
  if (s == "pytorch_half_pixel") return ResizeCoordinates::kPytorchHalfPixel;
  if (s == "align_corners") return ResizeCoordinates::kAlignCorners;
  if (s == "asymmetric") return ResizeCoordinates::kAsymmetric;
  return unimplemented("coordinate_transformation_mode {} runs on the CPU", s);
}

StatusOr<NearestRounding> parse_rounding(const std::string& s) {
  if (s == "round_prefer_floor") return NearestRounding::kRoundPreferFloor;
  if (s == "round_prefer_ceil") return NearestRounding::kRoundPreferCeil;
  if (s == "floor") return NearestRounding::kFloor;
  if (s == "ceil") return NearestRounding::kCeil;
  return unimplemented("nearest_mode {} runs on the CPU", s);
}

StatusOr<std::unique_ptr<Kernel>> create_resize(const KernelDef& def) {
  const Attributes& a = def.attrs;
  if (a.get_string("mode", "nearest") != "nearest" || a.get_int("antialias", 0) != 0 ||
      a.has("axes") || a.get_string("keep_aspect_ratio_policy", "stretch") != "stretch") {
    return unimplemented("{}: only plain nearest Resize runs on the GPU", def.describe());
  }
  KS_ASSIGN_OR_RETURN(ResizeCoordinates c, parse_coordinates(a.get_string(
                                               "coordinate_transformation_mode", "half_pixel")));
  KS_ASSIGN_OR_RETURN(NearestRounding r,
                      parse_rounding(a.get_string("nearest_mode", "round_prefer_floor")));
  return make_kernel([c, r](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.output(0);
    if (x.rank() != 4) return unimplemented("GPU Resize takes 4-D tensors");
    // Nothing to compute (and with no channels, NHWC would read as NCHW below).
    if (y.num_elements() == 0) return Status();
    // Scales as ONNX defines them: given (a value input, so on the host), else out / in.
    std::vector<double> scale(4);
    for (size_t i = 0; i < 4; ++i) {
      scale[i] = x.shape()[i] == 0
                     ? 1.0
                     : static_cast<double>(y.shape()[i]) / static_cast<double>(x.shape()[i]);
    }
    if (ctx.has_input(2) && ctx.input(2).num_elements() == 4)
      scale = ctx.input(2).to_double_vector();
    // The two scaled axes: 2 and 3 (NCHW), or 1 and 2 with the channels last (NHWC).
    const bool nchw = scale[0] == 1 && scale[1] == 1 && x.shape()[1] == y.shape()[1];
    const bool nhwc = !nchw && scale[0] == 1 && scale[3] == 1 && x.shape()[3] == y.shape()[3];
    if ((!nchw && !nhwc) || x.shape()[0] != y.shape()[0]) {
      return unimplemented("GPU Resize scales two spatial axes of NCHW or NHWC tensors only");
    }
    const size_t ha = nchw ? 2 : 1, wa = nchw ? 3 : 2;
    const int64_t planes = nchw ? x.shape()[0] * x.shape()[1] : x.shape()[0];
    const int64_t channels = nchw ? 0 : x.shape()[3];
    return check_launch(
        "resize_nearest",
        launch_resize_nearest(static_cast<int>(dtype_size(x.dtype())), x.raw_data(), y.raw_data(),
                              planes, channels, {x.shape()[ha], y.shape()[ha], scale[ha]},
                              {x.shape()[wa], y.shape()[wa], scale[wa]}, c, r, stream_of(ctx)));
  });
}

}  // namespace

std::vector<KernelEntry> resize_kernels() { return {{"Resize", create_resize}}; }

}  // namespace kestrel::runtime::cuda
