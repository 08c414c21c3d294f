// Conv and FusedConv on the GPU: cuDNN computes the convolution, conv_epilogue.cu applies bias,
// activation and residual in one pass. For few input channels (the stem), our direct kernel
// (conv_direct.cu, epilogue fused) is a candidate too, and for channels-last float16 FusedConv so
// is cuDNN's runtime fusion (conv_fused_graph.h: convolution and epilogue in one kernel, so the
// output is written once instead of being re-read and re-written by the epilogue pass).
//
// The candidates are measured the first time a kernel sees an input shape: every cuDNN algorithm
// (cudnnFindConvolutionForwardAlgorithmEx), then the direct kernel, which must beat the best of
// them; then the fused graph's plans, each against the legacy path's convolution + epilogue pass
// (or the direct kernel); the winner is remembered for that shape. With a tuning cache
// (runtime/tuning.h) the choices are looked up first and recorded after measuring, so engine
// files and rebuilds skip the measurement; a chosen fused-graph plan is recorded in its compiled
// (serialized) form as well, so an engine file loads without cuDNN compiling it again. Whatever
// goes wrong with the fused graph while planning (no engine, no plan that finalizes or can be
// recorded into a CUDA graph, a recorded plan this cuDNN no longer offers) leaves the legacy path
// in charge, unless the node pins kestrel_kernel=graph. Constant weights and bias are copied to the
// device once, when the kernel is created, and shared by every run. float32 runs in full FP32 (TF32
// only when the node asks for it with the `kestrel_tf32` attribute); float16 accumulates in FP32.
#include <cudnn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <optional>

#include "kestrel/base/logging.h"
#include "kestrel/runtime/cuda/conv_fused_graph.h"
#include "kestrel/runtime/cuda/cuda_kernels.h"
#include "kestrel/runtime/cuda/cudnn_check.h"

namespace kestrel::runtime::cuda {
namespace {

// FusedConv's `activation` attribute ("" for none); UNIMPLEMENTED for an unknown name.
StatusOr<Activation> parse_activation(const std::string& name) {
  if (name.empty()) return Activation::kNone;
  if (name == "Relu") return Activation::kRelu;
  if (name == "LeakyRelu") return Activation::kLeakyRelu;
  if (name == "Sigmoid") return Activation::kSigmoid;
  if (name == "HardSigmoid") return Activation::kHardSigmoid;
  if (name == "HardSwish") return Activation::kHardSwish;
  if (name == "Clip") return Activation::kClip;
  if (name == "Silu") return Activation::kSilu;
  return unimplemented("activation '{}' has no CUDA epilogue", name);
}

// Largest workspace an algorithm may ask for.
constexpr size_t kMaxWorkspace = size_t{256} << 20;
// Fused-graph plans measured per shape: the first that finalize, in cuDNN's heuristic order (each
// may compile a kernel at run time, which is what tuning time is spent on).
constexpr size_t kMaxFusedPlans = 3;
// Timed runs per candidate that we time ourselves (after one untimed run).
constexpr int kTimedRuns = 5;

// A host tensor copied to the device (synchronously: this runs once, at kernel creation).
StatusOr<Tensor> upload(const Tensor& host) {
  void* p = nullptr;
  KS_CUDA_ALLOC_RETURN_IF_ERROR(cudaMalloc(&p, host.nbytes() == 0 ? 1 : host.nbytes()),
                                host.nbytes());
  std::shared_ptr<void> storage(p, [](void* q) { cudaFree(q); });
  KS_CUDA_RETURN_IF_ERROR(cudaMemcpy(p, host.raw_data(), host.nbytes(), cudaMemcpyHostToDevice));
  int device = 0;
  KS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  return Tensor::wrap(host.dtype(), host.shape(), std::move(storage), p, Device::cuda(device));
}

// Descriptors and the chosen algorithm for one input shape.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  size_t workspace = 0;
  // Our own kernel for few input channels (launch_direct_conv), when it measured faster.
  bool direct = false;
  DirectConvShape direct_shape{};
  // cuDNN's runtime fusion, when it measured faster (or is pinned): its one plan runs instead of
  // everything above. graph_failed: it failed at run time, the legacy path runs from then on.
  FusedConvProblem problem;
  std::unique_ptr<FusedConvGraph> graph;
  mutable std::atomic<bool> graph_failed{false};

