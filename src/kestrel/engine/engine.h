// Engine: a verified graph bound to a backend, ready to run at any batch size.
//
// This is the public C++ API that the CLI, the server and the benchmarks use:
//
//   KS_ASSIGN_OR_RETURN(auto graph, onnx::import_model_file("yolov5n.onnx"));
//   KS_ASSIGN_OR_RETURN(auto engine, Engine::create(std::move(graph), {.backend = "cpu"}));
//   KS_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, engine->run({{"images", image}}));
//
// Each batch size gets execution contexts (see ExecutionContext in engine.cc): an arena planned by
// lifetime, a stream, and on the GPU a CUDA graph recorded on first use, so a steady-state run is
// a few copies and one graph launch. Graphs with data-dependent shapes run node by node instead.
//
// Engine::create() verifies the graph, assigns every node to the first backend that has a kernel
// for it (the requested backend first, the CPU reference kernels last) and creates the kernels.
// run() binds the inputs' symbolic dimensions (the batch) from the given tensors, computes every
// shape with the operators' shape rules, and frees each intermediate after its last use.
//
// Thread safety: run() may be called concurrently; each call has its own intermediates.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/ir/graph.h"
#include "kestrel/runtime/kernel.h"

namespace kestrel::engine {

struct EngineOptions {
  // "cpu", "cuda", or "auto": cuda when a GPU is present, else cpu.
  std::string backend = "auto";
  // CPU: use only the reference kernels (the oracle), not oneDNN.
  bool cpu_reference_only = false;
  int device_index = 0;
  // Plan every batch size's memory once (one arena, intermediates placed by lifetime) instead of
  // allocating per node and per run; off for graphs with data-dependent shapes.
  bool plan = true;
  // On the GPU, also record each batch size's forward pass as a CUDA graph and replay it.
  bool cuda_graphs = true;
  // Autotuner choices to start from (runtime/tuning.h), from an engine file measured on the same
  // target: the engine's own, saved again with it (a timing cache's go through seed_tuning).
  std::map<std::string, std::string> tuning = {};
};

struct TensorInfo {
  std::string name;
  ir::TensorType type;
};

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> create(std::unique_ptr<ir::Graph> graph,
                                                  const EngineOptions& options);
  ~Engine();

  const std::vector<TensorInfo>& inputs() const { return inputs_; }
  const std::vector<TensorInfo>& outputs() const { return outputs_; }
  const ir::Graph& graph() const { return *graph_; }
  // "cpu", or "cuda (57 nodes), cpu (3 nodes)" when nodes fell back to the CPU.
  std::string backend_summary() const;
  // The primary backend's name and target (runtime::Backend::target()).
  std::map<std::string, std::string> target() const;
  // The autotuner's choices so far: the seed entries plus every measurement made since (a batch
  // size's measurements happen on its first run).
  std::map<std::string, std::string> tuning_entries() const { return tuning_.entries(); }
  // Whether a kernel of this engine looked `key` up (and found it) or recorded it.
  bool tuning_touched(const std::string& key) const { return tuning_.touched(key); }
  // How many choices and compiled kernels tuning_entries() holds, without copying them.
  runtime::TuningCounts tuning_counts() const { return tuning_.counts(); }
  // Adds choices (e.g. from a timing cache) for kernels that have not measured yet. Its compiled
  // kernels go into an engine file only when a kernel of this engine used them.
  void seed_tuning(const std::map<std::string, std::string>& entries) const {
    tuning_.merge(entries);
  }

  struct MemoryReport {
    size_t arena_bytes = 0;  // the planned arena of one context
    size_t naive_bytes = 0;  // every intermediate in its own buffer
  };
  // For the given symbol bindings (e.g. {{"batch", 32}}): plans a context if none exists yet.
  StatusOr<MemoryReport> memory_report(const std::map<std::string, int64_t>& bindings) const;

  struct RunOptions {
    // Leave the outputs where they were computed (e.g. on the GPU) instead of copying them to the
    // host; the run then returns without waiting for the device.
    bool outputs_on_device = false;
    // Run the batch in the execution context for this many rows (at least the inputs' batch):
    // the extra rows repeat the given ones and their results are dropped. For engines whose new
    // batch sizes are expensive (compiles_per_batch_size()), a server pads to sizes it warmed up.
    // Needs a batch axis (batch_symbol()); engines that run node by node ignore it. 0: no padding.
    int64_t pad_batch_to = 0;
  };

  // Runs the graph once. `inputs` must hold every graph input by name, in host memory or on the
  // engine's device; shapes must match the declared ones, with symbolic dimensions bound
  // consistently. Outputs come back in graph-output order, in host memory unless asked otherwise.
  StatusOr<std::vector<Tensor>> run(const std::map<std::string, Tensor>& inputs) const {
    return run(inputs, RunOptions{});
  }
  StatusOr<std::vector<Tensor>> run(const std::map<std::string, Tensor>& inputs,
                                    const RunOptions& options) const;

