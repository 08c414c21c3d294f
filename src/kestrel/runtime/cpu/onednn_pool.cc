// MaxPool and nearest-neighbour Resize through oneDNN: the fast CPU kernels of YOLO's SPPF pools
// and upsampling (the reference kernels in pool.cc and resize.cc are single-threaded and visit
// their windows through generic per-element index arithmetic: 19% of yolov5n's time on two cores
// at batch 1, more on many, where oneDNN's convolutions scale and they do not).
//
// Scope (anything else makes the factory return UNIMPLEMENTED, and the reference kernel runs):
//   MaxPool: float32, NCHW (not kestrel_channels_last), 2 spatial axes, dilations 1, explicit pads
//     (auto_pad NOTSET), no Indices output. ceil_mode is honoured through the right padding that
//     makes oneDNN's output size the one the shape rule gave; padded taps never win (oneDNN pads
//     max pooling with -infinity). One difference from the reference: a NaN in a window is not
//     guaranteed to win (the reference propagates the first NaN).
//   Resize: float32, rank 4, mode "nearest", constant scales or sizes that keep N and C and scale
//     H and W up by whole factors, with coordinate_transformation_mode asymmetric + nearest_mode
//     floor, or half_pixel / pytorch_half_pixel + round_prefer_floor. For a whole factor s all
//     three pick source index floor(o / s) for output index o, as oneDNN's nearest resampling does
//     (round((o + 0.5) / s - 0.5) = floor(o / s): the fraction stays within (-0.5, 0.5)).
//
// Threads and precision: as onednn_conv.cc (OpenMP threads, float32 throughout; these operators
// compute no sums, so their results equal the reference kernels' bit for bit).
#ifdef KESTREL_WITH_ONEDNN

#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

using dnnl::memory;
using Dims = memory::dims;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// At most this many input shapes keep a primitive (see onednn_conv.cc).
constexpr size_t kMaxPrimitives = 32;

// One primitive per (input, output) shape, made on first use. The subclass makes it.
class OneDnnShapeKernel : public Kernel {
 public:
  explicit OneDnnShapeKernel(std::string name) : name_(std::move(name)) {}

  Status run(KernelContext& ctx) override {
    try {
      const Tensor& x = ctx.input(0);
      Tensor& y = ctx.output(0);
      if (!y.defined() || y.dtype() != DType::kFloat32 || x.dtype() != DType::kFloat32 ||
          x.shape().rank() != 4 || y.shape().rank() != 4) {
        return internal_error("{}: expected float32 [N, C, H, W] tensors, got {} -> {}", name_,
                              x.debug_string(0), y.debug_string(0));
      }
      if (y.num_elements() == 0) return Status();
      if (x.num_elements() == 0) return internal_error("{}: empty input, non-empty output", name_);
      Dims key(x.shape().begin(), x.shape().end());
      key.insert(key.end(), y.shape().begin(), y.shape().end());
      KS_ASSIGN_OR_RETURN(std::shared_ptr<const dnnl::primitive> p, find(key, x, y));
      const dnnl::engine& engine = cpu_engine();
      const memory::desc src(Dims(x.shape().begin(), x.shape().end()), memory::data_type::f32,
                             memory::format_tag::nchw);
      const memory::desc dst(Dims(y.shape().begin(), y.shape().end()), memory::data_type::f32,
                             memory::format_tag::nchw);
      memory src_mem(src, engine, const_cast<float*>(x.data<float>()));
      memory dst_mem(dst, engine, y.data<float>());
      dnnl::stream stream(engine);
      p->execute(stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_DST, dst_mem}});
      stream.wait();
      return Status();
    } catch (const dnnl::error& e) {
      return internal_error("{}: oneDNN failed: {}", name_, e.what());
    } catch (const std::bad_alloc&) {
      return resource_exhausted("{}: out of memory in oneDNN", name_);
    }
  }

 protected:
  virtual StatusOr<dnnl::primitive> make(const memory::desc& src, const memory::desc& dst,
                                         const Shape& x, const Shape& y) const = 0;
  const std::string& name() const { return name_; }

 private:
  StatusOr<std::shared_ptr<const dnnl::primitive>> find(const Dims& key, const Tensor& x,
                                                        const Tensor& y) {
    std::lock_guard lock(mutex_);
    if (auto it = primitives_.find(key); it != primitives_.end()) return it->second;
    const memory::desc src(Dims(x.shape().begin(), x.shape().end()), memory::data_type::f32,
                           memory::format_tag::nchw);
    const memory::desc dst(Dims(y.shape().begin(), y.shape().end()), memory::data_type::f32,
                           memory::format_tag::nchw);
    KS_ASSIGN_OR_RETURN(dnnl::primitive p, make(src, dst, x.shape(), y.shape()));
    if (primitives_.size() >= kMaxPrimitives) primitives_.clear();
    auto shared = std::make_shared<const dnnl::primitive>(std::move(p));
    primitives_.emplace(key, shared);
    return shared;
  }

  std::string name_;
  std::mutex mutex_;
  std::map<Dims, std::shared_ptr<const dnnl::primitive>> primitives_;
};