  ~ConvPlan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

class CudnnConv final : public Kernel {
 public:
  static StatusOr<std::unique_ptr<Kernel>> create(const KernelDef& def) {
    const DType dtype = def.input_dtypes[0];
    if (dtype != DType::kFloat32 && dtype != DType::kFloat16) {
      return unimplemented("{}: no CUDA convolution for {}", def.describe(), dtype);
    }
    auto k = std::unique_ptr<CudnnConv>(new CudnnConv());
    k->dtype_ = dtype;
    k->group_ = def.attrs.get_int("group", 1);
    k->strides_ = def.attrs.get_ints("strides", {});
    k->dilations_ = def.attrs.get_ints("dilations", {});
    k->pads_ = def.attrs.get_ints("pads", {});
    k->tf32_ = def.attrs.get_int("kestrel_tf32", 0) != 0;
    k->channels_last_ = def.attrs.get_int("channels_last", 0) != 0;
    k->tuning_ = def.tuning;
    k->name_ = def.describe();
    k->pinned_kernel_ = def.attrs.get_string("kestrel_kernel", "");
    if (!k->pinned_kernel_.empty() && k->pinned_kernel_ != "direct" &&
        k->pinned_kernel_ != "cudnn" && k->pinned_kernel_ != "graph" &&
        k->pinned_kernel_ != "no_graph") {
      return invalid_argument("{}: kestrel_kernel must be direct, cudnn or graph, not '{}'",
                              def.describe(), k->pinned_kernel_);
    }
    const std::string auto_pad = def.attrs.get_string("auto_pad", "NOTSET");
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      k->same_padding_ = true;
    } else if (auto_pad != "NOTSET" && auto_pad != "VALID") {
      return unimplemented("{}: auto_pad {}", def.describe(), auto_pad);
    }
    if (auto_pad == "VALID") k->pads_.clear();
    const size_t spatial = k->pads_.size() / 2;
    for (size_t i = 0; i < spatial; ++i) {
      if (k->pads_[i] != k->pads_[i + spatial]) {
        return unimplemented("{}: cuDNN needs symmetric padding", def.describe());
      }
    }
    KS_ASSIGN_OR_RETURN(k->type_, float_type(def, dtype));
    KS_ASSIGN_OR_RETURN(k->activation_, parse_activation(def.attrs.get_string("activation", "")));
    k->alpha_ = def.attrs.get_float("activation_alpha", 0.f);
    k->beta_ = def.attrs.get_float("activation_beta", 0.f);
    if (def.constant_inputs.size() > 1 && def.constant_inputs[1].defined()) {
      KS_ASSIGN_OR_RETURN(k->weights_, upload(def.constant_inputs[1]));
    }
    if (def.constant_inputs.size() > 2 && def.constant_inputs[2].defined()) {
      KS_ASSIGN_OR_RETURN(k->bias_, upload(def.constant_inputs[2]));
    }
    return std::unique_ptr<Kernel>(std::move(k));
  }

  // Starts compiling the fused graph's candidates for this shape in the background when they
  // will be measured (FusedConvGraph::precompile): the shape has no plan yet and the tuning cache
  // has no choice for it.
  void prepare(std::span<const Tensor> inputs, std::span<const Tensor> outputs) override {
    if (inputs.empty() || outputs.empty() || !inputs[0].defined() || !outputs[0].defined()) return;
    const Tensor& x = inputs[0];
    const Tensor* w = weights_.defined() ? &weights_ : (inputs.size() > 1 ? &inputs[1] : nullptr);
    if (w == nullptr || !w->defined() || (x.rank() != 4 && x.rank() != 3)) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (plans_.count(plan_key(x.shape(), w->shape()))) return;
    }
    const bool bias = bias_.defined() || (inputs.size() > 2 && inputs[2].defined());
    const bool residual = inputs.size() > 3 && inputs[3].defined();
    StatusOr<ShapeInfo> info =
        shape_info(x.shape(), w->shape(), outputs[0].shape(), bias, residual);
    if (!info.ok() || !info->graph_candidate) return;
    if (tuning_ != nullptr && tuning_->find(info->fused_signature)) return;
    FusedConvGraph::precompile(info->problem, kMaxFusedPlans);
  }

  Status run(KernelContext& ctx) override {
    const Tensor& x = ctx.input(0);
    const Tensor& w = weights_.defined() ? weights_ : ctx.input(1);
    const Tensor* bias = bias_.defined() ? &bias_ : (ctx.has_input(2) ? &ctx.input(2) : nullptr);
    const Tensor* residual = ctx.has_input(3) ? &ctx.input(3) : nullptr;
    Tensor& y = ctx.output(0);
    if (x.rank() != 4 && x.rank() != 3) return unimplemented("CUDA convolution is 1-D or 2-D");
    cudaStream_t stream = stream_of(ctx);
    KS_ASSIGN_OR_RETURN(cudnnHandle_t handle, thread_cudnn_handle());
    KS_CUDNN_RETURN_IF_ERROR(cudnnSetStream(handle, stream));
    KS_ASSIGN_OR_RETURN(const ConvPlan* plan, plan_for(handle, x, w, bias, residual, y, stream));
    if (plan->graph != nullptr && !plan->graph_failed.load()) {
      const FusedConvBuffers buffers = fused_buffers(x, w, bias, residual, y);
      if (fused_conv_buffers_aligned(plan->problem, buffers)) {
        const Status fused = run_graph(*plan, buffers, stream);
        // Out of memory is the caller's to handle, and a pinned kernel must not be replaced; any
        // other failure hands this shape to the legacy path for good.
        if (fused.ok() || pinned_kernel_ == "graph" ||
            fused.code() == StatusCode::kResourceExhausted) {
          return fused;
        }
        plan->graph_failed = true;
        log::warn("{}: the fused cuDNN graph failed ({}); convolution + epilogue pass instead",
                  name_, fused.to_string());
      } else if (pinned_kernel_ == "graph") {
        return unimplemented("{}: kestrel_kernel=graph needs 16-byte aligned buffers", name_);
      }
    }
    return run_legacy(handle, *plan, x, w, bias, residual, y, stream);
  }

