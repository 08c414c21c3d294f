// FusedConvGraph (conv_fused_graph.h): convolution + bias + activation + residual as one cuDNN
// operation graph, built with the backend API's plain C calls (cudnnBackendCreateDescriptor,
// SetAttribute, Finalize). Every descriptor has an owner (Descriptor), every cuDNN call's status
// becomes a Status naming the call.
#include "kestrel/runtime/cuda/conv_fused_graph.h"

#include <cudnn.h>
#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

#include "kestrel/runtime/cuda/cuda_check.h"
#include "kestrel/runtime/cuda/cudnn_check.h"

// cudnnBackendSetAttribute on a Descriptor; the Status names the attribute.
#define KS_SET_ATTR(desc, name, type, count, values) \
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendSetAttribute((desc).get(), name, type, count, values))

namespace kestrel::runtime::cuda {
namespace {

// Byte alignment promised to cuDNN for every tensor; fused_conv_buffers_aligned checks it.
constexpr int64_t kAlignment = 16;
// Heuristic results looked at: create() tries this many at most (each plan that finalizes may
// compile a kernel at run time, which is slow); from_choice() searches this many.
constexpr size_t kMaxAttempts = 12;
constexpr int64_t kMaxConfigs = 64;

// The graph's tensors. Virtual intermediates number from kFirstVirtual.
enum Uid : int64_t { kX = 1, kW = 2, kBias = 3, kResidual = 4, kY = 5, kFirstVirtual = 100 };

// One backend descriptor, destroyed with its owner.
class Descriptor {
 public:
  Descriptor() = default;
  explicit Descriptor(cudnnBackendDescriptor_t d) : d_(d) {}
  Descriptor(Descriptor&& other) noexcept : d_(std::exchange(other.d_, nullptr)) {}
  Descriptor& operator=(Descriptor&& other) noexcept {
    if (this != &other) {
      reset();
      d_ = std::exchange(other.d_, nullptr);
    }
    return *this;
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() { reset(); }

  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  void reset() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
    d_ = nullptr;
  }
  cudnnBackendDescriptor_t d_ = nullptr;
};

StatusOr<Descriptor> make(cudnnBackendDescriptorType_t type) {
  cudnnBackendDescriptor_t d = nullptr;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendCreateDescriptor(type, &d));
  return Descriptor(d);
}

// cuDNN's own explanation of the last failure on this thread (often names the unsupported part).
std::string last_cudnn_error() {
  char message[512] = {};
  cudnnGetLastErrorString(message, sizeof(message));
  return message;
}

// The handle every backend object of a device is built and run with; see the header for why it is
// one, locked, and never destroyed (destroying it at exit would also race the CUDA runtime's own
// teardown).
struct DeviceHandle {
  std::mutex mutex;
  cudnnHandle_t handle = nullptr;
};

StatusOr<DeviceHandle*> device_handle() {
  static std::mutex mutex;
  static auto* handles = new std::map<int, std::unique_ptr<DeviceHandle>>();
  int device = 0;
  KS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<DeviceHandle>& slot = (*handles)[device];
  if (!slot) {
    auto fresh = std::make_unique<DeviceHandle>();
    KS_CUDNN_RETURN_IF_ERROR(cudnnCreate(&fresh->handle));
    slot = std::move(fresh);
  }
  return slot.get();
}

// A tensor given in (N, C, H, W) order, laid out channels-last.
StatusOr<Descriptor> tensor(int64_t uid, cudnnDataType_t type, const int64_t (&dims)[4],
                            bool is_virtual) {
  const int64_t strides[4] = {dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]};
  const int64_t alignment = kAlignment;
  const bool virtual_flag = is_virtual;
  KS_ASSIGN_OR_RETURN(Descriptor t, make(CUDNN_BACKEND_TENSOR_DESCRIPTOR));
  KS_SET_ATTR(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  KS_SET_ATTR(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  KS_SET_ATTR(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
  KS_SET_ATTR(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  KS_SET_ATTR(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  KS_SET_ATTR(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virtual_flag);
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(t.get()));
  return t;
}

// ReLU's clip parameters (cuDNN's RELU_FWD covers Relu, LeakyRelu and Clip(0, hi)).
struct ReluClip {
  double lower = 0, upper = FLT_MAX, slope = 0;
};

StatusOr<Descriptor> pointwise(cudnnPointwiseMode_t mode, ReluClip clip = {}) {
  const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
  KS_ASSIGN_OR_RETURN(Descriptor d, make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR));
  KS_SET_ATTR(d, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  KS_SET_ATTR(d, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &precision);
  if (mode == CUDNN_POINTWISE_RELU_FWD) {
    KS_SET_ATTR(d, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP, CUDNN_TYPE_DOUBLE, 1, &clip.lower);
    KS_SET_ATTR(d, CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP, CUDNN_TYPE_DOUBLE, 1, &clip.upper);
    KS_SET_ATTR(d, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE, CUDNN_TYPE_DOUBLE, 1, &clip.slope);
  }
  if (mode == CUDNN_POINTWISE_SWISH_FWD) {
    const double beta = 1.0;  // x * sigmoid(beta * x)
    KS_SET_ATTR(d, CUDNN_ATTR_POINTWISE_SWISH_BETA, CUDNN_TYPE_DOUBLE, 1, &beta);
  }
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(d.get()));
  return d;
}

// y = op(x) or op(x, b).
StatusOr<Descriptor> pointwise_op(cudnnBackendDescriptor_t op, cudnnBackendDescriptor_t x,
                                  cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t y) {
  KS_ASSIGN_OR_RETURN(Descriptor d, make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR));
  KS_SET_ATTR(d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
              &op);
  KS_SET_ATTR(d, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
  if (b != nullptr) {
    KS_SET_ATTR(d, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
  }
  KS_SET_ATTR(d, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(d.get()));
  return d;
}

// How the activation is written: "std" (one pointwise operation, or none), and for Silu "swish"
// (SWISH_FWD) or, should no engine take that, "sigmul" (x * SIGMOID_FWD(x)).
std::vector<std::string> forms_of(const FusedConvProblem& p) {
  if (p.activation == Activation::kSilu) return {"swish", "sigmul"};
  return {"std"};
}

// An operation graph and everything it references, kept alive together.
struct OpGraph {
  std::vector<Descriptor> parts;
  Descriptor graph;
};

StatusOr<OpGraph> build_op_graph(const FusedConvProblem& p, const std::string& form,
                                 cudnnHandle_t handle) {
  const cudnnDataType_t io = p.float16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
  OpGraph g;
  std::vector<cudnnBackendDescriptor_t> ops;
  auto keep = [&g](Descriptor d) {
    g.parts.push_back(std::move(d));
    return g.parts.back().get();
  };

  KS_ASSIGN_OR_RETURN(Descriptor x_desc, tensor(kX, io, p.x, false));
  KS_ASSIGN_OR_RETURN(Descriptor w_desc, tensor(kW, io, p.w, false));
  KS_ASSIGN_OR_RETURN(Descriptor y_desc, tensor(kY, io, p.y, false));
  cudnnBackendDescriptor_t x = keep(std::move(x_desc)), w = keep(std::move(w_desc)),
                           y = keep(std::move(y_desc));

  // Every operation writes a virtual float tensor, except the last, which writes y.
  const int activation_ops = p.activation == Activation::kNone ? 0 : (form == "sigmul" ? 2 : 1);
  int ops_left = 1 + (p.bias ? 1 : 0) + activation_ops + (p.residual ? 1 : 0);
  int64_t next_uid = kFirstVirtual;
  auto next_output = [&]() -> StatusOr<cudnnBackendDescriptor_t> {
    if (--ops_left == 0) return y;
    KS_ASSIGN_OR_RETURN(Descriptor v, tensor(next_uid++, CUDNN_DATA_FLOAT, p.y, true));
    return keep(std::move(v));
  };
  auto add_pointwise = [&](cudnnPointwiseMode_t mode, ReluClip clip, cudnnBackendDescriptor_t in,
                           cudnnBackendDescriptor_t b) -> StatusOr<cudnnBackendDescriptor_t> {
    KS_ASSIGN_OR_RETURN(Descriptor op_desc, pointwise(mode, clip));
    cudnnBackendDescriptor_t op = keep(std::move(op_desc));
    KS_ASSIGN_OR_RETURN(cudnnBackendDescriptor_t out, next_output());
    KS_ASSIGN_OR_RETURN(Descriptor node, pointwise_op(op, in, b, out));
    ops.push_back(keep(std::move(node)));
    return out;
  };

  // The convolution: float accumulation, cross-correlation like ONNX.
  KS_ASSIGN_OR_RETURN(Descriptor conv_desc, make(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR));
  {
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const int64_t spatial = 2;
    KS_SET_ATTR(conv_desc, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    KS_SET_ATTR(conv_desc, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    KS_SET_ATTR(conv_desc, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial);
    KS_SET_ATTR(conv_desc, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, p.pad);
    KS_SET_ATTR(conv_desc, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, p.pad);
    KS_SET_ATTR(conv_desc, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, p.dilation);
    KS_SET_ATTR(conv_desc, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, p.stride);
    KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(conv_desc.get()));
  }
  cudnnBackendDescriptor_t conv = keep(std::move(conv_desc));
  KS_ASSIGN_OR_RETURN(cudnnBackendDescriptor_t current, next_output());
  {
    const float alpha = 1.f, beta = 0.f;
    KS_ASSIGN_OR_RETURN(Descriptor op,
                        make(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR));
    KS_SET_ATTR(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &x);
    KS_SET_ATTR(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &w);
    KS_SET_ATTR(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &current);
    KS_SET_ATTR(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv);
    KS_SET_ATTR(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
    KS_SET_ATTR(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
    KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(op.get()));
    ops.push_back(keep(std::move(op)));
  }

  // + bias, broadcast over N, H, W: a [1, K, 1, 1] tensor with channels-last strides.
  if (p.bias) {
    const int64_t bias_dims[4] = {1, p.y[1], 1, 1};
    KS_ASSIGN_OR_RETURN(Descriptor b_desc, tensor(kBias, io, bias_dims, false));
    cudnnBackendDescriptor_t b = keep(std::move(b_desc));
    KS_ASSIGN_OR_RETURN(current, add_pointwise(CUDNN_POINTWISE_ADD, {}, current, b));
  }

  switch (p.activation) {
    case Activation::kNone:
      break;
    case Activation::kRelu: {
      KS_ASSIGN_OR_RETURN(current, add_pointwise(CUDNN_POINTWISE_RELU_FWD, {}, current, nullptr));
      break;
    }
    case Activation::kLeakyRelu: {
      ReluClip clip;
      clip.slope = p.alpha;
      KS_ASSIGN_OR_RETURN(current, add_pointwise(CUDNN_POINTWISE_RELU_FWD, clip, current, nullptr));
      break;
    }
    case Activation::kClip: {  // Clip(0, hi): fused_conv_graph_unsupported refuses other bounds
      ReluClip clip;
      clip.upper = p.beta;
      KS_ASSIGN_OR_RETURN(current, add_pointwise(CUDNN_POINTWISE_RELU_FWD, clip, current, nullptr));
      break;
    }
    case Activation::kSigmoid: {
      KS_ASSIGN_OR_RETURN(current,
                          add_pointwise(CUDNN_POINTWISE_SIGMOID_FWD, {}, current, nullptr));
      break;
    }
    case Activation::kSilu: {
      if (form == "sigmul") {
        KS_ASSIGN_OR_RETURN(cudnnBackendDescriptor_t gate,
                            add_pointwise(CUDNN_POINTWISE_SIGMOID_FWD, {}, current, nullptr));
        KS_ASSIGN_OR_RETURN(current, add_pointwise(CUDNN_POINTWISE_MUL, {}, current, gate));
      } else {
        KS_ASSIGN_OR_RETURN(current,
                            add_pointwise(CUDNN_POINTWISE_SWISH_FWD, {}, current, nullptr));
      }
      break;
    }
    default:
      return unimplemented("no cuDNN pointwise form for activation {}",
                           static_cast<int>(p.activation));
  }

  // + residual, after the activation (FusedConv's order).
  if (p.residual) {
    KS_ASSIGN_OR_RETURN(Descriptor z_desc, tensor(kResidual, io, p.y, false));
    cudnnBackendDescriptor_t z = keep(std::move(z_desc));
    KS_ASSIGN_OR_RETURN(current, add_pointwise(CUDNN_POINTWISE_ADD, {}, current, z));
  }
  if (current != y || ops_left != 0) return internal_error("fused convolution graph miswired");

  KS_ASSIGN_OR_RETURN(g.graph, make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR));
  KS_SET_ATTR(g.graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
              static_cast<int64_t>(ops.size()), ops.data());
  KS_SET_ATTR(g.graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(g.graph.get()));
  return g;
}

const char* mode_name(cudnnBackendHeurMode_t mode) {
  return mode == CUDNN_HEUR_MODE_A ? "a" : "fallback";
}

// The engine configurations cuDNN's heuristics propose for the graph, best first (at most
// kMaxConfigs). `keep` receives the heuristics descriptor, which stays alive with the plans.
StatusOr<std::vector<Descriptor>> heuristics(cudnnBackendDescriptor_t graph,
                                             cudnnBackendHeurMode_t mode,
                                             std::vector<Descriptor>& keep) {
  KS_ASSIGN_OR_RETURN(Descriptor heur, make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR));
  KS_SET_ATTR(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
              &graph);
  KS_SET_ATTR(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(heur.get()));
  int64_t available = 0;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &available,
                                                    nullptr));
  const int64_t wanted = std::clamp<int64_t>(available, 0, kMaxConfigs);
  std::vector<Descriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < wanted; ++i) {
    KS_ASSIGN_OR_RETURN(Descriptor c, make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(c.get());
    configs.push_back(std::move(c));
  }
  if (wanted > 0) {
    int64_t returned = 0;
    KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                      CUDNN_TYPE_BACKEND_DESCRIPTOR, wanted,
                                                      &returned, raw.data()));
    configs.resize(static_cast<size_t>(std::clamp<int64_t>(returned, 0, wanted)));
  }
  keep.push_back(std::move(heur));
  return configs;
}