  // One step of the forward pass, timed by profile().
  struct LayerProfile {
    std::string node;   // the node's name
    std::string op;     // its operator
    std::string shape;  // its first output's shape
    double ms = 0;      // mean device time
    int64_t flops = 0;  // by the operator's FLOPs rule (0 where it has none)
    int64_t bytes = 0;  // read and written: every input (weights included) and output
  };
  // Runs the planned forward pass on `inputs` `iterations` times, step by step with a timing mark
  // between steps (CUDA events on the GPU; no CUDA graph, so each step pays its launch), and
  // returns every step in execution order. FAILED_PRECONDITION for engines that are not planned.
  StatusOr<std::vector<LayerProfile>> profile(const std::map<std::string, Tensor>& inputs,
                                              int iterations) const;

  // The engine's primary device ("cuda" or "cpu"), and copies to it and back.
  Device device() const;
  StatusOr<Tensor> to_device(const Tensor& host) const;
  StatusOr<Tensor> to_host(const Tensor& t) const;
  // Host memory the device copies inputs from fastest: pinned (page-locked, reused from a pool)
  // on a GPU, plain memory on the CPU. For callers that gather inputs before a run.
  StatusOr<Tensor> allocate_host(DType dtype, const Shape& shape) const;
  // Concatenates `parts` (one dtype, equal shapes but for the first axis) along the first axis
  // into one new tensor on the engine's device, copying on the device: how a batch is formed from
  // requests whose inputs are already in GPU memory (CUDA shared memory), on this GPU or another.
  // FAILED_PRECONDITION for an engine on the CPU.
  StatusOr<Tensor> concat_rows_on_device(std::span<const Tensor> parts) const;
  // Waits until everything queued on the device is done.
  Status synchronize() const;

  // The batch sizes (the first input's first axis) that have an idle execution context, ascending:
  // an earlier run at that size planned it and, on the GPU, recorded its CUDA graph, so a run at
  // that size does neither again. Contexts serving a run at the moment are not counted.
  std::vector<int64_t> warm_batch_sizes() const;

  // The symbol of the batch axis: the first dimension of every input and every output.
  // FAILED_PRECONDITION when the graph has no such axis.
  StatusOr<std::string> batch_symbol() const;
  // Whether the first run at a new batch size is expensive: on the GPU, some convolution may run
  // as a cuDNN graph kernel (BuildOptions::cudnn_graph), which cuDNN compiles for each batch size
  // at its first run (seconds for a whole YOLO model).
  bool compiles_per_batch_size() const;

 private:
  struct Step;
  class ExecutionContext;
  Engine();
  // Checks the inputs against the declared ones and binds the symbols of their shapes.
  StatusOr<std::map<std::string, int64_t>> bind_inputs(
      const std::map<std::string, Tensor>& inputs) const;
  // An idle context for `bindings`, or a new one; and giving it back.
  StatusOr<std::unique_ptr<ExecutionContext>> acquire_context(
      const std::map<std::string, int64_t>& bindings) const;
  // False once a run under these bindings found a data-dependent shape.
  bool plannable(const std::map<std::string, int64_t>& bindings) const;
  void release_context(const std::map<std::string, int64_t>& bindings,
                       std::unique_ptr<ExecutionContext> context) const;
  // The kernel of the first backend that has one for `def`.
  StatusOr<std::pair<runtime::Backend*, std::unique_ptr<runtime::Kernel>>> create_kernel(
      const runtime::KernelDef& def) const;
  // Copies the constants a device step reads to its device (at creation only).
  Status upload_constants(const Step& step);
  // Creates a deferred step's kernel from the run's actual input types. REQUIRES: lazy_mutex_.
  Status bind_lazily(const Step& step, const std::vector<Tensor>& slots) const;

  std::unique_ptr<ir::Graph> graph_;
  std::vector<std::unique_ptr<runtime::Backend>> backends_;
  std::vector<Step> steps_;
  std::vector<TensorInfo> inputs_, outputs_;
  // Slot of every value; constants pre-filled in slot_template_.
  std::map<const ir::Value*, size_t> slot_of_;
  std::vector<Tensor> slot_template_;
  // Device copies of the constants that device kernels read, by slot.
  std::map<size_t, Tensor> device_constants_;
  mutable std::mutex lazy_mutex_;
  EngineOptions options_;
  mutable runtime::TuningCache tuning_;
  // Every step on the first backend, no data-dependent shape: runs can be planned.
  bool plannable_ = false;
  mutable std::mutex contexts_mutex_;
  mutable std::map<std::map<std::string, int64_t>, std::vector<std::unique_ptr<ExecutionContext>>>
      idle_contexts_;
  // Bindings under which some tensor's shape depends on data (NonMaxSuppression, NonZero):
  // those run node by node.
  mutable std::set<std::map<std::string, int64_t>> unplannable_bindings_;
  std::vector<size_t> input_slots_, output_slots_;
};

}  // namespace kestrel::engine