dnnl::primitive_attr strict_attr() {
  dnnl::primitive_attr attr;
  attr.set_fpmath_mode(dnnl::fpmath_mode::strict);
  return attr;
}

class OneDnnMaxPool final : public OneDnnShapeKernel {
 public:
  OneDnnMaxPool(std::string name, Dims kernel, Dims strides, Dims pads)
      : OneDnnShapeKernel(std::move(name)),
        kernel_(std::move(kernel)),
        strides_(std::move(strides)),
        pads_(std::move(pads)) {}

 private:
  StatusOr<dnnl::primitive> make(const memory::desc& src, const memory::desc& dst, const Shape& x,
                                 const Shape& y) const override {
    Dims left{pads_[0], pads_[1]}, right{pads_[2], pads_[3]};
    for (size_t i = 0; i < 2; ++i) {
      // ceil_mode: more right padding until oneDNN's (floor) output size is the shape rule's.
      const int64_t in = x[2 + i], out = y[2 + i];
      while ((in - kernel_[i] + left[i] + right[i]) / strides_[i] + 1 < out) ++right[i];
      if ((in - kernel_[i] + left[i] + right[i]) / strides_[i] + 1 != out) {
        return internal_error("{}: output size {} does not follow from input {}", name(), out, in);
      }
    }
    const dnnl::pooling_forward::desc desc(dnnl::prop_kind::forward_inference,
                                           dnnl::algorithm::pooling_max, src, dst, strides_,
                                           kernel_, left, right);
    return dnnl::pooling_forward(
        dnnl::pooling_forward::primitive_desc(desc, strict_attr(), cpu_engine()));
  }

  Dims kernel_, strides_, pads_;
};

class OneDnnNearestUpsample final : public OneDnnShapeKernel {
 public:
  using OneDnnShapeKernel::OneDnnShapeKernel;

 private:
  StatusOr<dnnl::primitive> make(const memory::desc& src, const memory::desc& dst, const Shape& x,
                                 const Shape& y) const override {
    // The factory checked the factors when they were constants; the shapes say the same here.
    if (y[0] != x[0] || y[1] != x[1] || y[2] % x[2] != 0 || y[3] % x[3] != 0) {
      return internal_error("{}: {} -> {} is no whole upscale of H and W", name(), x.to_string(),
                            y.to_string());
    }
    const dnnl::resampling_forward::desc desc(dnnl::prop_kind::forward_inference,
                                              dnnl::algorithm::resampling_nearest, src, dst);
    return dnnl::resampling_forward(
        dnnl::resampling_forward::primitive_desc(desc, strict_attr(), cpu_engine()));
  }
};