// An engine configuration's knob choices, "_k<type>=<value>" each, sorted by type.
StatusOr<std::string> knob_tag(cudnnBackendDescriptor_t config) {
  constexpr int64_t kMaxKnobs = CUDNN_KNOB_TYPE_COUNTS;
  std::vector<Descriptor> knobs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < kMaxKnobs; ++i) {
    KS_ASSIGN_OR_RETURN(Descriptor k, make(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR));
    raw.push_back(k.get());
    knobs.push_back(std::move(k));
  }
  int64_t knob_count = 0;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES,
                                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, kMaxKnobs,
                                                    &knob_count, raw.data()));
  std::vector<std::pair<int64_t, int64_t>> choices;
  for (int64_t i = 0; i < std::clamp<int64_t>(knob_count, 0, kMaxKnobs); ++i) {
    cudnnBackendKnobType_t type = CUDNN_KNOB_TYPE_COUNTS;
    int64_t value = 0, count = 0;
    KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(raw[static_cast<size_t>(i)],
                                                      CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE,
                                                      CUDNN_TYPE_KNOB_TYPE, 1, &count, &type));
    KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(raw[static_cast<size_t>(i)],
                                                      CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE,
                                                      CUDNN_TYPE_INT64, 1, &count, &value));
    choices.emplace_back(static_cast<int64_t>(type), value);
  }
  std::sort(choices.begin(), choices.end());
  std::string tag;
  for (const auto& [type, value] : choices) tag += fmt::format("_k{}={}", type, value);
  return tag;
}

