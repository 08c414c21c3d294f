// Conv through oneDNN: the fast CPU convolution (1 to 3 spatial axes, groups, strides, dilations,
// asymmetric pads, auto_pad, optional bias).
//
// Precision: float32 end to end. Every primitive asks for fpmath_mode::strict (so neither an
// environment default such as ONEDNN_DEFAULT_FPMATH_MODE=BF16 nor a bf16/AMX implementation can
// lower the precision) and for convolution_direct (no Winograd). float16 and bfloat16 tensors are
// widened to float32 (exact), convolved in float32 and rounded to their type once, on the way out,
// as the reference kernels do; the conversions are done here (F16C for float16), because oneDNN
// 2.6's float16 reorders are scalar code, over 100 times slower than F16C.
//
// Memory formats: tensors are plain (N, C, spatial...) outside; inside, build_plan picks per shape.
// YOLOv5n's 60 convolutions on this project's AVX-512 machine (one thread, CPU time, two samples):
// all plain (im2col + GEMM) 71-105 ms at batch 1, 632-836 ms at batch 8; all in oneDNN's preferred
// layout with reorders in and out 52-69 and 595-617 ms; build_plan's mix 40-55 and 443-475 ms.
//
// Threads: oneDNN runs each call on OpenMP's threads (all cores unless OMP_NUM_THREADS says less).
// Between calls they spin by default; on a machine busy with other work that made YOLOv5n 4 to 6
// times slower end to end than with OMP_WAIT_POLICY=passive, which libgomp only reads at startup.
//
// Caching: a primitive depends on the input's shape, which varies per call (the batch is dynamic),
// so the kernel keeps one Plan per input shape, built on first use under a mutex. Constant weights
// are reordered into the layout a plan asks for once, and shared by every plan asking for the same
// layout. Plans are immutable once built; run() may execute them from several threads at once,
// with the scratchpad owned by each call (scratchpad_mode::user).
//
// Anything this file does not handle makes the factory return UNIMPLEMENTED, so the reference
// kernel in conv.cc runs instead.
#ifdef KESTREL_WITH_ONEDNN

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kestrel/base/logging.h"
#include "kestrel/runtime/activation.h"
#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;

// At most this many input shapes keep a plan; past it the cache starts over, so that a stream of
// ever-new shapes cannot grow memory without bound.
constexpr size_t kMaxPlans = 32;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// ---- 16-bit floats <-> float32, whole buffers ----

// F16C (and the AVX state it needs), from CPUID leaf 1: ECX bit 29 F16C, bit 28 AVX. Read by hand
// because clang 14's __builtin_cpu_supports does not know "f16c".
bool has_f16c() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    return __builtin_cpu_supports("avx") && (ecx & (1u << 29)) != 0;
  }();
  return has;
}

