// Running one IR node on concrete tensors: the step the engine repeats for every node, and what
// constant folding uses to evaluate a node.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/ir/graph.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/runtime/kernel.h"

namespace kestrel::engine {

// The KernelDef of `node` given its input and output element types (kUndefined where omitted).
runtime::KernelDef make_kernel_def(const ir::Node& node, std::vector<DType> input_dtypes,
                                   std::vector<DType> output_dtypes);

// Computes the node's output shapes with its shape rule, allocates the outputs on `backend`, runs
// `kernel` and checks that every output came back with the promised type and shape. `inputs` are
// indexed like the node's inputs (undefined where omitted); value inputs must be host tensors.
StatusOr<std::vector<Tensor>> run_node(const ir::Node& node, runtime::Kernel& kernel,
                                       runtime::Backend& backend, std::span<const Tensor> inputs);

// An ir::NodeEvaluator on the CPU reference kernels, for constant folding.
std::unique_ptr<ir::NodeEvaluator> make_cpu_evaluator();

}  // namespace kestrel::engine
