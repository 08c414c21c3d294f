// Precision conversion of a whole graph, keeping its interface: callers exchange tensors of the
// types the model declares whatever precision it computes in.
//
// convert_to_float16: runs a float32 graph in float16.
//
// Every float32 constant that feeds computation becomes float16 (constants whose contents decide
// shapes, like Resize's scales, keep their type), each float32 graph input gets a Cast to float16
// after it and each float32 output a Cast back to float32 before it, so callers still exchange
// float32 tensors; Casts to float32 inside the computation cast to float16 instead. Kernels
// accumulate in float32 (see the backends), so this halves the bytes moved without halving the
// accuracy of sums.
//
// Nodes listed in `keep_float32` (by name) stay in float32, with Casts around them: per-layer
// overrides for layers known to be sensitive.
//
// convert_to_float32: the reverse, for models exported in float16 (weights, inputs and outputs):
// float16 constants that feed computation become float32, each float16 input gets a Cast to float32
// and each float16 output a Cast back, and Casts to float16 inside the computation cast to float32
// instead, so that the whole computation runs in float32.
//
// Both run after constant folding: shape computations (Shape, Range, Cast chains of dynamic
// exports) that produce data in the model's type must have become constants, since a Cast that
// feeds a shape-deciding input keeps its type.
#pragma once

#include <set>
#include <string>

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

struct PrecisionOptions {
  std::set<std::string> keep_float32;
};

// Returns the number of constants converted.
StatusOr<int> convert_to_float16(ir::Graph& graph, const PrecisionOptions& options = {});
StatusOr<int> convert_to_float32(ir::Graph& graph);

// True when the graph computes in float16 somewhere: a float16 input or constant, or a Cast to it.
bool computes_in_float16(const ir::Graph& graph);

}  // namespace kestrel::optimize
