// `kestrel eval MODEL --images DIR --labels DIR`: mAP@0.5 and mAP@0.5:0.95 on a labelled set, with
// a per-class table, the way YOLOv5's val.py measures it (conf 0.001, NMS IoU 0.65, max 300).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "kestrel/cli/commands.h"
#include "kestrel/cli/detection_runner.h"
#include "kestrel/vision/coco_eval.h"

namespace kestrel::cli {
namespace {

struct EvalOptions {
  DetectorSetup setup;
  std::string images, labels;
  float conf = 0.001f;
  float iou = 0.65f;
  int64_t max_det = 300;
};

Status eval(const EvalOptions& o) {
  KS_ASSIGN_OR_RETURN(std::vector<std::string> files, collect_images({o.images}));
  vision::DetectionOptions options;
  options.score_threshold = o.conf;
  options.iou_threshold = o.iou;
  options.max_detections = o.max_det;
  KS_ASSIGN_OR_RETURN(LoadedDetector loaded, load_detector(o.setup, options));
  std::vector<vision::EvalImage> images;
  Status label_error;
  const auto start = std::chrono::steady_clock::now();
  KS_RETURN_IF_ERROR(detect_files(loaded, files, o.setup, options, [&](const ImageResult& r) {
    if (!r.status.ok()) {
      if (label_error.ok()) label_error = r.status.with_context(r.path);
      return;
    }
    const std::string stem = std::filesystem::path(r.path).stem().string();
    const std::string label_path = (std::filesystem::path(o.labels) / (stem + ".txt")).string();
    StatusOr<std::vector<vision::GroundTruthBox>> labels =
        vision::read_yolo_labels(label_path, r.width, r.height);
    if (!labels.ok()) {
      if (label_error.ok()) label_error = labels.status().with_context(label_path);
      return;
    }
    images.push_back({r.detections, std::move(labels).value()});
  }));
  KS_RETURN_IF_ERROR(label_error);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const vision::EvalResult result = vision::evaluate_detections(images);
  const std::vector<std::string>& names = loaded.detector->class_names();
  fmt::print("{:<16} {:>7} {:>7} {:>7} {:>7} {:>8} {:>10}\n", "class", "labels", "dets", "P", "R",
             "mAP50", "mAP50-95");
  for (const vision::ClassEval& c : result.classes) {
    const std::string name = c.class_id >= 0 && static_cast<size_t>(c.class_id) < names.size()
                                 ? names[c.class_id]
                                 : std::to_string(c.class_id);
    fmt::print("{:<16} {:>7} {:>7} {:>7.3f} {:>7.3f} {:>8.3f} {:>10.3f}\n", name, c.num_labels,
               c.num_detections, c.precision, c.recall, c.ap50, c.ap50_95);
  }
  fmt::print("{:<16} {:>7} {:>7} {:>7} {:>7} {:>8.3f} {:>10.3f}\n", "all", result.num_labels,
             result.num_detections, "", "", result.map50, result.map50_95);
  fmt::print("{} images in {:.1f} s ({:.1f} images/s, decoding and NMS included)\n",
             result.num_images, seconds, result.num_images / seconds);
  fmt::print("mAP@0.5 = {:.4f}   mAP@0.5:0.95 = {:.4f}\n", result.map50, result.map50_95);
  return Status();
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "mAP of a detector on images with YOLO-format labels");
  auto o = std::make_shared<EvalOptions>();
  o->setup.batch = 16;
  cmd->add_option("model", o->setup.model, "ONNX model file (a YOLO detector)")->required();
  cmd->add_option("--images", o->images, "Folder of images")->required();
  cmd->add_option("--labels", o->labels, "Folder of YOLO label files (<image stem>.txt)")
      ->required();
  cmd->add_option("--conf", o->conf, "Score threshold")->capture_default_str();
  cmd->add_option("--iou", o->iou, "NMS IoU threshold")->capture_default_str();
  cmd->add_option("--max-det", o->max_det, "Detections per image at most")->capture_default_str();
  add_detector_options(cmd, o->setup);
  cmd->callback([o] { exit_on_error(eval(*o)); });
}

}  // namespace kestrel::cli