__attribute__((target("avx,f16c"))) void half_to_float_f16c(const Half* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

__attribute__((target("avx,f16c"))) void float_to_half_f16c(const float* in, Half* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // Round to nearest even, whatever MXCSR says: the same rounding as Half(float).
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = Half(in[i]);
}

// out[i] = float(in[i]) for a float16 or bfloat16 buffer.
void widen(DType dtype, const void* in, float* out, int64_t n) {
  if (dtype == DType::kFloat16) {
    const Half* h = static_cast<const Half*>(in);
    if (has_f16c()) return half_to_float_f16c(h, out, n);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(h[i]);
  } else {
    const BFloat16* b = static_cast<const BFloat16*>(in);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(b[i]);
  }
}

// out[i] = in[i] rounded to float16 or bfloat16 (to nearest even).
void narrow(DType dtype, const float* in, void* out, int64_t n) {
  if (dtype == DType::kFloat16) {
    Half* h = static_cast<Half*>(out);
    if (has_f16c()) return float_to_half_f16c(in, h, n);
    for (int64_t i = 0; i < n; ++i) h[i] = Half(in[i]);
  } else {
    BFloat16* b = static_cast<BFloat16*>(out);
    for (int64_t i = 0; i < n; ++i) b[i] = BFloat16(in[i]);
  }
}

// A float32 copy of a host tensor of a floating type.
StatusOr<Tensor> to_float32(const Tensor& t) {
  if (t.dtype() == DType::kFloat32) return t;
  KS_ASSIGN_OR_RETURN(Tensor f, Tensor::allocate(DType::kFloat32, t.shape()));
  widen(t.dtype(), t.raw_data(), f.data<float>(), t.num_elements());
  return f;
}

// ---- per-call temporaries ----

// Offsets of a call's temporaries inside one allocation, each 64-byte aligned.
class Carver {
 public:
  // Reserves `bytes` and returns where they start.
  size_t operator()(size_t bytes) {
    const size_t at = size_;
    size_ += (bytes + 63) / 64 * 64;
    return at;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

// At most this much workspace stays with a thread between calls.
constexpr size_t kMaxRetainedBytes = size_t{256} << 20;

// Memory for one call's temporaries, kept by each thread from call to call. Allocating it afresh
// each time costs more than the convolution in places: glibc maps blocks this large anew, and
// faulting their pages in again took YOLOv5's stem from 4.0 to 10.6 ms.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() {
    if (buffer().size > kMaxRetainedBytes) buffer() = Buffer();
  }

  // At least `bytes`, 64-byte aligned, until this object ends; null when out of memory.
  std::byte* reserve(size_t bytes) {
    Buffer& b = buffer();
    if (bytes > b.size) {
      b = Buffer();
      b.data.reset(static_cast<std::byte*>(std::aligned_alloc(64, bytes)));
      if (!b.data) return nullptr;
      b.size = bytes;
    }
    return b.data.get();
  }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  struct Buffer {
    std::unique_ptr<std::byte, Free> data;
    size_t size = 0;
  };
  static Buffer& buffer() {
    thread_local Buffer b;
    return b;
  }
};

// ---- geometry ----

struct ConvAttrs {
  enum class AutoPad { kNotSet, kSameUpper, kSameLower, kValid } auto_pad = AutoPad::kNotSet;
  int64_t group = 1;
  size_t axes = 0;                                // spatial axes, 1 to 3
  std::vector<int64_t> kernel_shape;              // empty when absent
  std::vector<int64_t> strides, dilations, pads;  // filled with the defaults
  ActivationSpec activation;                      // FusedConv: applied as a oneDNN post-op
};

// Everything a primitive depends on, for one pair of input and weight shapes.
struct Geometry {
  Dims src, weights, bias, dst;  // weights grouped (G, M/G, C/G, k...) when group > 1
  Dims strides, dilations, pad_begin, pad_end;  // dilations the oneDNN way: ONNX's minus 1
};

// The spatial format tags of plain tensors, by number of spatial axes.
Tag plain_tag(size_t axes) { return axes == 1 ? Tag::ncw : axes == 2 ? Tag::nchw : Tag::ncdhw; }
Tag plain_weights_tag(size_t axes, bool grouped) {
  if (grouped) return axes == 1 ? Tag::goiw : axes == 2 ? Tag::goihw : Tag::goidhw;
  return axes == 1 ? Tag::oiw : axes == 2 ? Tag::oihw : Tag::oidhw;
}

// The geometry of x (*) w, checked against what the shape rule accepts, with ONNX's output size:
// floor((in + pads - extent) / stride) + 1, SAME_* padding split with the odd one at the end
// (SAME_UPPER) or at the beginning (SAME_LOWER).
StatusOr<Geometry> conv_geometry(const ConvAttrs& a, const Shape& x, const Shape& w) {
  const size_t n = a.axes;
  if (x.rank() != n + 2 || w.rank() != n + 2) {
    return invalid_argument("input {} and weights {} must both have rank {}", x, w, n + 2);
  }
  const int64_t channels = x[1], out_channels = w[0];
  if (w[1] * a.group != channels || out_channels % a.group != 0) {
    return invalid_argument("input {} and weights {} do not match with group={}", x, w, a.group);
  }
  if (!a.kernel_shape.empty() && a.kernel_shape != std::vector<int64_t>(w.begin() + 2, w.end())) {
    return invalid_argument("kernel_shape does not match the weights' shape {}", w);
  }
  Geometry g;
  g.src = x.vec();
  g.bias = {out_channels};
  g.dst = {x[0], out_channels};
  if (a.group > 1) {
    g.weights = {a.group, out_channels / a.group, w[1]};
    g.weights.insert(g.weights.end(), w.begin() + 2, w.end());
  } else {
    g.weights = w.vec();
  }
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = x[2 + i], k = w[2 + i], s = a.strides[i], d = a.dilations[i];
    // Sizes are bounded by max_tensor_bytes and attributes by the shape rule: no overflow here.
    const int64_t extent = (k - 1) * d + 1;
    int64_t begin = 0, end = 0;
    if (a.auto_pad == ConvAttrs::AutoPad::kNotSet) {
      begin = a.pads[i];
      end = a.pads[n + i];
    } else if (a.auto_pad != ConvAttrs::AutoPad::kValid) {
      const int64_t out = in == 0 ? 0 : (in - 1) / s + 1;
      const int64_t total = std::max<int64_t>(0, std::max<int64_t>(out - 1, 0) * s + extent - in);
      begin = a.auto_pad == ConvAttrs::AutoPad::kSameUpper ? total / 2 : total - total / 2;
      end = total - begin;
    }
    if (in + begin + end < extent) {
      return invalid_argument("spatial axis {} of input {} is smaller than the kernel's extent {}",
                              i, x, extent);
    }
    g.dst.push_back((in + begin + end - extent) / s + 1);
    g.strides.push_back(s);
    g.dilations.push_back(d - 1);
    g.pad_begin.push_back(begin);
    g.pad_end.push_back(end);
  }
  return g;
}

