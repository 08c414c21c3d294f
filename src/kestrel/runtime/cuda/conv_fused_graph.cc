// FusedConvGraph (conv_fused_graph.h): convolution + bias + activation + residual as one cuDNN
// operation graph, built with the backend API's plain C calls (cudnnBackendCreateDescriptor,
// SetAttribute, Finalize). Every descriptor has an owner (Descriptor), every cuDNN call's status
// becomes a Status naming the call.
#include "kestrel/runtime/cuda/conv_fused_graph.h"

#include <cudnn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>
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
  int device = 0;
  // Handles on which create() compiles candidate plans on threads of their own, one thread each,
  // only while `mutex` is held; made on first use (compile_helpers).
  std::vector<cudnnHandle_t> helpers;
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
    fresh->device = device;
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

// A finalized plan as cuDNN's JSON, which holds its compiled kernel. UNIMPLEMENTED when cuDNN
// cannot serialize the plan's engine.
StatusOr<std::string> plan_json(cudnnBackendDescriptor_t plan) {
  int64_t size = 0;
  if (cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                               0, &size, nullptr) != CUDNN_STATUS_SUCCESS ||
      size <= 0) {
    return unimplemented("cuDNN cannot serialize the plan {}", last_cudnn_error());
  }
  std::string text(static_cast<size_t>(size), '\0');
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(plan,
                                                    CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION,
                                                    CUDNN_TYPE_CHAR, size, &size, text.data()));
  text.resize(static_cast<size_t>(std::max<int64_t>(size, 0)));
  while (!text.empty() && text.back() == '\0') text.pop_back();  // C string terminator
  return text;
}

// The plan plan_json wrote, on `handle`, without compiling, and the workspace it needs.
StatusOr<Descriptor> plan_from_json(cudnnHandle_t handle, const std::string& text,
                                    int64_t& workspace) {
  KS_ASSIGN_OR_RETURN(Descriptor plan, make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR));
  KS_SET_ATTR(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  KS_SET_ATTR(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
              static_cast<int64_t>(text.size()), text.data());
  if (cudnnStatus_t st = cudnnBackendFinalize(plan.get()); st != CUDNN_STATUS_SUCCESS) {
    return cudnn_status(st, "cudnnBackendFinalize(serialized execution plan)", __FILE__, __LINE__)
        .with_context(last_cudnn_error());
  }
  int64_t count = 0;
  workspace = 0;
  KS_CUDNN_RETURN_IF_ERROR(cudnnBackendGetAttribute(plan.get(),
                                                    CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                    CUDNN_TYPE_INT64, 1, &count, &workspace));
  return plan;
}

// Up to `wanted` helper handles of the device (fewer when cuDNN refuses more). Called with
// device.mutex held.
size_t compile_helpers(DeviceHandle& device, size_t wanted) {
  while (device.helpers.size() < wanted) {
    cudnnHandle_t h = nullptr;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) break;
    device.helpers.push_back(h);
  }
  return std::min(wanted, device.helpers.size());
}

// What a helper thread made of one engine configuration: the plan's JSON (compiled kernel
// included), or why the configuration gave no plan (`finalize_failed`: cuDNN refused it; else the
// helper could not do the work, and the caller compiles it itself).
struct CompiledElsewhere {
  StatusOr<std::string> json = internal_error("not compiled");
  bool finalize_failed = false;
};

