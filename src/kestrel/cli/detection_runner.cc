#include "kestrel/cli/detection_runner.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>

#include "kestrel/base/logging.h"
#include "kestrel/engine/builder.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/vision/image.h"

namespace kestrel::cli {
namespace {

namespace fs = std::filesystem;

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

struct Decoded {
  std::string path;
  StatusOr<Tensor> image = Status(StatusCode::kUnknown, "not decoded");
};

// Decodes `files` on every core; results in order.
std::vector<Decoded> decode_all(std::span<const std::string> files) {
  std::vector<Decoded> out(files.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < files.size(); i = next++) {
      out[i].path = files[i];
      out[i].image = vision::read_image(files[i]);
    }
  };
  const size_t threads =
      std::min<size_t>(files.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return out;
}

}  // namespace

void add_detector_options(CLI::App* cmd, DetectorSetup& setup) {
  cmd->add_option("--backend", setup.backend, "cpu, cuda or auto")->capture_default_str();
  cmd->add_flag("--fp16", setup.fp16, "Run the model in float16");
  cmd->add_option("--layout", setup.layout, "Convolution layout: auto, nchw or nhwc")
      ->capture_default_str();
  cmd->add_option("-b,--batch", setup.batch, "Images per batch")->capture_default_str();
}

StatusOr<std::vector<std::string>> collect_images(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        if (entry.is_regular_file() && is_image_file(entry.path())) {
          found.push_back(entry.path().string());
        }
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      files.push_back(p);
    } else {
      return not_found("'{}' does not exist", p);
    }
  }
  if (files.empty()) return invalid_argument("no .jpg, .jpeg or .png images found");
  return files;
}

StatusOr<LoadedDetector> load_detector(const DetectorSetup& setup) {
  if (setup.batch < 1) return invalid_argument("--batch must be at least 1");
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, onnx::import_model_file(setup.model));
  engine::BuildOptions build;
  build.engine.backend = setup.backend;
  build.precision = setup.fp16 ? "fp16" : "fp32";
  build.max_batch = setup.batch;
  build.layout = setup.layout;
  LoadedDetector loaded;
  KS_ASSIGN_OR_RETURN(loaded.engine, engine::build_engine(std::move(graph), build));
  KS_ASSIGN_OR_RETURN(loaded.detector, vision::Detector::create(*loaded.engine));
  log::info("{} on {}", setup.model, loaded.engine->backend_summary());
  return loaded;
}

Status detect_files(const vision::Detector& detector, const std::vector<std::string>& files,
                    int batch, const vision::DetectionOptions& options,
                    const std::function<void(const ImageResult&)>& on_result) {
  const auto start = std::chrono::steady_clock::now();
  const size_t n = files.size(), step = static_cast<size_t>(batch);
  auto decode_batch = [&](size_t first) {
    const size_t count = std::min(step, n - first);
    return decode_all(std::span(files).subspan(first, count));
  };
  // The next batch decodes while this one is inferred.
  std::future<std::vector<Decoded>> next = std::async(std::launch::async, decode_batch, 0);
  for (size_t first = 0; first < n; first += step) {
    std::vector<Decoded> decoded = next.get();
    if (first + step < n) next = std::async(std::launch::async, decode_batch, first + step);
    std::vector<Tensor> images;
    std::vector<size_t> index;  // position in `decoded` of each good image
    for (size_t i = 0; i < decoded.size(); ++i) {
      if (decoded[i].image.ok()) {
        images.push_back(*decoded[i].image);
        index.push_back(i);
      }
    }
    std::vector<std::vector<vision::Detection>> found;
    if (!images.empty()) {
      KS_ASSIGN_OR_RETURN(found, detector.detect(images, options));
    }
    for (size_t i = 0, k = 0; i < decoded.size(); ++i) {
      ImageResult r;
      r.path = decoded[i].path;
      if (!decoded[i].image.ok()) {
        r.status = decoded[i].image.status();
      } else {
        r.height = decoded[i].image->shape()[0];
        r.width = decoded[i].image->shape()[1];
        r.detections = std::move(found[k++]);
      }
      on_result(r);
    }
    const size_t done = std::min(first + step, n);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\r%zu/%zu images, %.1f images/s", done, n, done / seconds);
  }
  std::fprintf(stderr, "\n");
  return Status();
}

}  // namespace kestrel::cli