// A 1x1 convolution without stride, padding or groups: a matrix product per image.
bool is_pointwise(const ConvAttrs& a, const Geometry& g) {
  const auto all_equal = [](const Dims& v, int64_t x) {
    return std::all_of(v.begin(), v.end(), [x](int64_t e) { return e == x; });
  };
  return a.group == 1 && all_equal(Dims(g.weights.begin() + 2, g.weights.end()), 1) &&
         all_equal(g.strides, 1) && all_equal(g.pad_begin, 0) && all_equal(g.pad_end, 0);
}

// ---- the kernel ----

// What one input shape runs: the primitive and the reorders around it.
struct Plan {
  dnnl::convolution_forward conv;
  memory::desc user_src, user_dst, user_weights;             // plain float32
  memory::desc src, dst, weights;                            // what the primitive reads and writes
  std::optional<dnnl::reorder> src_in, dst_out, weights_in;  // absent where the layouts agree
  std::shared_ptr<const memory> packed_weights;              // constant weights, in `weights`
  memory::desc scratchpad;
};

dnnl::post_ops activation_post_ops(const ActivationSpec& a);
void add_residual(const Tensor& z, float* acc, int64_t n);

class OneDnnConv final : public Kernel {
 public:
  OneDnnConv(std::string name, DType dtype, ConvAttrs attrs, bool has_bias, Tensor weights,
             Tensor bias)
      : name_(std::move(name)),
        dtype_(dtype),
        attrs_(std::move(attrs)),
        has_bias_(has_bias),
        weights_(std::move(weights)),
        bias_(std::move(bias)) {}

  Status run(KernelContext& ctx) override {
    try {
      return run_unguarded(ctx);
    } catch (const dnnl::error& e) {
      return internal_error("{}: oneDNN failed: {}", name_, e.what());
    } catch (const std::bad_alloc&) {
      return resource_exhausted("{}: out of memory in oneDNN", name_);
    }
  }