// Builds problem `p` in `form` again on `handle` (a helper's, on the device `device`), asks the
// heuristics `mode`, and compiles configuration `index` if it is still the engine `tag`
// (heuristics are deterministic for one cuDNN and device). Runs on a thread of its own.
CompiledElsewhere compile_elsewhere(int device, cudnnHandle_t handle, const FusedConvProblem& p,
                                    const std::string& form, cudnnBackendHeurMode_t mode,
                                    size_t index, const std::string& tag) {
  CompiledElsewhere result;
  auto work = [&]() -> StatusOr<std::string> {
    KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
    KS_ASSIGN_OR_RETURN(OpGraph graph, build_op_graph(p, form, handle));
    std::vector<Descriptor> heuristics_kept;
    KS_ASSIGN_OR_RETURN(std::vector<Descriptor> configs,
                        heuristics(graph.graph.get(), mode, heuristics_kept));
    if (index >= configs.size()) return not_found("the heuristics returned fewer engines");
    KS_ASSIGN_OR_RETURN(EngineInfo info, describe_engine(configs[index].get()));
    if (info.tag != tag) return not_found("the heuristics proposed {}, not {}", info.tag, tag);
    int64_t workspace = 0;
    StatusOr<Descriptor> plan = build_plan(handle, configs[index].get(), workspace);
    if (!plan.ok()) {
      result.finalize_failed = true;
      return plan.status().with_context(last_cudnn_error());
    }
    return plan_json(plan->get());
  };
  result.json = work();
  return result;
}

// The problem as text: every field, for keying precompiled plans.
std::string problem_key(const FusedConvProblem& p) {
  return fmt::format("{} x{} w{} y{} pad{} stride{} dil{} bias{} residual{} act{} {} {}",
                     p.float16 ? "half" : "float", fmt::join(p.x, ","), fmt::join(p.w, ","),
                     fmt::join(p.y, ","), fmt::join(p.pad, ","), fmt::join(p.stride, ","),
                     fmt::join(p.dilation, ","), p.bias ? 1 : 0, p.residual ? 1 : 0,
                     static_cast<int>(p.activation), p.alpha, p.beta);
}

// A candidate plan's name among a problem's precompiled ones.
std::string candidate_key(const std::string& form, cudnnBackendHeurMode_t mode, size_t index,
                          const std::string& tag) {
  return fmt::format("{} {} {} {}", form, mode_name(mode), index, tag);
}

// Candidate plans compiled ahead of create() (FusedConvGraph::precompile) by a pool of threads,
// each with a cuDNN handle of its own: the convolutions of a forward pass compile side by side
// instead of one after another as the first run reaches them. create() takes a problem's results
// (waiting while they are being compiled) and compiles only what is missing.
class Precompiler {
 public:
  using Results = std::map<std::string, CompiledElsewhere>;  // by candidate_key

  // The device's pool, started on first use and never destroyed: its threads wait for work
  // until the process exits. At exit, queued work is dropped and the compilations in progress are
  // waited for, so that no thread is inside cuDNN while the CUDA runtime is torn down.
  static Precompiler& of(int device) {
    static std::mutex mutex;
    static auto* pools = new std::map<int, std::unique_ptr<Precompiler>>();
    std::lock_guard<std::mutex> lock(mutex);
    std::unique_ptr<Precompiler>& slot = (*pools)[device];
    if (!slot) {
      slot.reset(new Precompiler(device));
      // Registered after CUDA started (a device exists), so it runs before CUDA's own teardown.
      static const bool registered = std::atexit([] {
                                       std::lock_guard<std::mutex> l(mutex);
                                       for (auto& [d, pool] : *pools) pool->stop();
                                     }) == 0;
      (void)registered;
    }
    return *slot;
  }