 private:
  CudnnConv() = default;

  static FusedConvBuffers fused_buffers(const Tensor& x, const Tensor& w, const Tensor* bias,
                                        const Tensor* residual, Tensor& y) {
    FusedConvBuffers b;
    b.x = x.raw_data();
    b.w = w.raw_data();
    b.bias = bias ? bias->raw_data() : nullptr;
    b.residual = residual ? residual->raw_data() : nullptr;
    b.y = y.raw_data();
    return b;
  }

  // The fused graph's plan, with its workspace.
  static Status run_graph(const ConvPlan& plan, const FusedConvBuffers& buffers,
                          cudaStream_t stream) {
    const size_t size = plan.graph->workspace(0);
    void* workspace = nullptr;
    if (size > 0) KS_CUDA_ALLOC_RETURN_IF_ERROR(cudaMallocAsync(&workspace, size, stream), size);
    const Status status = plan.graph->execute(0, buffers, workspace, stream);
    if (workspace) KS_CUDA_RETURN_IF_ERROR(cudaFreeAsync(workspace, stream));
    return status;
  }

  // The legacy path: cuDNN's convolution then the epilogue pass, or the direct kernel. `handle`
  // runs on `stream` already.
  Status run_legacy(cudnnHandle_t handle, const ConvPlan& plan, const Tensor& x, const Tensor& w,
                    const Tensor* bias, const Tensor* residual, Tensor& y, cudaStream_t stream) {
    if (plan.direct) {
      return check_launch(
          "direct convolution",
          launch_direct_conv(type_, x.raw_data(), w.raw_data(), bias ? bias->raw_data() : nullptr,
                             residual ? residual->raw_data() : nullptr, y.raw_data(),
                             plan.direct_shape, activation_, alpha_, beta_, stream));
    }

    // Out of memory for the workspace: RESOURCE_EXHAUSTED before anything is queued.
    void* workspace = nullptr;
    if (plan.workspace > 0) {
      KS_CUDA_ALLOC_RETURN_IF_ERROR(cudaMallocAsync(&workspace, plan.workspace, stream),
                                    plan.workspace);
    }
    const float one = 1.f, zero = 0.f;
    const cudnnStatus_t status =
        cudnnConvolutionForward(handle, &one, plan.x, x.raw_data(), plan.w, w.raw_data(), plan.conv,
                                plan.algo, workspace, plan.workspace, &zero, plan.y, y.raw_data());
    if (workspace) KS_CUDA_RETURN_IF_ERROR(cudaFreeAsync(workspace, stream));
    KS_CUDNN_RETURN_IF_ERROR(status);
    if (bias || residual || activation_ != Activation::kNone) {
      const int64_t channels = channels_last_ ? y.shape()[y.rank() - 1] : y.shape()[1];
      const int64_t plane = y.num_elements() / std::max<int64_t>(1, y.shape()[0] * channels);
      KS_RETURN_IF_ERROR(
          check_launch("conv epilogue",
                       launch_conv_epilogue(type_, y.raw_data(), bias ? bias->raw_data() : nullptr,
                                            residual ? residual->raw_data() : nullptr,
                                            y.num_elements(), channels, plane, channels_last_,
                                            activation_, alpha_, beta_, stream)));
    }
    return Status();
  }

  // plans_'s key: the input's and the weights' shapes.
  static std::vector<int64_t> plan_key(const Shape& x, const Shape& w) {
    std::vector<int64_t> key = x.vec();
    key.insert(key.end(), w.begin(), w.end());
    return key;
  }

  // An attribute's i-th spatial value (1-D convolutions run as 2-D ones with height 1).
  static int conv_param(const std::vector<int64_t>& v, size_t i, int fallback, bool one_d) {
    if (one_d) return i == 0 ? fallback : (v.empty() ? fallback : static_cast<int>(v[0]));
    return v.size() > i ? static_cast<int>(v[i]) : fallback;
  }

