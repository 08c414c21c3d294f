#include "kestrel/base/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace kestrel {

void set_log_verbosity(int verbosity) {
  static const bool configured = [] {
    auto logger = spdlog::stderr_color_mt("kestrel");
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ %v");
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)configured;
  spdlog::set_level(verbosity <= 0   ? spdlog::level::warn
                    : verbosity == 1 ? spdlog::level::info
                                     : spdlog::level::debug);
}

}  // namespace kestrel
