// NumPy .npy files: the tensor exchange format of `kestrel run` and of the reference data.
//
// Reads format versions 1.0, 2.0 and 3.0, little-endian, C order, with the element types of DType
// (float16, float32, float64, int8..int64, uint8..uint64, bool). Everything else, and any header or
// size that does not add up, is INVALID_ARGUMENT: the parser is fed untrusted bytes.
#pragma once

#include <string>
#include <string_view>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"

namespace kestrel {

StatusOr<Tensor> parse_npy(std::string_view bytes);
StatusOr<Tensor> read_npy(const std::string& path);

// REQUIRES: t.is_cpu(). bfloat16 has no NumPy type and is refused.
StatusOr<std::string> encode_npy(const Tensor& t);
Status write_npy(const std::string& path, const Tensor& t);

}  // namespace kestrel
