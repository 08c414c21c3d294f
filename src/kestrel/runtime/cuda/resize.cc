// Engine kernel for Resize on the GPU: nearest mode over the two spatial axes of NCHW tensors, what
// detectors' upsampling layers use. Other modes and layouts run on the CPU (UNIMPLEMENTED here).
// Device code in resize.cu.
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
    if (x.rank() != 4 || x.shape()[0] != y.shape()[0] || x.shape()[1] != y.shape()[1]) {
      return unimplemented("GPU Resize scales the two spatial axes of NCHW tensors only");
    }
    // Scales as ONNX defines them: given (a value input, so on the host), else out / in.
    double scale_h = static_cast<double>(y.shape()[2]) / static_cast<double>(x.shape()[2]);
    double scale_w = static_cast<double>(y.shape()[3]) / static_cast<double>(x.shape()[3]);
    if (ctx.has_input(2) && ctx.input(2).num_elements() == 4) {
      const std::vector<double> s = ctx.input(2).to_double_vector();
      scale_h = s[2];
      scale_w = s[3];
    }
    return check_launch(
        "resize_nearest",
        launch_resize_nearest(static_cast<int>(dtype_size(x.dtype())), x.raw_data(), y.raw_data(),
                              x.shape()[0] * x.shape()[1], {x.shape()[2], y.shape()[2], scale_h},
                              {x.shape()[3], y.shape()[3], scale_w}, c, r, stream_of(ctx)));
  });
}

}  // namespace

std::vector<KernelEntry> resize_kernels() { return {{"Resize", create_resize}}; }

}  // namespace kestrel::runtime::cuda