 private:
  Status run_unguarded(KernelContext& ctx) {
    const Tensor& x = ctx.input(0);
    const Tensor& w = weights_.defined() ? weights_ : ctx.input(1);
    KS_ASSIGN_OR_RETURN(const Geometry g, conv_geometry(attrs_, x.shape(), w.shape()));
    if (!ctx.output(0).defined()) {
      KS_RETURN_IF_ERROR(ctx.allocate_output(0, dtype_, Shape(g.dst)));
    }
    Tensor& y = ctx.output(0);
    if (y.shape() != Shape(g.dst) || y.dtype() != dtype_) {
      return internal_error("output is {}, expected {}{}", y.debug_string(0), dtype_, Shape(g.dst));
    }
    if (y.num_elements() == 0) return Status();

    if (has_bias_) {
      const Tensor& b = bias_.defined() ? bias_ : ctx.input(2);
      if (!b.defined() || b.shape() != Shape{g.bias[0]}) {
        return invalid_argument("bias is {}, expected [{}]", b.debug_string(0), g.bias[0]);
      }
    }
    // Every output is a sum over nothing (no input channels, or an empty window): the bias.
    if (x.num_elements() == 0 || w.num_elements() == 0) {
      Tensor bias = bias_;
      if (has_bias_ && !bias.defined()) {
        KS_ASSIGN_OR_RETURN(bias, to_float32(ctx.input(2)));
      }
      return fill_with_bias(bias, y);
    }

    std::vector<int64_t> key = g.src;
    if (!weights_.defined()) key.insert(key.end(), g.weights.begin(), g.weights.end());
    KS_ASSIGN_OR_RETURN(const std::shared_ptr<const Plan> plan, find_plan(key, g));

    // Every temporary of this call, in one piece of the thread's workspace.
    const bool widened = dtype_ != DType::kFloat32;
    const bool per_call_weights = !plan->packed_weights;
    Carver carve;
    const size_t src_f32_at = carve(widened ? x.num_elements() * sizeof(float) : 0);
    const size_t src_at = carve(plan->src_in ? plan->src.get_size() : 0);
    const size_t w_f32_at =
        carve(per_call_weights && widened ? w.num_elements() * sizeof(float) : 0);
    const size_t w_at = carve(per_call_weights && plan->weights_in ? plan->weights.get_size() : 0);
    const size_t bias_f32_at =
        carve(has_bias_ && !bias_.defined() && widened ? g.bias[0] * sizeof(float) : 0);
    const size_t dst_f32_at = carve(widened ? y.num_elements() * sizeof(float) : 0);
    const size_t dst_at = carve(plan->dst_out ? plan->dst.get_size() : 0);
    const size_t scratchpad_at = carve(plan->scratchpad.get_size());
    Workspace workspace;
    std::byte* const base = workspace.reserve(carve.size());
    if (!base && carve.size() > 0) {
      return resource_exhausted("{}: no memory for {} bytes of temporaries", name_, carve.size());
    }

    const dnnl::engine& engine = cpu_engine();
    dnnl::stream stream(engine);

    // The input: float32, then the primitive's layout.
    void* src_f32 = const_cast<void*>(x.raw_data());
    if (widened) {
      src_f32 = base + src_f32_at;
      widen(dtype_, x.raw_data(), static_cast<float*>(src_f32), x.num_elements());
    }
    memory src(plan->user_src, engine, src_f32);
    if (plan->src_in) {
      memory reordered(plan->src, engine, base + src_at);
      plan->src_in->execute(stream, src, reordered);
      src = reordered;
    }

    // The weights: packed once when constant, else converted and reordered now.
    memory weights;
    if (!per_call_weights) {
      weights = *plan->packed_weights;
    } else {
      void* w_f32 = const_cast<void*>(w.raw_data());
      if (widened) {
        w_f32 = base + w_f32_at;
        widen(dtype_, w.raw_data(), static_cast<float*>(w_f32), w.num_elements());
      }
      weights = memory(plan->user_weights, engine, w_f32);
      if (plan->weights_in) {
        memory reordered(plan->weights, engine, base + w_at);
        plan->weights_in->execute(stream, weights, reordered);
        weights = reordered;
      }
    }

    // The output: straight into y when it is float32 and the layouts agree.
    memory user_dst(plan->user_dst, engine, widened ? base + dst_f32_at : y.raw_data());
    memory dst = plan->dst_out ? memory(plan->dst, engine, base + dst_at) : user_dst;

    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, src},
        {DNNL_ARG_WEIGHTS, weights},
        {DNNL_ARG_DST, dst},
        {DNNL_ARG_SCRATCHPAD, memory(plan->scratchpad, engine, base + scratchpad_at)}};
    if (has_bias_) {
      void* b = const_cast<void*>(bias_.defined() ? bias_.raw_data() : ctx.input(2).raw_data());
      if (!bias_.defined() && widened) {
        widen(dtype_, ctx.input(2).raw_data(), reinterpret_cast<float*>(base + bias_f32_at),
              g.bias[0]);
        b = base + bias_f32_at;
      }
      args[DNNL_ARG_BIAS] = memory(memory::desc(g.bias, memory::data_type::f32, Tag::x), engine, b);
    }
    plan->conv.execute(stream, args);
    if (plan->dst_out) plan->dst_out->execute(stream, dst, user_dst);
    stream.wait();

    // FusedConv's residual input, added after the activation (oneDNN's sum post-op would need it
    // in the primitive's own layout).
    if (ctx.has_input(3)) {
      float* acc = widened ? reinterpret_cast<float*>(base + dst_f32_at) : y.data<float>();
      add_residual(ctx.input(3), acc, y.num_elements());
    }
    if (widened) {
      narrow(dtype_, reinterpret_cast<const float*>(base + dst_f32_at), y.raw_data(),
             y.num_elements());
    }
    return Status();
  }

  Status fill_with_bias(const Tensor& bias, Tensor& y) {
    const int64_t channels = y.shape()[1];
    const int64_t inner = y.shape().num_elements(2, y.rank());
    std::vector<float> out(static_cast<size_t>(y.num_elements()), 0.0f);
    for (int64_t i = 0; bias.defined() && i < y.num_elements(); ++i) {
      out[i] = bias.data<float>()[(i / inner) % channels];
    }
    if (dtype_ == DType::kFloat32) {
      std::memcpy(y.raw_data(), out.data(), y.nbytes());
    } else {
      narrow(dtype_, out.data(), y.raw_data(), y.num_elements());
    }
    return Status();
  }

  // The plan for `key` (the input's shape, and the weights' when they are not constant).
  StatusOr<std::shared_ptr<const Plan>> find_plan(const std::vector<int64_t>& key,
                                                  const Geometry& g) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    KS_ASSIGN_OR_RETURN(std::shared_ptr<const Plan> plan, build_plan(g));
    if (plans_.size() >= kMaxPlans) plans_.clear();
    plans_.emplace(key, plan);
    return plan;
  }

  // REQUIRES: mutex_ held (packed_ is shared between plans).
  StatusOr<std::shared_ptr<const Plan>> build_plan(const Geometry& g) {
    const dnnl::engine& engine = cpu_engine();
    const size_t axes = attrs_.axes;
    const bool grouped = attrs_.group > 1;
    const auto f32 = memory::data_type::f32;
    auto plan = std::make_shared<Plan>();
    plan->user_src = memory::desc(g.src, f32, plain_tag(axes));
    plan->user_dst = memory::desc(g.dst, f32, plain_tag(axes));
    plan->user_weights = memory::desc(g.weights, f32, plain_weights_tag(axes, grouped));

    const memory::desc weights_any(g.weights, f32, Tag::any);
    const memory::desc bias_md(g.bias, f32, Tag::x);
    dnnl::primitive_attr attr;
    attr.set_fpmath_mode(dnnl::fpmath_mode::strict);
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    attr.set_post_ops(activation_post_ops(attrs_.activation));
    using Pd = dnnl::convolution_forward::primitive_desc;
    // The primitive reading src and writing dst in the given formats.
    const auto make_pd = [&](Tag src_tag, Tag dst_tag) {
      using Desc = dnnl::convolution_forward::desc;
      const auto forward = dnnl::prop_kind::forward_inference;
      const auto direct = dnnl::algorithm::convolution_direct;
      const memory::desc src(g.src, f32, src_tag), dst(g.dst, f32, dst_tag);
      const Desc desc = has_bias_ ? Desc(forward, direct, src, weights_any, bias_md, dst, g.strides,
                                         g.dilations, g.pad_begin, g.pad_end)
                                  : Desc(forward, direct, src, weights_any, dst, g.strides,
                                         g.dilations, g.pad_begin, g.pad_end);
      return Pd(desc, attr, engine);
    };
    // im2col + GEMM, or oneDNN's naive reference loops.
    const auto is_generic = [](const Pd& pd) {
      const std::string_view impl = pd.impl_info_str();
      return impl.find("gemm") != impl.npos || impl.starts_with("ref");
    };
    // Formats, from measurements on AVX-512 (file comment): a 1x1 convolution is a plain GEMM of
    // the weights and each image, with no reorders at all. Other convolutions run 1.5 to 4 times
    // faster in oneDNN's own layout than as im2col + GEMM on plain tensors, reorders included;
    // its direct kernels for few input channels (YOLO's stem) read plain input as it is.
    const Tag plain = plain_tag(axes);
    Pd pd;
    if (is_pointwise(attrs_, g)) {
      pd = make_pd(plain, plain);
    } else {
      if (!grouped && g.src[1] < 16) pd = make_pd(plain, Tag::any);
      if (!pd || is_generic(pd)) pd = make_pd(Tag::any, Tag::any);
    }
    plan->conv = dnnl::convolution_forward(pd);
    plan->src = pd.src_desc();
    plan->dst = pd.dst_desc();
    plan->weights = pd.weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
    if (plan->src != plan->user_src) {
      plan->src_in =
          dnnl::reorder(dnnl::reorder::primitive_desc(engine, plan->user_src, engine, plan->src));
    }
    if (plan->dst != plan->user_dst) {
      plan->dst_out =
          dnnl::reorder(dnnl::reorder::primitive_desc(engine, plan->dst, engine, plan->user_dst));
    }
    if (weights_.defined()) {
      KS_ASSIGN_OR_RETURN(plan->packed_weights, packed_weights(plan->user_weights, plan->weights));
    } else if (plan->weights != plan->user_weights) {
      plan->weights_in = dnnl::reorder(
          dnnl::reorder::primitive_desc(engine, plan->user_weights, engine, plan->weights));
    }
    log::debug("{}: oneDNN {} for input {}", name_, pd.impl_info_str(), Shape(g.src));
    return std::shared_ptr<const Plan>(std::move(plan));
  }

  // The constant weights in layout `want`, reordered on first request.
  // REQUIRES: mutex_ held.
  StatusOr<std::shared_ptr<const memory>> packed_weights(const memory::desc& user,
                                                         const memory::desc& want) {
    for (const auto& [desc, packed] : packed_) {
      if (desc == want) return packed;
    }
    const dnnl::engine& engine = cpu_engine();
    memory source(user, engine, const_cast<void*>(weights_.raw_data()));
    std::shared_ptr<memory> packed;
    if (want == user) {
      packed = std::make_shared<memory>(source);  // weights_ outlives every plan
    } else {
      packed = std::make_shared<memory>(want, engine);
      dnnl::stream stream(engine);
      dnnl::reorder(source, *packed).execute(stream, source, *packed);
      stream.wait();
    }
    packed_.emplace_back(want, packed);
    return std::shared_ptr<const memory>(packed);
  }

  const std::string name_;
  const DType dtype_;
  const ConvAttrs attrs_;
  const bool has_bias_;
  const Tensor weights_;  // float32; undefined when the weights are not constant
  const Tensor bias_;     // float32; undefined when absent or not constant

  std::mutex mutex_;
  std::map<std::vector<int64_t>, std::shared_ptr<const Plan>> plans_;
  std::vector<std::pair<memory::desc, std::shared_ptr<const memory>>> packed_;
};

