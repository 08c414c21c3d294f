#include "kestrel/cli/detection_runner.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "kestrel/base/logging.h"
#include "kestrel/cli/model_loading.h"
#include "kestrel/engine/builder.h"
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

// Detector::detect's three steps, each timed.
StatusOr<std::vector<std::vector<vision::Detection>>> detect_timed(
    const vision::Detector& detector, bool on_cpu, std::span<const Tensor> images,
    const vision::DetectionOptions& options, std::atomic<int64_t>& letterbox_ns,
    std::atomic<int64_t>& model_ns, std::atomic<int64_t>& post_ns) {
  auto t = std::chrono::steady_clock::now();
  auto lap = [&t](std::atomic<int64_t>& into) {
    const auto now = std::chrono::steady_clock::now();
    into += std::chrono::duration_cast<std::chrono::nanoseconds>(now - t).count();
    t = now;
  };
  std::vector<vision::LetterboxParams> params;
  KS_ASSIGN_OR_RETURN(const Tensor input, on_cpu ? detector.preprocess(images, &params)
                                                 : detector.preprocess_on_device(images, &params));
  lap(letterbox_ns);
  KS_ASSIGN_OR_RETURN(const std::vector<Tensor> outputs, detector.infer(input));
  lap(model_ns);
  auto found = detector.postprocess(outputs, params, options);
  lap(post_ns);
  return found;
}

}  // namespace

