// Engine: a verified graph bound to a backend, ready to run at any batch size.
//
// This is the public C++ API that the CLI, the server and the benchmarks use:
//
//   KS_ASSIGN_OR_RETURN(auto graph, onnx::import_model_file("yolov5n.onnx"));
//   KS_ASSIGN_OR_RETURN(auto engine, Engine::create(std::move(graph), {.backend = "cpu"}));
//   KS_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, engine->run({{"images", image}}));
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

  // Runs the graph once. `inputs` must hold every graph input by name; shapes must match the
  // declared ones, with symbolic dimensions bound consistently. Outputs come back in graph-output
  // order, in host memory.
  StatusOr<std::vector<Tensor>> run(const std::map<std::string, Tensor>& inputs) const;

 private:
  struct Step;
  Engine();

  std::unique_ptr<ir::Graph> graph_;
  std::vector<std::unique_ptr<runtime::Backend>> backends_;
  std::vector<Step> steps_;
  std::vector<TensorInfo> inputs_, outputs_;
  // Slot of every value; constants pre-filled in slot_template_.
  std::map<const ir::Value*, size_t> slot_of_;
  std::vector<Tensor> slot_template_;
  std::vector<size_t> input_slots_, output_slots_;
};

}  // namespace kestrel::engine