// The attributes, or UNIMPLEMENTED for values this kernel leaves to the reference (which also
// reports the invalid ones precisely).
// FusedConv's activation as oneDNN eltwise post-ops (computed in f32 by oneDNN).
dnnl::post_ops activation_post_ops(const ActivationSpec& a) {
  dnnl::post_ops ops;
  using Alg = dnnl::algorithm;
  switch (a.kind) {
    case Activation::kNone:
      break;
    case Activation::kRelu:
      ops.append_eltwise(1.f, Alg::eltwise_relu, 0.f, 0.f);
      break;
    case Activation::kLeakyRelu:
      ops.append_eltwise(1.f, Alg::eltwise_relu, a.alpha, 0.f);
      break;
    case Activation::kSigmoid:
      ops.append_eltwise(1.f, Alg::eltwise_logistic, 0.f, 0.f);
      break;
    case Activation::kHardSigmoid:  // max(0, min(1, alpha x + beta))
      ops.append_eltwise(1.f, Alg::eltwise_linear, a.alpha, a.beta);
      ops.append_eltwise(1.f, Alg::eltwise_clip_v2, 0.f, 1.f);
      break;
    case Activation::kHardSwish:
      ops.append_eltwise(1.f, Alg::eltwise_hardswish, 0.f, 0.f);
      break;
    case Activation::kClip:
      ops.append_eltwise(1.f, Alg::eltwise_clip_v2, a.alpha, a.beta);
      break;
    case Activation::kSilu:
      ops.append_eltwise(1.f, Alg::eltwise_swish, 1.f, 0.f);
      break;
  }
  return ops;
}