// What the tuning cache records of an engine configuration, and whether its numerics are below
// the legacy path's (float accumulation).
struct EngineInfo {
  std::string tag;  // "eng<global index>" and its knob choices "_k<type>=<value>", sorted
  bool reduced_precision = false;
};

StatusOr<EngineInfo> describe_engine(cudnnBackendDescriptor_t config) {
  KS_ASSIGN_OR_RETURN(Descriptor engine_desc, make(CUDNN_BACKEND_ENGINE_DESCRIPTOR));
  cudnnBackendDescriptor_t engine = engine_desc.get();
  int64_t count = 0;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(
      config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &count, &engine));
  int64_t index = -1;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX,
                                                    CUDNN_TYPE_INT64, 1, &count, &index));
  EngineInfo info;
  info.tag = fmt::format("eng{}", index);

  // Notes cuDNN cannot give are taken as none.
  cudnnBackendNumericalNote_t notes[32] = {};
  int64_t note_count = 0;
  if (cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               32, &note_count, notes) != CUDNN_STATUS_SUCCESS) {
    note_count = 0;
  }
  for (int64_t i = 0; i < std::clamp<int64_t>(note_count, 0, 32); ++i) {
    if (notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION) info.reduced_precision = true;
  }

  // The knobs only tell configurations of one engine apart: without them, "_k?".
  StatusOr<std::string> knobs = knob_tag(config);
  info.tag += knobs.ok() ? *knobs : std::string("_k?");
  return info;
}

