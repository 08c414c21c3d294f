// KServe and Triton datatype tables (see datatypes.h).
#include "kestrel/protocol/datatypes.h"

#include <array>

namespace kestrel::protocol {
namespace {

struct Row {
  DType dtype;
  std::string_view kserve;
  inference::DataType config;
};

constexpr std::array<Row, 13> kRows = {{
    {DType::kBool, "BOOL", inference::TYPE_BOOL},
    {DType::kUInt8, "UINT8", inference::TYPE_UINT8},
    {DType::kUInt16, "UINT16", inference::TYPE_UINT16},
    {DType::kUInt32, "UINT32", inference::TYPE_UINT32},
    {DType::kUInt64, "UINT64", inference::TYPE_UINT64},
    {DType::kInt8, "INT8", inference::TYPE_INT8},
    {DType::kInt16, "INT16", inference::TYPE_INT16},
    {DType::kInt32, "INT32", inference::TYPE_INT32},
    {DType::kInt64, "INT64", inference::TYPE_INT64},
    {DType::kFloat16, "FP16", inference::TYPE_FP16},
    {DType::kFloat32, "FP32", inference::TYPE_FP32},
    {DType::kFloat64, "FP64", inference::TYPE_FP64},
    {DType::kBFloat16, "BF16", inference::TYPE_BF16},
}};

}  // namespace

std::string_view kserve_datatype(DType dtype) {
  for (const Row& row : kRows)
    if (row.dtype == dtype) return row.kserve;
  return "";
}

DType dtype_from_kserve(std::string_view name) {
  for (const Row& row : kRows)
    if (row.kserve == name) return row.dtype;
  return DType::kUndefined;
}

inference::DataType config_datatype(DType dtype) {
  for (const Row& row : kRows)
    if (row.dtype == dtype) return row.config;
  return inference::TYPE_INVALID;
}

DType dtype_from_config(inference::DataType type) {
  for (const Row& row : kRows)
    if (row.config == type) return row.dtype;
  return DType::kUndefined;
}

}  // namespace kestrel::protocol