  void submit(const FusedConvProblem& p, size_t max_plans) {
    const std::string key = problem_key(p);
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || entries_.count(key)) return;  // queued, compiling, or compiled, not taken
    if (threads_ < max_threads_) {
      try {
        std::thread([this] { work(); }).detach();
        ++threads_;
      } catch (const std::system_error&) {
        if (threads_ == 0) return;  // no pool: create() compiles everything itself
      }
    }
    entries_[key];
    queue_.push_back({key, p, max_plans});
    cv_.notify_all();
  }

  // The results for `p`, removed from the pool; nullopt when it was never submitted (or was
  // taken already). Waits while it is queued or compiling.
  std::optional<Results> take(const FusedConvProblem& p) {
    const std::string key = problem_key(p);
    std::unique_lock<std::mutex> lock(mutex_);
    if (!entries_.count(key)) return std::nullopt;
    // Another create() of the same problem (another engine with the same layer) may take the
    // results first: then this one compiles by itself.
    cv_.wait(lock, [&] {
      auto it = entries_.find(key);
      return it == entries_.end() || it->second.done;
    });
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    Results results = std::move(it->second.results);
    entries_.erase(it);
    return results;
  }

  // Drops the queued work and waits for the compilations in progress (at exit).
  void stop() {
    std::unique_lock<std::mutex> lock(mutex_);
    stopping_ = true;
    for (const Task& task : queue_) entries_.erase(task.key);
    queue_.clear();
    cv_.notify_all();
    cv_.wait(lock, [&] { return busy_ == 0; });
  }

 private:
  struct Task {
    std::string key;
    FusedConvProblem problem;
    size_t max_plans = 0;
  };
  struct Entry {
    bool done = false;
    Results results;
  };

  explicit Precompiler(int device) : device_(device) {
    // Half the cores: the thread that measures the chosen kernels keeps a core to itself.
    max_threads_ = std::clamp<size_t>(std::thread::hardware_concurrency() / 2, 1, 8);
  }

  // A pool thread: compiles queued problems on its own handle.
  void work() {
    cudnnHandle_t handle = nullptr;
    const bool ready = cudaSetDevice(device_) == cudaSuccess &&
                       cudnnCreate(&handle) == CUDNN_STATUS_SUCCESS;  // kept until the end
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (stopping_) return;
      Task task = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
      lock.unlock();
      Results results;
      if (ready) results = compile_candidates(handle, task.problem, task.max_plans);
      lock.lock();
      --busy_;
      Entry& entry = entries_[task.key];
      entry.results = std::move(results);
      entry.done = true;
      cv_.notify_all();
    }
  }

  // What create() would compile for `p`, in its order: the heuristics' candidates of each form
  // and mode until `max_plans` finalize.
  Results compile_candidates(cudnnHandle_t handle, const FusedConvProblem& p, size_t max_plans) {
    Results results;
    size_t finalized = 0;
    for (const std::string& form : forms_of(p)) {
      StatusOr<OpGraph> graph = build_op_graph(p, form, handle);
      if (!graph.ok()) continue;
      for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
        std::vector<Descriptor> heuristics_kept;
        StatusOr<std::vector<Descriptor>> configs =
            heuristics(graph->graph.get(), mode, heuristics_kept);
        if (!configs.ok()) continue;
        for (size_t i = 0; i < configs->size() && i < kMaxAttempts && finalized < max_plans; ++i) {
          StatusOr<EngineInfo> info = describe_engine((*configs)[i].get());
          if (!info.ok() || info->reduced_precision) continue;
          CompiledElsewhere& compiled = results[candidate_key(form, mode, i, info->tag)];
          int64_t workspace = 0;
          StatusOr<Descriptor> plan = build_plan(handle, (*configs)[i].get(), workspace);
          if (!plan.ok()) {
            compiled.finalize_failed = true;
            compiled.json = plan.status().with_context(last_cudnn_error());
            continue;
          }
          compiled.json = plan_json(plan->get());
          ++finalized;
        }
        if (finalized > 0) break;
      }
      if (finalized > 0) break;
    }
    return results;
  }

  const int device_;
  size_t max_threads_ = 1;
  std::mutex mutex_;
  std::condition_variable cv_;  // work queued, or a problem done
  std::deque<Task> queue_;
  std::map<std::string, Entry> entries_;  // by problem_key
  size_t threads_ = 0;
  size_t busy_ = 0;        // tasks being compiled
  bool stopping_ = false;  // the process is exiting
};

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
  // What precompile() compiled of this problem already (waiting for it if it is being compiled).
  const std::optional<Precompiler::Results> precompiled = Precompiler::of(device->device).take(p);
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
      // The candidates, in the heuristics' order.
      std::vector<std::pair<size_t, std::string>> candidates;  // index, engine tag
      for (size_t i = 0; i < configs->size() && i < kMaxAttempts; ++i) {
        StatusOr<EngineInfo> info = describe_engine((*configs)[i].get());
        if (!info.ok()) {
          why = fmt::format("{} graph, engine {}: {}", form, i, info.status().to_string());
        } else if (info->reduced_precision) {
          why = fmt::format("{} graph, {}: reduced-precision accumulation", form, info->tag);
        } else {
          candidates.emplace_back(i, info->tag);
        }
      }
      // Compiling (cuDNN's runtime fusion engines generate and compile a kernel when a plan is
      // finalized) is where building an engine spends its time. A candidate that precompile()
      // compiled is loaded from its JSON. The others are compiled in waves of as many as plans
      // are still wanted, each on a helper thread and handle, and loaded from JSON too. Without
      // helpers, or for a plan a helper could not hand over, the compilation happens here.
      auto is_precompiled = [&](size_t c) {
        return precompiled && precompiled->count(candidate_key(form, mode, candidates[c].first,
                                                               candidates[c].second)) > 0;
      };
      // Candidate `c` as a plan on the device's handle: loaded from what another thread compiled
      // (`compiled`, may be null), else compiled here, unless cuDNN refused it there already.
      auto accept = [&](size_t c, const CompiledElsewhere* compiled) {
        const auto& [i, tag] = candidates[c];
        int64_t workspace = 0;
        StatusOr<Descriptor> plan = internal_error("not compiled");
        if (compiled != nullptr && compiled->json.ok()) {
          plan = plan_from_json(device->handle, *compiled->json, workspace);
        }
        if (compiled != nullptr && compiled->finalize_failed) {
          plan = compiled->json.status();
        } else if (!plan.ok()) {
          plan = build_plan(device->handle, (*configs)[i].get(), workspace);
          if (!plan.ok()) plan = plan.status().with_context(last_cudnn_error());
        }
        if (!plan.ok()) {
          why = fmt::format("{} graph, {}: {}", form, tag, plan.status().to_string());
        } else if (workspace < 0 || static_cast<size_t>(workspace) > max_workspace) {
          why = fmt::format("{} graph, {}: workspace of {} bytes", form, tag, workspace);
        } else {
          impl->plans.push_back({std::move(plan).value(), static_cast<size_t>(workspace),
                                 fmt::format("graph {} {} {} {}", form, mode_name(mode), i, tag)});
        }
      };
      size_t next = 0;
      while (next < candidates.size() && impl->plans.size() < max_plans) {
        if (is_precompiled(next)) {
          const auto& [i, tag] = candidates[next];
          accept(next++, &precompiled->at(candidate_key(form, mode, i, tag)));
          continue;
        }
        // A wave: the candidates from here up to the next precompiled one.
        size_t wave_size = 1;
        while (wave_size < max_plans - impl->plans.size() && next + wave_size < candidates.size() &&
               !is_precompiled(next + wave_size)) {
          ++wave_size;
        }
        const size_t helpers = compile_helpers(*device, wave_size);
        std::vector<CompiledElsewhere> compiled(helpers);
        std::vector<std::thread> threads;
        for (size_t k = 0; k < helpers; ++k) {
          try {
            threads.emplace_back([&, k] {
              compiled[k] =
                  compile_elsewhere(device->device, device->helpers[k], p, form, mode,
                                    candidates[next + k].first, candidates[next + k].second);
            });
          } catch (const std::system_error&) {
            break;  // no thread: the candidates left in this wave compile here
          }
        }
        for (std::thread& t : threads) t.join();
        for (size_t k = 0; k < std::max<size_t>(helpers, 1); ++k) {
          accept(next + k, k < helpers ? &compiled[k] : nullptr);
        }
        next += std::max<size_t>(helpers, 1);
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

void FusedConvGraph::precompile(const FusedConvProblem& p, size_t max_plans) {
  if (!fused_conv_graph_unsupported(p).empty() || max_plans == 0) return;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  Precompiler::of(device).submit(p, max_plans);
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
  int64_t workspace = 0;
  KS_ASSIGN_OR_RETURN(Descriptor plan, plan_from_json(device->handle, text, workspace));
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
  StatusOr<std::string> text = plan_json(impl_->plans[i].plan.get());
  if (!text.ok()) return text.status().with_context(impl_->plans[i].choice);
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
