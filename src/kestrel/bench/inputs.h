// What the bench sends: samples built from the model's metadata (random tensors), from files
// (perf_analyzer's --input-data DIR or FILE.json), or from a folder of images for /detect.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/bench/client.h"

namespace kestrel::bench {

struct InputOptions {
  // "random" (the default), a directory, or a .json file (perf_analyzer's formats).
  std::string input_data = "random";
  // --shape NAME:1,3,640,640: the full shape of an input, overriding its metadata.
  std::map<std::string, std::vector<int64_t>> shapes;
  // -b: the size given to a variable first dimension (ignored for inputs given in --shape).
  int64_t batch_size = 1;
  uint64_t seed = 1;
};

// Parses one --shape value, "NAME:1,3,640,640".
Status parse_shape_option(std::string_view text, std::map<std::string, std::vector<int64_t>>& out);

// The concrete shape of `spec`: the --shape override, or its metadata shape with a variable
// first dimension set to the batch size. INVALID_ARGUMENT for another variable dimension without
// a --shape.
StatusOr<std::vector<int64_t>> resolve_shape(const TensorSpec& spec, const InputOptions& options);

// Samples for the model's inputs:
//   random: one sample of uniform random values (0..1 for floats, 0..255 for integers);
//   DIR:    one sample; input NAME from DIR/NAME (raw little-endian bytes) or DIR/NAME.npy;
//   FILE.json: {"data": [{"NAME": [numbers...] | {"content": [...], "shape": [...]}}, ...]}, one
//           sample per entry.
StatusOr<std::vector<Sample>> make_tensor_samples(const ModelMetadata& metadata,
                                                  const InputOptions& options);

// One sample per image file (.jpg, .jpeg, .png, .bmp) of `dir`, in name order; the id is the file
// stem. INVALID_ARGUMENT when the folder has none.
StatusOr<std::vector<Sample>> make_image_samples(const std::string& dir);

}  // namespace kestrel::bench