void add_detector_options(CLI::App* cmd, DetectorSetup& setup) {
  cmd->add_option("--backend", setup.backend, "cpu, cuda or auto")->capture_default_str();
  cmd->add_flag("--fp16", setup.fp16, "Run the model in float16");
  cmd->add_flag("--tf32", setup.tf32,
                "float32 convolutions on TF32 tensor cores (GPU; float32 accumulation)");
  cmd->add_option("--layout", setup.layout, "Convolution layout: auto, nchw or nhwc")
      ->capture_default_str();
  cmd->add_option("-b,--batch", setup.batch, "Images per batch")->capture_default_str();
  cmd->add_option("--workers", setup.workers,
                  "Batches in flight through the detector at once (0: 4 on the GPU, 2 on the CPU)")
      ->capture_default_str();
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

StatusOr<LoadedDetector> load_detector(const DetectorSetup& setup,
                                       const vision::DetectionOptions& options) {
  if (setup.batch < 1) return invalid_argument("--batch must be at least 1");
  if (setup.workers < 0) return invalid_argument("--workers must be 0 (automatic) or more");
  engine::BuildOptions build;
  build.engine.backend = setup.backend;
  build.precision = setup.fp16 ? "fp16" : "fp32";
  build.tf32 = setup.tf32;
  build.max_batch = setup.batch;
  build.layout = setup.layout;
  build.nms = vision::yolo_nms_attributes(options);
  LoadedDetector loaded;
  // An engine file runs as it was built (with its NMS settings, if it has NMS).
  KS_ASSIGN_OR_RETURN(loaded.engine, load_or_build_engine(setup.model, build, false));
  KS_ASSIGN_OR_RETURN(loaded.detector, vision::Detector::create(*loaded.engine));
  log::info("{} on {}", setup.model, loaded.engine->backend_summary());
  return loaded;
}

// The pipeline: decoder threads (one per core) decode files in order into batch slots, running at
// most `window` batches ahead of the results handed out; `workers` threads each take the next
// fully decoded batch and run it through the detector (GPU letterbox, engine, NMS), so one
// batch's host work overlaps another's GPU work; the calling thread hands the results out in order.
Status detect_files(const LoadedDetector& loaded, const std::vector<std::string>& files,
                    const DetectorSetup& setup, const vision::DetectionOptions& options,
                    const std::function<void(const ImageResult&)>& on_result) {
  const vision::Detector& detector = *loaded.detector;
  const bool on_cpu = loaded.engine->device().is_cpu();
  const size_t workers = setup.workers > 0 ? static_cast<size_t>(setup.workers) : on_cpu ? 2 : 4;
  const size_t window = workers + 2;
  const size_t n = files.size(), step = static_cast<size_t>(setup.batch);
  double warm_up_seconds = 0;
  if (!on_cpu) {
    // One-time costs before the clock starts: each worker's execution context planned, its CUDA
    // graph recorded and cuDNN's fused kernels compiled (seconds in a fresh process). The runs
    // overlap, so that each worker finds a context of its own later.
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t rows = static_cast<int64_t>(std::min(step, n));
    KS_ASSIGN_OR_RETURN(const Tensor zeros, Tensor::zeros(detector.input_dtype(),
                                                          Shape{rows, 3, detector.input_height(),
                                                                detector.input_width()}));
    std::vector<Status> warmed(workers);
    std::vector<std::thread> warming;
    for (size_t w = 0; w < workers; ++w)
      warming.emplace_back([&, w] { warmed[w] = detector.infer(zeros).status(); });
    for (std::thread& t : warming) t.join();
    for (const Status& s : warmed) KS_RETURN_IF_ERROR(s.with_context("warming up the engine"));
    warm_up_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const auto start = std::chrono::steady_clock::now();
  const size_t batches = (n + step - 1) / step;
  struct Slot {
    std::vector<Decoded> decoded;
    size_t pending = 0;  // images not decoded yet
    bool inferred = false;
    StatusOr<std::vector<std::vector<vision::Detection>>> found =
        std::vector<std::vector<vision::Detection>>();
  };
  std::vector<Slot> slots(batches);
  for (size_t b = 0; b < batches; ++b) {
    slots[b].pending = std::min(step, n - b * step);
    slots[b].decoded.resize(slots[b].pending);
  }
  std::mutex mutex;
  std::condition_variable changed;
  size_t emitted = 0;         // batches handed out (guarded by mutex)
  size_t next_image = 0;      // next file to decode (guarded by mutex)
  size_t next_inference = 0;  // next batch to infer (guarded by mutex)
  bool stop = false;
  // Where the time goes, for the summary: busy nanoseconds of each stage, summed over its threads.
  std::atomic<int64_t> decode_ns{0}, detect_ns{0};
  // The detect stage's three steps: letterbox (with the pixels' upload on the GPU), the model,
  // and post-processing (NMS on the host when the engine has none).
  std::atomic<int64_t> letterbox_ns{0}, model_ns{0}, post_ns{0};
  int64_t results_ns = 0, waiting_ns = 0;
  auto since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                                t0)
        .count();
  };

  auto decoder = [&] {
    for (;;) {
      size_t i;
      {
        std::unique_lock lock(mutex);
        changed.wait(
            lock, [&] { return stop || next_image >= n || next_image / step < emitted + window; });
        if (stop || next_image >= n) return;
        i = next_image++;
      }
      const auto t0 = std::chrono::steady_clock::now();
      Decoded d{files[i], vision::read_image(files[i])};
      decode_ns += since(t0);
      std::lock_guard lock(mutex);
      Slot& slot = slots[i / step];
      slot.decoded[i % step] = std::move(d);
      if (--slot.pending == 0) changed.notify_all();
    }
  };
  auto inference = [&] {
    for (;;) {
      size_t b;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] {
          return stop || next_inference >= batches || slots[next_inference].pending == 0;
        });
        if (stop || next_inference >= batches) return;
        b = next_inference++;
      }
      std::vector<Tensor> images;
      for (const Decoded& d : slots[b].decoded) {
        if (d.image.ok()) images.push_back(*d.image);
      }
      const auto t0 = std::chrono::steady_clock::now();
      StatusOr<std::vector<std::vector<vision::Detection>>> found =
          std::vector<std::vector<vision::Detection>>();
      if (!images.empty())
        found = detect_timed(detector, on_cpu, images, options, letterbox_ns, model_ns, post_ns);
      detect_ns += since(t0);
      std::lock_guard lock(mutex);
      slots[b].found = std::move(found);
      slots[b].inferred = true;
      changed.notify_all();
    }
  };
  std::vector<std::thread> threads;
  const size_t decoders = std::max(1u, std::thread::hardware_concurrency());
  for (size_t t = 0; t < decoders; ++t) threads.emplace_back(decoder);
  for (size_t t = 0; t < workers; ++t) threads.emplace_back(inference);
  auto finish = [&](Status status) {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    changed.notify_all();
    for (std::thread& t : threads) t.join();
    return status;
  };

  for (size_t b = 0; b < batches; ++b) {
    {
      const auto t0 = std::chrono::steady_clock::now();
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return slots[b].inferred; });
      waiting_ns += since(t0);
    }
    const auto t0 = std::chrono::steady_clock::now();
    Slot& slot = slots[b];
    if (!slot.found.ok()) return finish(slot.found.status());
    for (size_t i = 0, k = 0; i < slot.decoded.size(); ++i) {
      Decoded& d = slot.decoded[i];
      ImageResult r;
      r.path = d.path;
      if (!d.image.ok()) {
        r.status = d.image.status();
      } else {
        r.height = d.image->shape()[0];
        r.width = d.image->shape()[1];
        r.image = *d.image;
        r.detections = std::move((*slot.found)[k++]);
      }
      on_result(r);
    }
    slot = Slot();  // the pixels are no longer needed
    {
      std::lock_guard lock(mutex);
      ++emitted;
    }
    results_ns += since(t0);
    changed.notify_all();
    const size_t done = std::min((b + 1) * step, n);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\r%zu/%zu images, %.1f images/s", done, n, done / seconds);
  }
  std::fprintf(stderr, "\n");
  Status status = finish(Status());
  // Which stage bounds the throughput: the one whose threads were busiest.
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto busy = [&](double ns, size_t count) { return 100.0 * ns * 1e-9 / (seconds * count); };
  const std::string warm_up =
      on_cpu ? ""
             : fmt::format("engine warm-up {:.2f} s before the clock started; ", warm_up_seconds);
  auto per_batch = [&](const std::atomic<int64_t>& ns) { return ns * 1e-6 / batches; };
  std::fprintf(stderr,
               "stages: %sdecode %.1f thread-s (%zu "
               "threads, %.0f%% busy), detect %.1f thread-s (%zu "
               "workers, %.0f%% busy; per batch: letterbox %.2f ms, model %.2f ms, post-processing "
               "%.2f ms), results %.1f s (%.0f%% busy, %.1f s waiting for detections)\n",
               warm_up.c_str(), decode_ns * 1e-9, decoders, busy(decode_ns, decoders),
               detect_ns * 1e-9, workers, busy(detect_ns, workers), per_batch(letterbox_ns),
               per_batch(model_ns), per_batch(post_ns), results_ns * 1e-9, busy(results_ns, 1),
               waiting_ns * 1e-9);
  return status;
}

}  // namespace kestrel::cli