// An execution plan of `config` on the handle, and the workspace it needs.
StatusOr<Descriptor> build_plan(cudnnHandle_t handle, cudnnBackendDescriptor_t config,
                                int64_t& workspace) {
  KS_ASSIGN_OR_RETURN(Descriptor plan, make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR));
  KS_SET_ATTR(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  KS_SET_ATTR(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
              &config);
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(plan.get()));
  int64_t count = 0;
  workspace = 0;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(plan.get(),
                                                    CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                    CUDNN_TYPE_INT64, 1, &count, &workspace));
  return plan;
}

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kAlignment == 0; }

}  // namespace

struct FusedConvGraph::Impl {
  struct Plan {
    Descriptor plan;
    size_t workspace = 0;
    std::string choice;
  };
  DeviceHandle* device = nullptr;
  bool bias = false, residual = false;
  // What the plans were built from (operation graph, tensors, operations, heuristics, engine
  // configurations), kept alive as long as they are; destroyed after them.
  std::vector<Descriptor> parts;
  std::vector<Plan> plans;
  std::string why_empty;
};

std::string fused_conv_graph_unsupported(const FusedConvProblem& p) {
  for (int i = 0; i < 4; ++i) {
    if (p.x[i] <= 0 || p.w[i] <= 0 || p.y[i] <= 0) return "an empty tensor";
  }
  if (p.x[1] != p.w[1]) return "a grouped convolution";
  if (p.w[0] != p.y[1] || p.x[0] != p.y[0]) return "inconsistent shapes";
  switch (p.activation) {
    case Activation::kNone:
    case Activation::kRelu:
    case Activation::kSigmoid:
    case Activation::kSilu:
      return "";
    case Activation::kLeakyRelu:
      if (std::isfinite(p.alpha) && p.alpha >= 0.f && p.alpha <= 1.f) return "";
      return "LeakyRelu with a slope outside [0, 1]";
    case Activation::kClip:
      if (p.alpha == 0.f && std::isfinite(p.beta) && p.beta > 0.f) return "";
      return "Clip with bounds other than [0, hi]";
    default:
      return "an activation with no cuDNN pointwise form (HardSigmoid, HardSwish)";
  }
}

