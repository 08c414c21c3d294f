// convert_to_float16: runs a float32 graph in float16, keeping its float32 interface.
//
// Every float32 constant that feeds computation becomes float16 (constants whose contents decide
// shapes, like Resize's scales, keep their type), each float32 graph input gets a Cast to float16
// after it and each float32 output a Cast back to float32 before it, so callers still exchange
// float32 tensors. Kernels accumulate in float32 (see the backends), so this halves the bytes moved
// without halving the accuracy of sums.
//
// Nodes listed in `keep_float32` (by name) stay in float32, with Casts around them: per-layer
// overrides for layers known to be sensitive.
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

}  // namespace kestrel::optimize