// acc[i] += z[i], z of the kernel's element type.
void add_residual(const Tensor& z, float* acc, int64_t n) {
  if (z.dtype() == DType::kFloat32) {
    const float* p = z.data<float>();
    for (int64_t i = 0; i < n; ++i) acc[i] += p[i];
  } else if (z.dtype() == DType::kFloat16) {
    const Half* p = z.data<Half>();
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<float>(p[i]);
  } else {
    const BFloat16* p = z.data<BFloat16>();
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<float>(p[i]);
  }
}

StatusOr<ConvAttrs> parse_attrs(const KernelDef& def) {
  const Attributes& attrs = def.attrs;
  ConvAttrs a;
  KS_ASSIGN_OR_RETURN(a.activation, parse_activation(attrs));
  if (a.activation.kind == Activation::kClip && a.activation.alpha > a.activation.beta) {
    return unimplemented("{}: Clip with min > max is left to the reference", def.describe());
  }
  const std::string auto_pad = attrs.get_string("auto_pad", "NOTSET");
  using AutoPad = ConvAttrs::AutoPad;
  const std::map<std::string, AutoPad, std::less<>> auto_pads = {
      {"NOTSET", AutoPad::kNotSet},
      {"SAME_UPPER", AutoPad::kSameUpper},
      {"SAME_LOWER", AutoPad::kSameLower},
      {"VALID", AutoPad::kValid}};
  const auto it = auto_pads.find(auto_pad);
  if (it == auto_pads.end()) return unimplemented("{}: auto_pad '{}'", def.describe(), auto_pad);
  a.auto_pad = it->second;
  a.group = attrs.get_int("group", 1);
  if (a.group < 1) return unimplemented("{}: group {}", def.describe(), a.group);

  // The number of spatial axes: from constant weights, else from the attributes.
  std::optional<size_t> axes;
  if (def.constant_inputs.size() > 1 && def.constant_inputs[1].defined()) {
    axes = std::max<size_t>(def.constant_inputs[1].rank(), 2) - 2;
  } else if (attrs.has("kernel_shape")) {
    axes = attrs.get_ints("kernel_shape").size();
  } else if (attrs.has("strides")) {
    axes = attrs.get_ints("strides").size();
  } else if (attrs.has("dilations")) {
    axes = attrs.get_ints("dilations").size();
  } else if (attrs.has("pads")) {
    axes = attrs.get_ints("pads").size() / 2;
  }
  if (!axes || *axes < 1 || *axes > 3) {
    return unimplemented("{}: only 1 to 3 spatial axes, known when the kernel is built",
                         def.describe());
  }
  a.axes = *axes;
  a.kernel_shape = attrs.get_ints("kernel_shape");
  a.strides = attrs.get_ints("strides", std::vector<int64_t>(a.axes, 1));
  a.dilations = attrs.get_ints("dilations", std::vector<int64_t>(a.axes, 1));
  a.pads = attrs.get_ints("pads", std::vector<int64_t>(2 * a.axes, 0));
  const auto all_at_least = [](const std::vector<int64_t>& v, int64_t min) {
    return std::all_of(v.begin(), v.end(), [min](int64_t x) { return x >= min; });
  };
  if (a.strides.size() != a.axes || a.dilations.size() != a.axes || a.pads.size() != 2 * a.axes ||
      (!a.kernel_shape.empty() && a.kernel_shape.size() != a.axes) || !all_at_least(a.strides, 1) ||
      !all_at_least(a.dilations, 1) || !all_at_least(a.pads, 0)) {
    return unimplemented("{}: attribute values left to the reference kernel", def.describe());
  }
  return a;
}