  // What a shape decides before anything is measured: cuDNN's dimensions, the tuning cache's
  // signatures, and the fused graph's problem and whether it is a candidate.
  struct ShapeInfo {
    bool one_d = false;
    std::vector<int> xd, wd, yd;  // cuDNN's (N, C, H, W) order, whatever the memory layout
    int pad_h = 0, pad_w = 0;
    cudnnMathType_t math = CUDNN_DEFAULT_MATH;
    std::string signature;        // the legacy path's tuning key
    std::string fused_signature;  // the fused graph's (the epilogue too)
    FusedConvProblem problem;
    std::string graph_refusal;  // why the fused graph cannot run this ("" if it can)
    bool graph_candidate = false;
  };
  StatusOr<ShapeInfo> shape_info(const Shape& x, const Shape& w, const Shape& y, bool bias,
                                 bool residual) const {
    ShapeInfo info;
    // 1-D convolutions run as 2-D ones with height 1. Dimensions in cuDNN's (N, C, H, W) order,
    // whatever the memory layout (channels_last: the tensors are N, H, W, C in memory).
    const bool one_d = info.one_d = x.rank() == 3;
    auto dims4 = [&](const Shape& s) {
      auto d = [&](size_t i) { return static_cast<int>(s[i]); };
      if (channels_last_) {
        return one_d ? std::vector<int>{d(0), d(2), 1, d(1)}
                     : std::vector<int>{d(0), d(3), d(1), d(2)};
      }
      return one_d ? std::vector<int>{d(0), d(1), 1, d(2)}
                   : std::vector<int>{d(0), d(1), d(2), d(3)};
    };
    const std::vector<int>& xd = info.xd = dims4(x);
    const std::vector<int>& wd = info.wd = dims4(w);
    const std::vector<int>& yd = info.yd = dims4(y);
    auto param = [&](const std::vector<int64_t>& v, size_t i, int fallback) {
      return conv_param(v, i, fallback, one_d);
    };
    int pad_h = param(pads_, 0, 0), pad_w = param(pads_, 1, 0);
    if (same_padding_) {
      // Symmetric SAME padding; asymmetric cases cannot be expressed and are refused.
      const int sh = param(strides_, 0, 1), sw = param(strides_, 1, 1);
      const int dh = param(dilations_, 0, 1), dw = param(dilations_, 1, 1);
      const int th = std::max(0, (yd[2] - 1) * sh + (wd[2] - 1) * dh + 1 - xd[2]);
      const int tw = std::max(0, (yd[3] - 1) * sw + (wd[3] - 1) * dw + 1 - xd[3]);
      if (th % 2 || tw % 2) return unimplemented("asymmetric SAME padding on the GPU");
      pad_h = th / 2;
      pad_w = tw / 2;
    }
    info.pad_h = pad_h;
    info.pad_w = pad_w;
    info.math = dtype_ == DType::kFloat16 ? CUDNN_TENSOR_OP_MATH
                : tf32_                   ? CUDNN_DEFAULT_MATH
                                          : CUDNN_FMA_MATH;
    // The problem as the tuning cache knows it: every parameter that can change cuDNN's choice.
    info.signature =
        fmt::format("cudnn_conv {} {} x{} w{} y{} pad{},{} stride{},{} dil{},{} group{} math{}",
                    dtype_name(dtype_), channels_last_ ? "nhwc" : "nchw", fmt::join(xd, ","),
                    fmt::join(wd, ","), fmt::join(yd, ","), pad_h, pad_w, param(strides_, 0, 1),
                    param(strides_, 1, 1), param(dilations_, 0, 1), param(dilations_, 1, 1), group_,
                    static_cast<int>(info.math));
    // The fused graph (conv_fused_graph.h) is a candidate for channels-last, ungrouped FusedConv
    // in float16 (float32 only where TF32 is allowed: its engines compute in TF32).
    FusedConvProblem& problem = info.problem;
    problem.float16 = dtype_ == DType::kFloat16;
    for (size_t i = 0; i < 4; ++i) {
      problem.x[i] = xd[i];
      problem.w[i] = wd[i];
      problem.y[i] = yd[i];
    }
    problem.pad[0] = pad_h;
    problem.pad[1] = pad_w;
    problem.stride[0] = param(strides_, 0, 1);
    problem.stride[1] = param(strides_, 1, 1);
    problem.dilation[0] = param(dilations_, 0, 1);
    problem.dilation[1] = param(dilations_, 1, 1);
    problem.bias = bias;
    problem.residual = residual;
    problem.activation = activation_;
    problem.alpha = alpha_;
    problem.beta = beta_;
    info.graph_refusal = !channels_last_ ? "the NCHW layout"
                         : group_ != 1   ? "a grouped convolution"
                         : dtype_ == DType::kFloat32 && !tf32_
                             ? "float32 without kestrel_tf32"
                             : fused_conv_graph_unsupported(problem);
    info.graph_candidate = info.graph_refusal.empty() && pinned_kernel_ != "cudnn" &&
                           pinned_kernel_ != "no_graph" && pinned_kernel_ != "direct";
    // The graph's choice depends on the epilogue too.
    info.fused_signature =
        fmt::format("{} fused bias{} residual{} act{} {:g} {:g}", info.signature, bias ? 1 : 0,
                    residual ? 1 : 0, static_cast<int>(activation_), alpha_, beta_);
    return info;
  }