bool fused_conv_buffers_aligned(const FusedConvProblem& p, const FusedConvBuffers& b) {
  return aligned(b.x) && aligned(b.w) && aligned(b.y) && (!p.bias || aligned(b.bias)) &&
         (!p.residual || aligned(b.residual));
}

FusedConvGraph::FusedConvGraph(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FusedConvGraph::~FusedConvGraph() = default;

size_t FusedConvGraph::size() const { return impl_->plans.size(); }
const std::string& FusedConvGraph::why_empty() const { return impl_->why_empty; }
size_t FusedConvGraph::workspace(size_t i) const { return impl_->plans.at(i).workspace; }
const std::string& FusedConvGraph::choice(size_t i) const { return impl_->plans.at(i).choice; }

void FusedConvGraph::keep_only(size_t i) {
  if (i >= impl_->plans.size()) return;
  Impl::Plan kept = std::move(impl_->plans[i]);
  impl_->plans.clear();
  impl_->plans.push_back(std::move(kept));
}

StatusOr<std::unique_ptr<FusedConvGraph>> FusedConvGraph::create(const FusedConvProblem& p,
                                                                 size_t max_plans,
                                                                 size_t max_workspace) {
  if (const std::string why = fused_conv_graph_unsupported(p); !why.empty()) {
    return unimplemented("no fused cuDNN graph for {}", why);
  }
  KS_ASSIGN_OR_RETURN(DeviceHandle * device, device_handle());
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  impl->bias = p.bias;
  impl->residual = p.residual;
  std::lock_guard<std::mutex> lock(device->mutex);
  std::string why = "cuDNN's heuristics proposed no engine";
  for (const std::string& form : forms_of(p)) {
    StatusOr<OpGraph> graph = build_op_graph(p, form, device->handle);
    if (!graph.ok()) {
      why = fmt::format("{} graph: {} {}", form, graph.status().to_string(), last_cudnn_error());
      continue;
    }
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      StatusOr<std::vector<Descriptor>> configs = heuristics(graph->graph.get(), mode, impl->parts);
      if (!configs.ok()) {
        why = fmt::format("{} graph, heuristics {}: {} {}", form, mode_name(mode),
                          configs.status().to_string(), last_cudnn_error());
        continue;
      }
      for (size_t i = 0; i < configs->size() && i < kMaxAttempts && impl->plans.size() < max_plans;
           ++i) {
        cudnnBackendDescriptor_t config = (*configs)[i].get();
        StatusOr<EngineInfo> info = describe_engine(config);
        if (!info.ok()) {
          why = fmt::format("{} graph, engine {}: {}", form, i, info.status().to_string());
          continue;
        }
        if (info->reduced_precision) {
          why = fmt::format("{} graph, {}: reduced-precision accumulation", form, info->tag);
          continue;
        }
        int64_t workspace = 0;
        StatusOr<Descriptor> plan = build_plan(device->handle, config, workspace);
        if (!plan.ok()) {
          why = fmt::format("{} graph, {}: {} {}", form, info->tag, plan.status().to_string(),
                            last_cudnn_error());
          continue;
        }
        if (workspace < 0 || static_cast<size_t>(workspace) > max_workspace) {
          why = fmt::format("{} graph, {}: workspace of {} bytes", form, info->tag, workspace);
          continue;
        }
        impl->plans.push_back(
            {std::move(plan).value(), static_cast<size_t>(workspace),
             fmt::format("graph {} {} {} {}", form, mode_name(mode), i, info->tag)});
      }
      for (Descriptor& c : *configs) impl->parts.push_back(std::move(c));
      if (!impl->plans.empty()) break;
    }
    for (Descriptor& d : graph->parts) impl->parts.push_back(std::move(d));
    impl->parts.push_back(std::move(graph->graph));
    if (!impl->plans.empty()) break;
  }
  if (impl->plans.empty()) impl->why_empty = why;
  return std::unique_ptr<FusedConvGraph>(new FusedConvGraph(std::move(impl)));
}

