// A channels-last convolution with its whole epilogue as ONE cuDNN kernel, through cuDNN 9's
// backend (graph) API and its runtime fusion engines:
//
//   y = activation(conv(x, w) + bias) + residual       (bias and residual optional)
//
// is an operation graph (convolution forward -> pointwise add -> activation -> pointwise add) whose
// intermediates are virtual float tensors, so the output is written once instead of being re-read
// and re-written by a separate epilogue pass (conv.cc's legacy path). FusedConvGraph asks cuDNN's
// heuristics for engine configurations, keeps the execution plans that finalize, and runs one of
// them; conv.cc measures them against the legacy path and keeps the fastest.
//
// Every backend object lives on one cuDNN handle per device, created on first use and never
// destroyed, and every use of that handle (building, executing) holds one lock: execution plans are
// tied to the handle they were built with, the handle must not be used by two threads at once, and
// the threads that run kernels come and go (their own handles die with them).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kestrel/base/status.h"
#include "kestrel/runtime/cuda/launch.h"

namespace kestrel::runtime::cuda {

// The problem, in cuDNN's logical dimension order; the memory layout is channels-last (NHWC, and
// weights KRSC). 1-D convolutions come as 2-D ones with height 1.
struct FusedConvProblem {
  bool float16 = true;  // else float32 (which the graph computes with TF32: callers decide)
  int64_t x[4] = {};    // N, C, H, W
  int64_t w[4] = {};    // K, C, R, S
  int64_t y[4] = {};    // N, K, P, Q
  int64_t pad[2] = {}, stride[2] = {1, 1}, dilation[2] = {1, 1};
  bool bias = false;      // a [K] tensor added per output channel
  bool residual = false;  // a tensor of y's shape added after the activation
  Activation activation = Activation::kNone;
  float alpha = 0, beta = 0;  // the activation's parameters (FusedConv's activation_alpha/beta)
};

// "" when the graph can express the problem; else why not (for logs and pinned kernels).
std::string fused_conv_graph_unsupported(const FusedConvProblem& p);

// The device buffers of one run; bias and residual are ignored unless the problem has them. Every
// pointer must be 16-byte aligned (fused_conv_buffers_aligned).
struct FusedConvBuffers {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
};
bool fused_conv_buffers_aligned(const FusedConvProblem& p, const FusedConvBuffers& b);

class FusedConvGraph {
 public:
  // The plans cuDNN's heuristics offer for the problem on the current device, in the heuristics'
  // order: at most `max_plans` that finalize, each needing at most `max_workspace` bytes. No plan
  // is not an error (cuDNN has no engine for this shape): size() is 0 and why_empty() says why.
  // Errors are failures of cuDNN or CUDA themselves.
  static StatusOr<std::unique_ptr<FusedConvGraph>> create(const FusedConvProblem& p,
                                                          size_t max_plans, size_t max_workspace);
  // Starts compiling, on a pool of threads with cuDNN handles of their own, the candidate plans
  // create(p, max_plans, ...) would compile, and returns at once: create() then loads them
  // instead of compiling (waiting for those still being compiled). Engines call it for every
  // convolution of a batch size before its first run (Kernel::prepare), so that the forward
  // pass's kernels compile side by side. Failures are left for create() to find.
  static void precompile(const FusedConvProblem& p, size_t max_plans);
  // The one plan that choice(i) named, built again (an engine file, a rebuild): NOT_FOUND when this
  // cuDNN no longer offers it, INVALID_ARGUMENT for a choice this code did not write.
  static StatusOr<std::unique_ptr<FusedConvGraph>> from_choice(const FusedConvProblem& p,
                                                               const std::string& choice,
                                                               size_t max_workspace);
  // Plan `choice` from serialize()'s text, written by an earlier process with the same cuDNN on
  // the same GPU: no heuristics and no kernel compilation (runtime fusion engines compile their
  // kernel when a plan is finalized, which is what loading an engine spends its time on).
  // An error when cuDNN refuses the text; callers fall back to from_choice.
  static StatusOr<std::unique_ptr<FusedConvGraph>> from_serialized(const FusedConvProblem& p,
                                                                   const std::string& choice,
                                                                   const std::string& text,
                                                                   size_t max_workspace);
  ~FusedConvGraph();
  FusedConvGraph(const FusedConvGraph&) = delete;
  FusedConvGraph& operator=(const FusedConvGraph&) = delete;

  size_t size() const;
  const std::string& why_empty() const;
  // Bytes of device workspace plan i needs.
  size_t workspace(size_t i) const;
  // The tuning cache's encoding of plan i: "graph <form> <heuristics mode> <index> <engine tag>",
  // e.g. "graph swish a 0 eng12_k2=3_k13=1".
  const std::string& choice(size_t i) const;
  // Plan i as cuDNN's JSON representation of an execution plan, which holds the compiled kernel:
  // for from_serialized. UNIMPLEMENTED when cuDNN cannot serialize this plan's engine.
  StatusOr<std::string> serialize(size_t i) const;
  // Drops every plan but plan i (which becomes plan 0).
  void keep_only(size_t i);

  // Queues plan i on `stream`. `workspace`: workspace(i) bytes of device memory (null if 0).
  Status execute(size_t i, const FusedConvBuffers& b, void* workspace, cudaStream_t stream) const;
  // Records plan i into a throwaway CUDA graph (thread-local capture on a stream of its own, as the
  // engine records forward passes) and instantiates it: an error if the plan cannot be captured.
  Status check_capture(size_t i, const FusedConvBuffers& b, void* workspace) const;

 private:
  struct Impl;
  explicit FusedConvGraph(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kestrel::runtime::cuda