  // The plan for x's shape: built (and the fastest algorithm measured) on first use.
  StatusOr<const ConvPlan*> plan_for(cudnnHandle_t handle, const Tensor& x, const Tensor& w,
                                     const Tensor* bias, const Tensor* residual, Tensor& y,
                                     cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::vector<int64_t> key = plan_key(x.shape(), w.shape());
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second.get();
    auto plan = std::make_unique<ConvPlan>();
    KS_ASSIGN_OR_RETURN(const ShapeInfo info, shape_info(x.shape(), w.shape(), y.shape(),
                                                         bias != nullptr, residual != nullptr));
    const bool one_d = info.one_d;
    const std::vector<int>& xd = info.xd;
    const std::vector<int>& wd = info.wd;
    const std::vector<int>& yd = info.yd;
    const int pad_h = info.pad_h, pad_w = info.pad_w;
    auto param = [&](const std::vector<int64_t>& v, size_t i, int fallback) {
      return conv_param(v, i, fallback, one_d);
    };
    const cudnnDataType_t type = dtype_ == DType::kFloat16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    const cudnnTensorFormat_t format = channels_last_ ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    KS_CUDNN_RETURN_IF_ERROR(cudnnCreateTensorDescriptor(&plan->x));
    KS_CUDNN_RETURN_IF_ERROR(cudnnCreateTensorDescriptor(&plan->y));
    KS_CUDNN_RETURN_IF_ERROR(cudnnCreateFilterDescriptor(&plan->w));
    KS_CUDNN_RETURN_IF_ERROR(cudnnCreateConvolutionDescriptor(&plan->conv));
    KS_CUDNN_RETURN_IF_ERROR(
        cudnnSetTensor4dDescriptor(plan->x, format, type, xd[0], xd[1], xd[2], xd[3]));
    KS_CUDNN_RETURN_IF_ERROR(
        cudnnSetTensor4dDescriptor(plan->y, format, type, yd[0], yd[1], yd[2], yd[3]));
    KS_CUDNN_RETURN_IF_ERROR(
        cudnnSetFilter4dDescriptor(plan->w, type, format, wd[0], wd[1], wd[2], wd[3]));
    KS_CUDNN_RETURN_IF_ERROR(cudnnSetConvolution2dDescriptor(
        plan->conv, pad_h, pad_w, param(strides_, 0, 1), param(strides_, 1, 1),
        param(dilations_, 0, 1), param(dilations_, 1, 1), CUDNN_CROSS_CORRELATION,
        CUDNN_DATA_FLOAT));
    KS_CUDNN_RETURN_IF_ERROR(cudnnSetConvolutionGroupCount(plan->conv, static_cast<int>(group_)));
    const cudnnMathType_t math = info.math;
    KS_CUDNN_RETURN_IF_ERROR(cudnnSetConvolutionMathType(plan->conv, math));
    const std::string& signature = info.signature;
    // The direct kernel is a candidate for 2-D, ungrouped, undilated convolutions with constant
    // weights and at most 4 input channels.
    plan->direct_shape = {xd[0],
                          xd[1],
                          xd[2],
                          xd[3],
                          wd[0],
                          wd[2],
                          wd[3],
                          param(strides_, 0, 1),
                          param(strides_, 1, 1),
                          pad_h,
                          pad_w,
                          yd[2],
                          yd[3],
                          channels_last_};
    const bool direct_candidate = !one_d && group_ == 1 && param(dilations_, 0, 1) == 1 &&
                                  param(dilations_, 1, 1) == 1 && weights_.defined() &&
                                  direct_conv_supported(plan->direct_shape) &&
                                  pinned_kernel_ != "cudnn";
    auto store = [&]() -> const ConvPlan* {
      const ConvPlan* result = plan.get();
      plans_[key] = std::move(plan);
      return result;
    };
    if (pinned_kernel_ == "direct") {
      if (!direct_candidate) {
        return unimplemented("kestrel_kernel=direct: the direct kernel cannot run {}", signature);
      }
      plan->direct = true;
      return store();
    }

    FusedConvProblem& problem = plan->problem;
    problem = info.problem;
    const std::string& graph_refusal = info.graph_refusal;
    if (pinned_kernel_ == "graph" && !graph_refusal.empty()) {
      return unimplemented("kestrel_kernel=graph: no fused cuDNN graph for {} ({})", graph_refusal,
                           signature);
    }
    const bool graph_candidate = info.graph_candidate;
    const std::string& fused_signature = info.fused_signature;
    std::optional<std::string> fused_choice;
    if (tuning_ != nullptr && graph_candidate) fused_choice = tuning_->find(fused_signature);
    if (fused_choice && fused_choice->rfind("graph ", 0) == 0) {
      // The compiled plan from the engine file when it has it, else built (and compiled) again.
      const std::string plan_key = serialized_plan_key(fused_signature, *fused_choice);
      StatusOr<std::unique_ptr<FusedConvGraph>> graph = unavailable("no serialized plan");
      if (std::optional<std::string> text = tuning_->find(plan_key)) {
        graph = FusedConvGraph::from_serialized(problem, *fused_choice, *text, kMaxWorkspace);
        if (!graph.ok())
          log::debug("{}: the serialized cuDNN plan cannot be used ({}); building it again", name_,
                     graph.status().to_string());
      }
      if (!graph.ok()) {
        graph = FusedConvGraph::from_choice(problem, *fused_choice, kMaxWorkspace);
        if (graph.ok()) remember_serialized(**graph, fused_signature);
      }
      if (graph.ok()) {
        plan->graph = std::move(graph).value();
        // The legacy choice as well, if recorded, for runs whose buffers the graph cannot take
        // (misaligned views); otherwise cuDNN's implicit GEMM, which needs no workspace.
        if (pinned_kernel_ != "graph") {
          const Status legacy = choose_cudnn(handle, *plan, x, w, bias, residual, y, stream,
                                             signature, math, direct_candidate, /*measure=*/false);
          if (!legacy.ok()) {
            log::debug("{}: no legacy fallback recorded ({})", name_, legacy.to_string());
            plan->direct = false;
            plan->algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
            plan->workspace = 0;
          }
        }
        return store();
      }
      log::debug("{}: the recorded fused cuDNN graph cannot be used here ({}); measuring again",
                 name_, graph.status().to_string());
      fused_choice.reset();
    }
    if (pinned_kernel_ == "graph") {
      KS_RETURN_IF_ERROR(tune_graph(handle, *plan, fused_signature, x, w, bias, residual, y, stream,
                                    /*against_legacy=*/false));
      return store();
    }
    KS_RETURN_IF_ERROR(choose_cudnn(handle, *plan, x, w, bias, residual, y, stream, signature, math,
                                    direct_candidate, /*measure=*/true));
    if (graph_candidate && !(fused_choice && *fused_choice == "legacy")) {
      const Status tuned = tune_graph(handle, *plan, fused_signature, x, w, bias, residual, y,
                                      stream, /*against_legacy=*/true);
      if (!tuned.ok()) {
        plan->graph.reset();
        log::debug("{}: no fused cuDNN graph for {} ({}); convolution + epilogue pass", name_,
                   fused_signature, tuned.to_string());
      }
    } else if (!graph_refusal.empty() && channels_last_ && dtype_ == DType::kFloat16) {
      log::debug("{}: no fused cuDNN graph for {}", name_, graph_refusal);
    }
    return store();
  }