StatusOr<std::unique_ptr<FusedConvGraph>> FusedConvGraph::from_choice(const FusedConvProblem& p,
                                                                      const std::string& choice,
                                                                      size_t max_workspace) {
  if (const std::string why = fused_conv_graph_unsupported(p); !why.empty()) {
    return unimplemented("no fused cuDNN graph for {}", why);
  }
  std::istringstream in(choice);
  std::string word, form, mode_word, tag;
  int64_t index = -1;
  in >> word >> form >> mode_word >> index >> tag;
  const std::vector<std::string> forms = forms_of(p);
  if (!in || word != "graph" || std::find(forms.begin(), forms.end(), form) == forms.end() ||
      (mode_word != "a" && mode_word != "fallback") || index < 0 || tag.empty()) {
    return invalid_argument("'{}' is not a fused convolution graph choice for this problem",
                            choice);
  }
  const cudnnBackendHeurMode_t mode =
      mode_word == "a" ? CUDNN_HEUR_MODE_A : CUDNN_HEUR_MODE_FALLBACK;
  KS_ASSIGN_OR_RETURN(DeviceHandle * device, device_handle());
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  impl->bias = p.bias;
  impl->residual = p.residual;
  std::lock_guard<std::mutex> lock(device->mutex);
  KS_ASSIGN_OR_RETURN(OpGraph graph, build_op_graph(p, form, device->handle));
  KS_ASSIGN_OR_RETURN(std::vector<Descriptor> configs,
                      heuristics(graph.graph.get(), mode, impl->parts));
  // The recorded position first (the heuristics are deterministic for one cuDNN and device), then
  // anywhere in the list: the engine and its knobs are what must match.
  std::vector<size_t> order;
  if (static_cast<size_t>(index) < configs.size()) order.push_back(static_cast<size_t>(index));
  for (size_t i = 0; i < configs.size(); ++i) {
    if (i != static_cast<size_t>(index)) order.push_back(i);
  }
  std::string why = fmt::format("cuDNN no longer proposes {}", tag);
  for (size_t i : order) {
    StatusOr<EngineInfo> info = describe_engine(configs[i].get());
    if (!info.ok() || info->tag != tag) continue;
    int64_t workspace = 0;
    StatusOr<Descriptor> plan = build_plan(device->handle, configs[i].get(), workspace);
    if (!plan.ok()) {
      why = fmt::format("{}: {} {}", tag, plan.status().to_string(), last_cudnn_error());
      break;
    }
    if (workspace < 0 || static_cast<size_t>(workspace) > max_workspace) {
      why = fmt::format("{}: workspace of {} bytes", tag, workspace);
      break;
    }
    impl->plans.push_back({std::move(plan).value(), static_cast<size_t>(workspace), choice});
    break;
  }
  for (Descriptor& c : configs) impl->parts.push_back(std::move(c));
  for (Descriptor& d : graph.parts) impl->parts.push_back(std::move(d));
  impl->parts.push_back(std::move(graph.graph));
  if (impl->plans.empty()) return not_found("fused convolution graph '{}': {}", choice, why);
  return std::unique_ptr<FusedConvGraph>(new FusedConvGraph(std::move(impl)));
}

