// What the engine-running subcommands share: an engine from an ONNX model (built now) or from a
// .kplan engine file (loaded), batch-size lists, and random inputs of a model's shapes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine.h"

namespace kestrel::cli {

// True for paths ending in .kplan.
bool is_engine_file(const std::string& path);

// For an ONNX model: builds with `build` (printing what the optimizer did). For a .kplan file:
// loads it (the file decides backend, precision and layout; asking for a different backend or
// precision than the file has, --fp16 or --tf32 included, is an INVALID_ARGUMENT naming both).
StatusOr<std::unique_ptr<engine::Engine>> load_or_build_engine(const std::string& path,
                                                               const engine::BuildOptions& build,
                                                               bool print_summary = true);

// "1,8,32" -> {1, 8, 32}; INVALID_ARGUMENT for anything else, or a size below 1.
StatusOr<std::vector<int64_t>> parse_batch_list(const std::string& s);

// Uniform [0, 1) values for a float32/float16 input, its symbolic dimensions set to `batch`: a
// block of 2^20 - 1 random values, repeated (cheap at any batch; enough for timing and tuning).
StatusOr<Tensor> random_model_input(const engine::TensorInfo& info, int64_t batch);

}  // namespace kestrel::cli