  // cuDNN's legacy algorithm, or the direct kernel, for the plan: the tuning cache's choice, else
  // (with `measure`) every candidate measured on this shape and the choice recorded. Without
  // `measure` and without a usable recorded choice the plan keeps implicit GEMM.
  Status choose_cudnn(cudnnHandle_t handle, ConvPlan& plan, const Tensor& x, const Tensor& w,
                      const Tensor* bias, const Tensor* residual, Tensor& y, cudaStream_t stream,
                      const std::string& signature, cudnnMathType_t math, bool direct_candidate,
                      bool measure) {
    if (tuning_ != nullptr) {
      if (std::optional<std::string> choice = tuning_->find(signature);
          choice && *choice == "direct" && direct_candidate) {
        plan.direct = true;
        return Status();
      }
      if (std::optional<std::string> choice = tuning_->find(signature)) {
        int algo = -1, math_type = -1;
        if (std::sscanf(choice->c_str(), "algo %d math %d", &algo, &math_type) == 2 && algo >= 0 &&
            algo < CUDNN_CONVOLUTION_FWD_ALGO_COUNT) {
          plan.algo = static_cast<cudnnConvolutionFwdAlgo_t>(algo);
          KS_CUDNN_RETURN_IF_ERROR(
              cudnnSetConvolutionMathType(plan.conv, static_cast<cudnnMathType_t>(math_type)));
          const cudnnStatus_t sized = cudnnGetConvolutionForwardWorkspaceSize(
              handle, plan.x, plan.w, plan.conv, plan.y, plan.algo, &plan.workspace);
          if (sized == CUDNN_STATUS_SUCCESS && plan.workspace <= kMaxWorkspace) return Status();
          // Not usable here after all (another cuDNN build): measure again.
          KS_CUDNN_RETURN_IF_ERROR(cudnnSetConvolutionMathType(plan.conv, math));
          plan.algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
          plan.workspace = 0;
        }
      }
    }
    if (!measure) return Status();

    // Measure the candidates on this shape (the output buffer serves as scratch).
    void* workspace = nullptr;
    size_t workspace_size = kMaxWorkspace;
    if (cudaMallocAsync(&workspace, workspace_size, stream) != cudaSuccess) {
      (void)cudaGetLastError();
      workspace = nullptr;
      workspace_size = 0;
    }
    KS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    const cudnnStatus_t found = cudnnFindConvolutionForwardAlgorithmEx(
        handle, plan.x, x.raw_data(), plan.w, w.raw_data(), plan.conv, plan.y, y.raw_data(),
        CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf, workspace, workspace_size);
    if (workspace) KS_CUDA_RETURN_IF_ERROR(cudaFreeAsync(workspace, stream));
    KS_CUDNN_RETURN_IF_ERROR(found);
    bool chosen = false;
    float cudnn_ms = 0;
    for (int i = 0; i < returned && !chosen; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      // FP32 must stay FP32: skip algorithms that would use tensor-op math when it is not asked
      // for.
      if (dtype_ == DType::kFloat32 && !tf32_ && perf[i].mathType == CUDNN_TENSOR_OP_MATH) continue;
      plan.algo = perf[i].algo;
      plan.workspace = perf[i].memory;
      cudnn_ms = perf[i].time;
      // The algorithm was measured with this math type; it must run with it too (cuDNN answers
      // BAD_PARAM otherwise, seen with float16 at batch 32).
      KS_CUDNN_RETURN_IF_ERROR(cudnnSetConvolutionMathType(plan.conv, perf[i].mathType));
      chosen = true;
    }
    if (!chosen) return internal_error("cuDNN found no usable convolution algorithm");
    if (direct_candidate) {
      // Timed like cuDNN's candidates, on this shape; it must beat cuDNN's convolution alone
      // (which still needs its epilogue pass on top).
      KS_ASSIGN_OR_RETURN(
          const float direct_ms, time_ms(stream, [&] {
            return check_launch(
                "direct convolution",
                launch_direct_conv(type_, x.raw_data(), w.raw_data(),
                                   bias ? bias->raw_data() : nullptr,
                                   residual ? residual->raw_data() : nullptr, y.raw_data(),
                                   plan.direct_shape, activation_, alpha_, beta_, stream));
          }));
      plan.direct = direct_ms < cudnn_ms;
    }
    if (tuning_ != nullptr && plan.direct) {
      tuning_->insert(signature, "direct");
    } else if (tuning_ != nullptr) {
      cudnnMathType_t chosen_math = math;
      KS_CUDNN_RETURN_IF_ERROR(cudnnGetConvolutionMathType(plan.conv, &chosen_math));
      tuning_->insert(signature, fmt::format("algo {} math {}", static_cast<int>(plan.algo),
                                             static_cast<int>(chosen_math)));
    }
    return Status();
  }

