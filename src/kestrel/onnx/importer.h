// ONNX import: a .onnx file (or its bytes) becomes an ir::Graph.
//
// Accepted: IR versions 3..10, the default-domain opsets 7..21, tensors of Kestrel's element types
// (base/dtype.h), initializers stored inline or as external data, and model metadata (e.g. a YOLO
// export's class `names`), which lands in Graph::metadata. Older operator forms are rewritten to
// the newest opset's (attributes that became inputs, Softmax's pre-13 axis semantics, ...), so the
// rest of Kestrel sees one form per operator.
//
// Refused with INVALID_ARGUMENT or UNIMPLEMENTED and a message naming the culprit: ONNX-ML and
// other non-default domains, control flow (subgraph attributes), model-local functions, sequence
// and map types, sparse tensors, element types Kestrel lacks, malformed protobuf, data whose size
// does not match its shape, cyclic graphs, undefined inputs, and external-data paths that leave the
// model's folder (absolute paths, `..`, symbolic links pointing outside).
//
// The importer is fed untrusted bytes: it checks every size before it allocates, and it is fuzzed
// (onnx/import_fuzzer.cc).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/ir/graph.h"

namespace kestrel::onnx {

// External data is looked up relative to the model file's folder.
StatusOr<std::unique_ptr<ir::Graph>> import_model_file(const std::string& path);

// `base_dir` is the folder external data is relative to; empty refuses external data.
StatusOr<std::unique_ptr<ir::Graph>> import_model(std::string_view bytes,
                                                  const std::string& base_dir);

// A serialized TensorProto (the .pb files of ONNX's test data) as a host tensor.
StatusOr<Tensor> parse_tensor_proto(std::string_view bytes);

}  // namespace kestrel::onnx
