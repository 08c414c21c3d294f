// kestrel: one binary, one subcommand per task (see docs/DESIGN.md's command table).
#include <cstdio>

#include "kestrel/base/logging.h"
#include "kestrel/cli/commands.h"
#include "kestrel/vision/nms.h"

namespace kestrel::cli {

void exit_on_error(const Status& status) {
  if (status.ok()) return;
  std::fflush(stdout);
  std::fprintf(stderr, "error: %s\n", status.to_string().c_str());
  // Usage errors are 2, everything else 1, like most command-line tools.
  throw CLI::RuntimeError(status.code() == StatusCode::kInvalidArgument ? 2 : 1);
}

}  // namespace kestrel::cli

int main(int argc, char** argv) {
  // Engines may end in Kestrel's NMS operator, whose kernels live in the vision layer.
  kestrel::vision::register_detection_kernels();
  CLI::App app{"Kestrel: ONNX vision models, optimized and served on NVIDIA GPUs (or the CPU)"};
  app.require_subcommand(1);
  int verbose = 0;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbose, "More log output (repeat for debug output)");
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors");
  app.parse_complete_callback([&] { kestrel::set_log_verbosity(quiet ? 0 : 1 + verbose); });
  kestrel::cli::add_inspect_command(app);
  kestrel::cli::add_build_command(app);
  kestrel::cli::add_run_command(app);
  kestrel::cli::add_perf_command(app);
  kestrel::cli::add_detect_command(app);
  kestrel::cli::add_eval_command(app);
  kestrel::cli::add_serve_command(app);
  kestrel::cli::add_bench_command(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
