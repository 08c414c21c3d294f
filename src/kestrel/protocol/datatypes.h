// KServe v2 tensor datatype names ("FP32", "UINT8", ...) and their mapping to Kestrel's DType and
// to Triton's inference::DataType (config.pbtxt's TYPE_FP32, ...).
//
// The generated protocol headers live beside this one: include
//   "kestrel/protocol/grpc_service.pb.h", "kestrel/protocol/grpc_service.grpc.pb.h",
//   "kestrel/protocol/model_config.pb.h", "kestrel/protocol/health.pb.h",
//   "kestrel/protocol/health.grpc.pb.h".
// Everything here is a pure function of its arguments (thread safe).
#pragma once

#include <string_view>

#include "kestrel/base/dtype.h"
#include "kestrel/protocol/model_config.pb.h"

namespace kestrel::protocol {

// "FP32" for DType::kFloat32, ...; "" for a dtype KServe has no name for.
std::string_view kserve_datatype(DType dtype);
// Parses a KServe datatype name; DType::kUndefined when unknown ("BYTES" is unknown: Kestrel
// tensors hold numbers only).
DType dtype_from_kserve(std::string_view name);

// TYPE_FP32 for DType::kFloat32, ...; TYPE_INVALID when there is none.
inference::DataType config_datatype(DType dtype);
// DType::kUndefined for TYPE_INVALID, TYPE_STRING and unknown values.
DType dtype_from_config(inference::DataType type);

}  // namespace kestrel::protocol