  // The fused graph's plans measured on this shape; with `against_legacy` they must beat the
  // legacy path (convolution + epilogue pass, or the direct kernel) timed the same way, and a plan
  // that cannot be recorded into a CUDA graph (tried on a throwaway one) is no candidate. The
  // fastest goes into plan.graph; the choice ("graph ..." or "legacy") is recorded. Errors (no
  // plan at all included) leave plan.graph empty.
  Status tune_graph(cudnnHandle_t handle, ConvPlan& plan, const std::string& fused_signature,
                    const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual,
                    Tensor& y, cudaStream_t stream, bool against_legacy) {
    const auto started = std::chrono::steady_clock::now();
    const FusedConvBuffers buffers = fused_buffers(x, w, bias, residual, y);
    if (!fused_conv_buffers_aligned(plan.problem, buffers)) {
      return unimplemented("the buffers are not 16-byte aligned");
    }
    KS_ASSIGN_OR_RETURN(std::unique_ptr<FusedConvGraph> graph,
                        FusedConvGraph::create(plan.problem, kMaxFusedPlans, kMaxWorkspace));
    if (graph->size() == 0) {
      if (tuning_ != nullptr && against_legacy) tuning_->insert(fused_signature, "legacy");
      return unimplemented("no plan: {}", graph->why_empty());
    }
    size_t workspace_size = 0;
    for (size_t i = 0; i < graph->size(); ++i) {
      workspace_size = std::max(workspace_size, graph->workspace(i));
    }
    void* workspace = nullptr;
    if (workspace_size > 0) {
      KS_CUDA_ALLOC_RETURN_IF_ERROR(cudaMallocAsync(&workspace, workspace_size, stream),
                                    workspace_size);
    }
    auto free_workspace = [&] {
      if (workspace) (void)cudaFreeAsync(workspace, stream);
      workspace = nullptr;
    };
    float best_ms = std::numeric_limits<float>::infinity();
    if (against_legacy) {
      StatusOr<float> legacy_ms = time_ms(
          stream, [&] { return run_legacy(handle, plan, x, w, bias, residual, y, stream); });
      if (!legacy_ms.ok()) {
        free_workspace();
        return legacy_ms.status();
      }
      best_ms = *legacy_ms;
    }
    const float legacy_ms = best_ms;
    std::optional<size_t> best;
    std::string timings;
    for (size_t i = 0; i < graph->size(); ++i) {
      StatusOr<float> ms =
          time_ms(stream, [&] { return graph->execute(i, buffers, workspace, stream); });
      if (!ms.ok()) {
        timings += fmt::format(" [{}: {}]", graph->choice(i), ms.status().to_string());
        continue;
      }
      timings += fmt::format(" [{}: {:.4f} ms]", graph->choice(i), *ms);
      if (*ms >= best_ms) continue;
      // Only a plan the engine can record into its CUDA graphs may win (checked after eager runs,
      // as the engine records after a first eager run).
      if (Status captured = graph->check_capture(i, buffers, workspace); !captured.ok()) {
        timings += fmt::format(" (cannot be recorded: {})", captured.to_string());
        continue;
      }
      best_ms = *ms;
      best = i;
    }
    free_workspace();
    const double tuning_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    if (!best) {
      if (!against_legacy) return unimplemented("no plan ran:{}", timings);
      if (tuning_ != nullptr) tuning_->insert(fused_signature, "legacy");
      log::debug("{}: convolution + epilogue pass {:.4f} ms, fused cuDNN graph:{} ({:.0f} ms)",
                 name_, legacy_ms, timings, tuning_ms);
      return Status();
    }
    graph->keep_only(*best);
    if (tuning_ != nullptr && against_legacy) {
      tuning_->insert(fused_signature, graph->choice(0));
      remember_serialized(*graph, fused_signature);
    }
    log::debug(
        "{}: fused cuDNN graph {} {:.4f} ms (convolution + epilogue pass {:.4f} ms):{} "
        "({:.0f} ms)",
        name_, graph->choice(0), best_ms, legacy_ms, timings, tuning_ms);
    plan.graph = std::move(graph);
    return Status();
  }

