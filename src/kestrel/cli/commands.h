// The `kestrel` subcommands. Each file registers one subcommand on the application; main.cc lists
// them. A subcommand reports failure by throwing CLI::RuntimeError with an exit code after printing
// its error, so that CLI11 handles exit codes in one place.
#pragma once

#include <CLI/CLI.hpp>

#include "kestrel/base/status.h"

namespace kestrel::cli {

void add_inspect_command(CLI::App& app);  // inspect.cc
void add_build_command(CLI::App& app);    // build.cc
void add_run_command(CLI::App& app);      // run.cc
void add_perf_command(CLI::App& app);     // perf.cc
void add_detect_command(CLI::App& app);   // detect.cc
void add_eval_command(CLI::App& app);     // eval.cc
void add_serve_command(CLI::App& app);    // serve.cc
void add_bench_command(CLI::App& app);    // bench.cc

// Prints `status` as "error: ..." on stderr and throws CLI::RuntimeError(exit code) when not OK.
void exit_on_error(const Status& status);

}  // namespace kestrel::cli
