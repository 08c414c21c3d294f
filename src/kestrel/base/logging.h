// Logging: Kestrel logs through spdlog. This header is the one place that configures it, so every
// binary and library logs in the same format to stderr.
//
//   log::info("built engine for {} in {:.1f} s", name, seconds);
#pragma once

#include <spdlog/spdlog.h>

namespace kestrel {
namespace log {
using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::warn;
}  // namespace log

// 0: warnings and errors only, 1: info (default), 2 and up: debug.
void set_log_verbosity(int verbosity);

}  // namespace kestrel