StatusOr<std::unique_ptr<Kernel>> create_conv(const KernelDef& def) {
  // FusedConv's channels-last layout (ir/ops/nn.cc) is left to the reference kernel.
  if (def.attrs.get_int("channels_last", 0) != 0) {
    return unimplemented("{}: channels_last=1 is left to the reference kernel", def.describe());
  }
  const DType dtype = def.input_dtypes.empty() ? DType::kUndefined : def.input_dtypes[0];
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return unimplemented("{}: no oneDNN kernel for {}", def.describe(), dtype);
  }
  if (!def.has_input(1) || def.input_dtypes[1] != dtype ||
      (def.has_input(2) && def.input_dtypes[2] != dtype)) {
    return unimplemented("{}: weights and bias must be {}", def.describe(), dtype);
  }
  KS_ASSIGN_OR_RETURN(ConvAttrs attrs, parse_attrs(def));
  const auto constant = [&](size_t i) -> const Tensor* {
    return i < def.constant_inputs.size() && def.constant_inputs[i].defined() &&
                   def.constant_inputs[i].is_cpu()
               ? &def.constant_inputs[i]
               : nullptr;
  };
  Tensor weights, bias;
  if (const Tensor* w = constant(1)) {
    KS_ASSIGN_OR_RETURN(weights, to_float32(*w));
  }
  if (const Tensor* b = constant(2)) {
    KS_ASSIGN_OR_RETURN(bias, to_float32(*b));
  }
  return std::unique_ptr<Kernel>(std::make_unique<OneDnnConv>(def.describe(), dtype,
                                                              std::move(attrs), def.has_input(2),
                                                              std::move(weights), std::move(bias)));
}

}  // namespace

std::vector<KernelEntry> onednn_kernels() {
  return {KernelEntry{"Conv", create_conv, /*reference=*/false},
          KernelEntry{"FusedConv", create_conv, /*reference=*/false}};
}

}  // namespace kestrel::runtime::cpu

#else  // Built without oneDNN (KESTREL_ONEDNN=OFF): the reference kernels serve every Conv.

#include "kestrel/runtime/cpu/kernel_registry.h"

namespace kestrel::runtime::cpu {
std::vector<KernelEntry> onednn_kernels() { return {}; }
}  // namespace kestrel::runtime::cpu

#endif  // KESTREL_WITH_ONEDNN
