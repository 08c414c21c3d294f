// Rewrites older operator forms into the newest opset's, so that shape rules and kernels handle
// one form per operator. Internal to onnx/; runs right after import, using Graph::opset_version.
//
// Examples: Squeeze-11's `axes` attribute becomes Squeeze-13's constant input; Softmax before
// opset 13 (which flattened to 2-D around `axis`) becomes Flatten -> Softmax(axis=1) -> Reshape;
// Resize-10 becomes Resize-11 with `asymmetric` coordinates.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::onnx {

Status upgrade_operators(ir::Graph& graph);

}  // namespace kestrel::onnx
