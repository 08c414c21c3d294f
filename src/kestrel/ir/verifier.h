// The graph verifier: the checks every graph passes before anything executes it.
//
// REQUIRES of a valid graph: nodes in topological order (Graph::sort_topologically()), every
// operator known and consistent with its schema (arity, attribute names and types), every graph
// output computed, and type inference succeeding with every symbol bound to 1. Errors name the
// offending node or value.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"
#include "kestrel/ir/shape_inference.h"

namespace kestrel::ir {

Status verify_graph(const Graph& graph, NodeEvaluator* evaluator = nullptr);

}  // namespace kestrel::ir
