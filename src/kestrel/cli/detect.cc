// `kestrel detect MODEL IMAGES...`: detections of every image as a COCO-style JSON array, and with
// --draw DIR the images with their detections drawn, as DIR/<stem>.jpg.
#include <fmt/format.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <string_view>
#include <vector>

#include "kestrel/cli/commands.h"
#include "kestrel/cli/detection_runner.h"
#include "kestrel/vision/coco_eval.h"
#include "kestrel/vision/draw.h"

namespace kestrel::cli {
namespace {

struct DetectOptions {
  DetectorSetup setup;
  std::vector<std::string> images;
  std::string out;   // empty: standard output
  std::string draw;  // empty: no pictures
  float conf = 0.25f;
  float iou = 0.45f;
  int64_t max_det = 300;
  bool agnostic = false;
  bool coco91 = false;
};

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// COCO's image_id: the file's stem, as a number when it is one (000000000139.jpg -> 139).
std::string image_id(const std::string& path) {
  const std::string stem = std::filesystem::path(path).stem().string();
  const bool numeric =
      !stem.empty() && stem.size() < 19 &&
      std::all_of(stem.begin(), stem.end(), [](unsigned char c) { return std::isdigit(c); });
  return numeric ? std::to_string(std::stoll(stem)) : json_string(stem);
}

// Creates `dir` when missing and checks that files can be created in it, so that a bad --draw
// fails before any image is processed.
Status prepare_draw_dir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    return invalid_argument("--draw '{}' exists and is not a folder", dir);
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) return permission_denied("cannot create the folder '{}': {}", dir, ec.message());
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return permission_denied("cannot write into '{}': {}", dir, std::strerror(errno));
  }
  return Status();
}

// Draws `r`'s detections onto its image and writes it as dir/<stem>.jpg. The runner is done with
// the decoded pixels once it has handed them over, so they are drawn on in place, not copied.
Status draw_result(const ImageResult& r, const std::vector<std::string>& names,
                   const std::string& dir) {
  Tensor image = r.image;
  KS_RETURN_IF_ERROR(vision::draw_detections(image, r.detections, names));
  const std::filesystem::path stem = std::filesystem::path(r.path).stem();
  return vision::write_jpeg((std::filesystem::path(dir) / stem).string() + ".jpg", image);
}

Status detect(const DetectOptions& o) {
  KS_ASSIGN_OR_RETURN(std::vector<std::string> files, collect_images(o.images));
  if (!o.draw.empty()) KS_RETURN_IF_ERROR(prepare_draw_dir(o.draw));
  vision::DetectionOptions options;
  options.score_threshold = o.conf;
  options.iou_threshold = o.iou;
  options.max_detections = o.max_det;
  options.class_agnostic = o.agnostic;
  KS_ASSIGN_OR_RETURN(LoadedDetector loaded, load_detector(o.setup, options));
  const std::vector<std::string>& names = loaded.detector->class_names();

  std::ofstream file;
  if (!o.out.empty()) {
    file.open(o.out);
    if (!file) return permission_denied("cannot write '{}'", o.out);
  }
  std::ostream& out = o.out.empty() ? std::cout : file;
  std::set<std::string> drawn_stems;  // two inputs with one stem would write one picture
  size_t draw_failed = 0;
  out << "[";
  bool first = true;
  std::vector<std::string> quoted_names;
  for (const std::string& name : names) quoted_names.push_back(json_string(name));
  fmt::memory_buffer text;
  size_t failed = 0, detections = 0;
  KS_RETURN_IF_ERROR(detect_files(loaded, files, o.setup, options, [&](const ImageResult& r) {
    if (!r.status.ok()) {
      std::fprintf(stderr, "\n%s: %s\n", r.path.c_str(), r.status.to_string().c_str());
      ++failed;
      return;
    }
    // Formatted into one buffer per image: this thread hands out every result in order.
    const std::string id = image_id(r.path);
    text.clear();
    for (const vision::Detection& d : r.detections) {
      const bool named = d.class_id >= 0 && static_cast<size_t>(d.class_id) < names.size();
      fmt::format_to(std::back_inserter(text),
                     "{}\n{{\"image_id\": {}, \"category_id\": {}, \"category_name\": {}, "
                     "\"bbox\": [{:.3f}, {:.3f}, {:.3f}, {:.3f}], \"score\": {:.5f}}}",
                     first ? "" : ",", id,
                     o.coco91 ? vision::coco80_to_coco91(d.class_id) : d.class_id,
                     named ? quoted_names[d.class_id] : std::string_view("\"\""), d.x1, d.y1,
                     d.x2 - d.x1, d.y2 - d.y1, d.score);
      first = false;
      ++detections;
    }
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!o.draw.empty()) {
      const std::string stem = std::filesystem::path(r.path).stem().string();
      if (!drawn_stems.insert(stem).second) {
        std::fprintf(stderr, "\nwarning: %s replaces an earlier %s.jpg in '%s'\n", r.path.c_str(),
                     stem.c_str(), o.draw.c_str());
      }
      if (Status s = draw_result(r, names, o.draw); !s.ok()) {
        std::fprintf(stderr, "\n%s: %s\n", r.path.c_str(), s.to_string().c_str());
        ++draw_failed;
      }
    }
  }));
  out << "\n]\n";
  out.flush();
  if (!out) return data_loss("error writing the results");
  std::fprintf(stderr, "%zu detections in %zu images%s\n", detections, files.size() - failed,
               o.out.empty() ? "" : (" -> " + o.out).c_str());
  if (!o.draw.empty()) {
    std::fprintf(stderr, "%zu pictures -> %s\n", files.size() - failed - draw_failed,
                 o.draw.c_str());
  }
  if (failed > 0)
    return invalid_argument("{} of {} images could not be read", failed, files.size());
  if (draw_failed > 0) {
    return data_loss("{} of {} pictures could not be written to '{}'", draw_failed, files.size(),
                     o.draw);
  }
  return Status();
}

}  // namespace

void add_detect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("detect", "Detect objects in images; COCO-style JSON results");
  auto o = std::make_shared<DetectOptions>();
  cmd->add_option("model", o->setup.model, "ONNX model file (a YOLO detector)")->required();
  cmd->add_option("images", o->images, "Image files or folders")->required();
  cmd->add_option("-o,--out", o->out, "Write the JSON here instead of standard output");
  cmd->add_option("--conf", o->conf, "Score threshold")->capture_default_str();
  cmd->add_option("--iou", o->iou, "NMS IoU threshold")->capture_default_str();
  cmd->add_option("--max-det", o->max_det, "Detections per image at most")->capture_default_str();
  cmd->add_flag("--agnostic", o->agnostic, "Class-agnostic NMS");
  cmd->add_flag("--coco91", o->coco91, "category_id as COCO's 1..90 ids instead of 0..79");
  cmd->add_option("--draw", o->draw,
                  "Also write every image with its detections drawn, as DIR/<name>.jpg")
      ->type_name("DIR");
  add_detector_options(cmd, o->setup);
  cmd->callback([o] { exit_on_error(detect(*o)); });
}

}  // namespace kestrel::cli