StatusOr<std::unique_ptr<FusedConvGraph>> FusedConvGraph::from_serialized(const FusedConvProblem& p,
                                                                          const std::string& choice,
                                                                          const std::string& text,
                                                                          size_t max_workspace) {
  if (const std::string why = fused_conv_graph_unsupported(p); !why.empty()) {
    return unimplemented("no fused cuDNN graph for {}", why);
  }
  if (text.empty()) return invalid_argument("fused convolution graph '{}': no plan text", choice);
  KS_ASSIGN_OR_RETURN(DeviceHandle * device, device_handle());
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  impl->bias = p.bias;
  impl->residual = p.residual;
  std::lock_guard<std::mutex> lock(device->mutex);
  KS_ASSIGN_OR_RETURN(Descriptor plan, make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR));
  cudnnHandle_t handle = device->handle;
  KS_SET_ATTR(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  KS_SET_ATTR(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
              static_cast<int64_t>(text.size()), text.data());
  if (cudnnStatus_t st = cudnnBackendFinalize(plan.get()); st != CUDNN_STATUS_SUCCESS) {
    return cudnn_status(st, "cudnnBackendFinalize(serialized execution plan)", __FILE__, __LINE__)
        .with_context(last_cudnn_error());
  }
  int64_t count = 0, workspace = 0;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(plan.get(),
                                                    CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                    CUDNN_TYPE_INT64, 1, &count, &workspace));
  if (workspace < 0 || static_cast<size_t>(workspace) > max_workspace) {
    return invalid_argument("fused convolution graph '{}': workspace of {} bytes", choice,
                            workspace);
  }
  impl->plans.push_back({std::move(plan), static_cast<size_t>(workspace), choice});
  return std::unique_ptr<FusedConvGraph>(new FusedConvGraph(std::move(impl)));
}

