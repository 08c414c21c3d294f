// Base64 (RFC 4648, standard alphabet, with padding): how KServe v2's JSON carries bytes, such
// as a CUDA IPC handle in a shared-memory register request ({"b64": "..."}).
#pragma once

#include <string>
#include <string_view>

#include "kestrel/base/status.h"

namespace kestrel {

std::string base64_encode(std::string_view bytes);
// INVALID_ARGUMENT for a length that is not a multiple of 4, a character outside the alphabet,
// or padding anywhere but at the end.
StatusOr<std::string> base64_decode(std::string_view text);

}  // namespace kestrel