  // The tuning cache's key for the compiled form of a fused-graph choice. Engine files and timing
  // caches keep these entries, so a loaded engine or a cached rebuild skips cuDNN's compilation.
  static std::string serialized_plan_key(const std::string& fused_signature,
                                         const std::string& choice) {
    return fmt::format("{}{} | {}", kSerializedPlanPrefix, fused_signature, choice);
  }

  // Records plan 0 of `graph` in its compiled form, when cuDNN can serialize it.
  void remember_serialized(const FusedConvGraph& graph, const std::string& fused_signature) {
    if (tuning_ == nullptr || graph.size() == 0) return;
    StatusOr<std::string> text = graph.serialize(0);
    if (!text.ok()) {
      log::debug("{}: the cuDNN plan is not kept in the engine ({})", name_,
                 text.status().to_string());
      return;
    }
    tuning_->insert(serialized_plan_key(fused_signature, graph.choice(0)), std::move(text).value());
  }

  // Mean milliseconds of `launch` (returning Status) over kTimedRuns launches on `stream`, after
  // one untimed launch.
  template <typename Launch>
  static StatusOr<float> time_ms(cudaStream_t stream, Launch launch) {
    KS_RETURN_IF_ERROR(launch());
    cudaEvent_t start = nullptr, stop = nullptr;
    KS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
    std::unique_ptr<CUevent_st, decltype(&cudaEventDestroy)> start_guard(start, &cudaEventDestroy);
    KS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
    std::unique_ptr<CUevent_st, decltype(&cudaEventDestroy)> stop_guard(stop, &cudaEventDestroy);
    KS_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
    for (int i = 0; i < kTimedRuns; ++i) KS_RETURN_IF_ERROR(launch());
    KS_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
    KS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    KS_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    return ms / kTimedRuns;
  }

  DType dtype_ = DType::kFloat32;
  FloatType type_ = FloatType::kFloat32;
  int64_t group_ = 1;
  std::vector<int64_t> strides_, dilations_, pads_;
  bool same_padding_ = false;
  bool tf32_ = false;
  bool channels_last_ = false;
  Activation activation_ = Activation::kNone;
  float alpha_ = 0, beta_ = 0;
  Tensor weights_, bias_;
  TuningCache* tuning_ = nullptr;
  // kestrel_kernel: "direct", "cudnn", "graph", "no_graph" (measure all but the graph), or ""
  // (measure every candidate).
  std::string pinned_kernel_;
  std::string name_;  // the node, for logs
  std::mutex mutex_;
  std::map<std::vector<int64_t>, std::unique_ptr<ConvPlan>> plans_;
};

}  // namespace

std::vector<KernelEntry> conv_kernels() {
  return {{"Conv", CudnnConv::create}, {"FusedConv", CudnnConv::create}};
}

}  // namespace kestrel::runtime::cuda
