// TensorProto -> Tensor conversion, with external data. Internal to onnx/.
#pragma once

#include <string>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/onnx/onnx.pb.h"

namespace kestrel::onnx {

// The DType for an ONNX data type, or UNIMPLEMENTED naming the type ("STRING", "COMPLEX64", ...).
StatusOr<DType> dtype_from_onnx(int32_t data_type);

// Converts `proto`; `base_dir` resolves external data (empty: external data is refused).
StatusOr<Tensor> tensor_from_proto(const onnxpb::TensorProto& proto, const std::string& base_dir);

}  // namespace kestrel::onnx
