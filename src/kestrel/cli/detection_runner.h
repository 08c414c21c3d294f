// What `kestrel detect` and `kestrel eval` share: finding the images, building the detector, and
// running them through it in batches, decoding the next batch on every core while the current one
// is inferred.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kestrel/base/status.h"
#include "kestrel/engine/engine.h"
#include "kestrel/vision/detector.h"

namespace kestrel::cli {

struct DetectorSetup {
  std::string model;
  std::string backend = "auto";
  bool fp16 = false;
  bool tf32 = false;
  std::string layout = "auto";
  int batch = 8;
  // Batches in flight through the detector at once (letterbox, engine, NMS); 0: 4 on the GPU (one
  // batch's host work overlaps the others' GPU work), 2 on the CPU.
  int workers = 0;
};

// Adds --backend, --fp16, --tf32, --layout, --batch and --workers to a subcommand.
void add_detector_options(CLI::App* cmd, DetectorSetup& setup);

// The image files named by `paths`: files as given, folders expanded to their .jpg/.jpeg/.png files
// (sorted). NOT_FOUND for a path that does not exist; INVALID_ARGUMENT when nothing is found.
StatusOr<std::vector<std::string>> collect_images(const std::vector<std::string>& paths);

struct LoadedDetector {
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<vision::Detector> detector;
};
// Builds an ONNX model with `options`' decoding and NMS appended (on the GPU, NMS runs there too),
// or loads a .kplan engine file as it was built, and makes a detector for it.
StatusOr<LoadedDetector> load_detector(const DetectorSetup& setup,
                                       const vision::DetectionOptions& options);

// One image's outcome, in input order.
struct ImageResult {
  std::string path;
  int64_t width = 0, height = 0;  // of the decoded source image
  Status status;                  // decoding or detection error
  Tensor image;                   // the decoded source image, uint8 [H, W, 3] RGB (when status ok)
  std::vector<vision::Detection> detections;
};

// Runs every file through the detector in batches of setup.batch, setup.workers batches at once;
// calls `on_result` once per image, in order, and shows progress on stderr, then each stage's busy
// time. On a GPU, every worker's execution context is warmed up first (planned, its CUDA graph
// recorded, cuDNN's kernels compiled), and the throughput is counted from then on; the warm-up's
// seconds are reported with the stages. Images that fail to decode are reported in their result and
// the rest carry on. Returns an error only for failures that stop everything (the engine).
Status detect_files(const LoadedDetector& loaded, const std::vector<std::string>& files,
                    const DetectorSetup& setup, const vision::DetectionOptions& options,
                    const std::function<void(const ImageResult&)>& on_result);

}  // namespace kestrel::cli
