// Whole-file reads and writes with errors as Status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kestrel/base/status.h"

namespace kestrel {

// Reads the whole file. NOT_FOUND when missing, INVALID_ARGUMENT for a directory,
// RESOURCE_EXHAUSTED when larger than `max_bytes`.
StatusOr<std::string> read_file(const std::string& path, uint64_t max_bytes = uint64_t{1} << 34);

// Writes `data` to `path` (replacing it) through a temporary file and a rename, so readers never
// see a half-written file.
Status write_file(const std::string& path, std::string_view data);

}  // namespace kestrel