StatusOr<std::unique_ptr<Kernel>> create_max_pool(const KernelDef& def) {
  const Attributes& a = def.attrs;
  if (def.input_dtypes.empty() || def.input_dtypes[0] != DType::kFloat32) {
    return unimplemented("{}: the oneDNN pool takes float32", def.describe());
  }
  const std::vector<int64_t> kernel = a.get_ints("kernel_shape");
  const std::vector<int64_t> strides = a.get_ints("strides", std::vector<int64_t>(2, 1));
  const std::vector<int64_t> pads = a.get_ints("pads", std::vector<int64_t>(4, 0));
  const std::vector<int64_t> dilations = a.get_ints("dilations", std::vector<int64_t>(2, 1));
  const bool plain = a.get_int("kestrel_channels_last", 0) == 0 &&
                     a.get_string("auto_pad", "NOTSET") == "NOTSET" &&
                     def.output_dtypes.size() == 1;
  if (!plain || kernel.size() != 2 || strides.size() != 2 || pads.size() != 4 ||
      dilations != std::vector<int64_t>{1, 1} || kernel[0] < 1 || kernel[1] < 1 || strides[0] < 1 ||
      strides[1] < 1 || pads[0] < 0 || pads[1] < 0 || pads[2] < 0 || pads[3] < 0) {
    return unimplemented("{}: attributes left to the reference kernel", def.describe());
  }
  return std::unique_ptr<Kernel>(std::make_unique<OneDnnMaxPool>(
      def.describe(), Dims(kernel.begin(), kernel.end()), Dims(strides.begin(), strides.end()),
      Dims(pads.begin(), pads.end())));
}

// True when the constant `t` holds exactly {1, 1, s, s'} with whole s, s' >= 1 (scales) or sizes
// that keep N and C (checked again per shape at run time).
bool whole_upscale(const Tensor& t, bool sizes) {
  if (!t.defined() || !t.is_cpu() || t.num_elements() != 4) return false;
  const std::vector<double> v = t.to_double_vector();
  if (sizes) return true;  // per shape in make()
  for (size_t i = 0; i < 4; ++i) {
    if (v[i] < 1 || v[i] != static_cast<double>(static_cast<int64_t>(v[i]))) return false;
  }
  return v[0] == 1 && v[1] == 1;
}

StatusOr<std::unique_ptr<Kernel>> create_resize(const KernelDef& def) {
  const Attributes& a = def.attrs;
  const std::string mode = a.get_string("mode", "nearest");
  const std::string ctm = a.get_string("coordinate_transformation_mode", "half_pixel");
  const std::string nearest = a.get_string("nearest_mode", "round_prefer_floor");
  const bool floor_pick =
      (ctm == "asymmetric" && nearest == "floor") ||
      ((ctm == "half_pixel" || ctm == "pytorch_half_pixel") && nearest == "round_prefer_floor");
  const bool plain = !a.has("axes") && a.get_int("antialias", 0) == 0 &&
                     a.get_string("keep_aspect_ratio_policy", "stretch") == "stretch";
  if (def.input_dtypes.empty() || def.input_dtypes[0] != DType::kFloat32 || mode != "nearest" ||
      !floor_pick || !plain) {
    return unimplemented("{}: left to the reference kernel", def.describe());
  }
  const auto constant = [&](size_t i) -> Tensor {
    return i < def.constant_inputs.size() ? def.constant_inputs[i] : Tensor();
  };
  const bool scales_given =
      def.has_input(2) && constant(2).defined() && constant(2).num_elements() > 0;
  const bool by_scales = scales_given && whole_upscale(constant(2), false);
  const bool by_sizes = !scales_given && def.has_input(3) && whole_upscale(constant(3), true);
  if (!by_scales && !by_sizes) {
    return unimplemented("{}: not a constant whole upscale of H and W", def.describe());
  }
  return std::unique_ptr<Kernel>(std::make_unique<OneDnnNearestUpsample>(def.describe()));
}

}  // namespace

std::vector<KernelEntry> onednn_pool_kernels() {
  return {KernelEntry{"MaxPool", create_max_pool, /*reference=*/false},
          KernelEntry{"Resize", create_resize, /*reference=*/false}};
}

}  // namespace kestrel::runtime::cpu

#else  // Built without oneDNN: the reference kernels serve these operators.

#include "kestrel/runtime/cpu/kernel_registry.h"

namespace kestrel::runtime::cpu {
std::vector<KernelEntry> onednn_pool_kernels() { return {}; }
}  // namespace kestrel::runtime::cpu

#endif  // KESTREL_WITH_ONEDNN