StatusOr<std::string> FusedConvGraph::serialize(size_t i) const {
  if (i >= impl_->plans.size())
    return internal_error("fused convolution plan {} does not exist", i);
  std::lock_guard<std::mutex> lock(impl_->device->mutex);
  cudnnBackendDescriptor_t plan = impl_->plans[i].plan.get();
  int64_t size = 0;
  if (cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                               0, &size, nullptr) != CUDNN_STATUS_SUCCESS ||
      size <= 0) {
    return unimplemented("cuDNN cannot serialize plan {} {}", impl_->plans[i].choice,
                         last_cudnn_error());
  }
  std::string text(static_cast<size_t>(size), '\0');
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(plan,
                                                    CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION,
                                                    CUDNN_TYPE_CHAR, size, &size, text.data()));
  text.resize(static_cast<size_t>(std::max<int64_t>(size, 0)));
  while (!text.empty() && text.back() == '\0') text.pop_back();  // C string terminator
  return text;
}

Status FusedConvGraph::execute(size_t i, const FusedConvBuffers& b, void* workspace,
                               cudaStream_t stream) const {
  if (i >= impl_->plans.size())
    return internal_error("fused convolution plan {} does not exist", i);
  if (b.x == nullptr || b.w == nullptr || b.y == nullptr || (impl_->bias && b.bias == nullptr) ||
      (impl_->residual && b.residual == nullptr)) {
    return internal_error("fused convolution: a buffer is missing");
  }
  if (impl_->plans[i].workspace > 0 && workspace == nullptr) {
    return internal_error("fused convolution: the workspace is missing");
  }
  // cuDNN's variant pack takes non-const pointers; it only reads the inputs.
  std::vector<int64_t> uids = {kX, kW, kY};
  std::vector<void*> pointers = {const_cast<void*>(b.x), const_cast<void*>(b.w), b.y};
  if (impl_->bias) {
    uids.push_back(kBias);
    pointers.push_back(const_cast<void*>(b.bias));
  }
  if (impl_->residual) {
    uids.push_back(kResidual);
    pointers.push_back(const_cast<void*>(b.residual));
  }
  KS_ASSIGN_OR_RETURN(Descriptor pack, make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR));
  KS_SET_ATTR(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
              static_cast<int64_t>(uids.size()), uids.data());
  KS_SET_ATTR(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
              static_cast<int64_t>(pointers.size()), pointers.data());
  KS_SET_ATTR(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendFinalize(pack.get()));
  std::lock_guard<std::mutex> lock(impl_->device->mutex);
  KS_CUDNN_RETURN_IF_ERROR(cudnnSetStream(impl_->device->handle, stream));
  KS_CUDNN_RETURN_IF_ERROR(
      cudnnBackendExecute(impl_->device->handle, impl_->plans[i].plan.get(), pack.get()));
  return Status();
}

Status FusedConvGraph::check_capture(size_t i, const FusedConvBuffers& b, void* workspace) const {
  cudaStream_t stream = nullptr;
  KS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::unique_ptr<CUstream_st, decltype(&cudaStreamDestroy)> stream_guard(stream,
                                                                          &cudaStreamDestroy);
  KS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const Status executed = execute(i, b, workspace, stream);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  std::unique_ptr<CUgraph_st, decltype(&cudaGraphDestroy)> graph_guard(graph, &cudaGraphDestroy);
  if (!executed.ok() || ended != cudaSuccess) {
    (void)cudaGetLastError();  // a refused capture is not sticky: leave no error behind
    if (!executed.ok()) return executed.with_context("while recording a CUDA graph");
    return cuda_status(ended, "cudaStreamEndCapture", __FILE__, __LINE__);
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  if (exec != nullptr) cudaGraphExecDestroy(exec);
  if (made != cudaSuccess) {
    (void)cudaGetLastError();
    return cuda_status(made, "cudaGraphInstantiate", __FILE__, __LINE__);
  }
  return Status();
}

}  // namespace kestrel::runtime::cuda

#undef KS_SET_ATTR
