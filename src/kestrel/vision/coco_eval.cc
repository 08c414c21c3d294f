// mAP evaluation against YOLO labels, following YOLOv5's val.py (see coco_eval.h).
#include "kestrel/vision/coco_eval.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <map>

#include "kestrel/base/file.h"

namespace kestrel::vision {
namespace {

constexpr int kThresholds = 10;  // IoU 0.50, 0.55, ..., 0.95

double iou_threshold(int t) { return 0.5 + 0.05 * t; }

// numpy.interp(x, xp, fp) for non-decreasing xp (repeated values allowed): the last index j with
// xp[j] <= x, then linear interpolation towards j + 1.
double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp) {
  const size_t n = xp.size();
  if (x < xp[0]) return fp[0];
  if (x > xp[n - 1]) return fp[n - 1];
  const size_t j = static_cast<size_t>(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
  if (j == n - 1 || xp[j] == x) return fp[j];
  const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  return slope * (x - xp[j]) + fp[j];
}

// YOLOv5's compute_ap: precision envelope, 101-point interpolation, trapezoidal integration.
double average_precision(const std::vector<double>& recall, const std::vector<double>& precision) {
  std::vector<double> mrec{0.0}, mpre{1.0};
  mrec.insert(mrec.end(), recall.begin(), recall.end());
  mpre.insert(mpre.end(), precision.begin(), precision.end());
  mrec.push_back(1.0);
  mpre.push_back(0.0);
  for (size_t i = mpre.size() - 1; i-- > 0;) mpre[i] = std::max(mpre[i], mpre[i + 1]);
  double ap = 0, prev_x = 0, prev_y = np_interp(0.0, mrec, mpre);
  for (int i = 1; i <= 100; ++i) {
    const double x = i / 100.0, y = np_interp(x, mrec, mpre);
    ap += (x - prev_x) * (y + prev_y) / 2;
    prev_x = x;
    prev_y = y;
  }
  return ap;
}

// Which detections of one image are true positives at each IoU threshold (val.py's
// process_batch). `dets` are in score order.
std::vector<std::array<bool, kThresholds>> match_image(const std::vector<Detection>& dets,
                                                       const std::vector<GroundTruthBox>& labels) {
  std::vector<std::array<bool, kThresholds>> correct(dets.size());
  for (auto& c : correct) c.fill(false);
  if (dets.empty() || labels.empty()) return correct;
  // iou[d][l], or -1 where the classes differ.
  std::vector<std::vector<double>> iou(dets.size(), std::vector<double>(labels.size(), -1.0));
  for (size_t d = 0; d < dets.size(); ++d) {
    for (size_t l = 0; l < labels.size(); ++l) {
      if (dets[d].class_id == labels[l].class_id) iou[d][l] = box_iou(dets[d], labels[l]);
    }
  }
  for (int t = 0; t < kThresholds; ++t) {
    const double threshold = iou_threshold(t);
    // Each label goes to the first detection whose best label it is.
    std::vector<bool> taken(labels.size(), false);
    for (size_t d = 0; d < dets.size(); ++d) {
      int64_t best = -1;
      for (size_t l = 0; l < labels.size(); ++l) {
        if (iou[d][l] >= threshold && (best < 0 || iou[d][l] > iou[d][best])) {
          best = static_cast<int64_t>(l);
        }
      }
      if (best >= 0 && !taken[best]) {
        taken[best] = true;
        correct[d][t] = true;
      }
    }
  }
  return correct;
}

Status label_error(size_t line, std::string_view why) {
  return invalid_argument("YOLO label line {}: {}", line, why);
}

}  // namespace

int32_t coco80_to_coco91(int32_t class_id) {
  static constexpr int32_t kIds[] = {
      1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
      22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
      46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
      67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};
  static_assert(std::size(kIds) == 80);
  return class_id >= 0 && class_id < 80 ? kIds[class_id] : -1;
}

double box_iou(const Detection& d, const GroundTruthBox& g) {
  const double iw = std::min<double>(d.x2, g.x2) - std::max<double>(d.x1, g.x1);
  const double ih = std::min<double>(d.y2, g.y2) - std::max<double>(d.y1, g.y1);
  if (!(iw > 0) || !(ih > 0)) return 0;
  const double inter = iw * ih;
  const double uni =
      (double{d.x2} - d.x1) * (double{d.y2} - d.y1) + (g.x2 - g.x1) * (g.y2 - g.y1) - inter;
  return uni > 0 ? inter / uni : 0;
}

StatusOr<std::vector<GroundTruthBox>> parse_yolo_labels(std::string_view text, int64_t image_width,
                                                        int64_t image_height) {
  std::vector<GroundTruthBox> boxes;
  size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    std::vector<double> v;
    while (true) {
      const size_t start = line.find_first_not_of(" \t\r");
      if (start == std::string_view::npos) break;
      line.remove_prefix(start);
      double x = 0;
      const auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), x);
      if (ec != std::errc() || !std::isfinite(x)) return label_error(line_number, "not a number");
      v.push_back(x);
      line.remove_prefix(static_cast<size_t>(ptr - line.data()));
      if (!line.empty() && line.find_first_of(" \t\r") != 0) {
        return label_error(line_number, "numbers must be separated by spaces");
      }
    }
    if (v.empty()) continue;
    if (v[0] < 0 || v[0] != std::floor(v[0]) || v[0] > INT32_MAX) {
      return label_error(line_number, "the class must be a non-negative integer");
    }
    GroundTruthBox g;
    g.class_id = static_cast<int32_t>(v[0]);
    const double w = static_cast<double>(image_width), h = static_cast<double>(image_height);
    if (v.size() == 5) {
      g.x1 = (v[1] - v[3] / 2) * w;
      g.y1 = (v[2] - v[4] / 2) * h;
      g.x2 = (v[1] + v[3] / 2) * w;
      g.y2 = (v[2] + v[4] / 2) * h;
    } else if (v.size() >= 7 && v.size() % 2 == 1) {
      // A polygon: its extent.
      g.x1 = g.x2 = v[1] * w;
      g.y1 = g.y2 = v[2] * h;
      for (size_t i = 3; i < v.size(); i += 2) {
        g.x1 = std::min(g.x1, v[i] * w), g.x2 = std::max(g.x2, v[i] * w);
        g.y1 = std::min(g.y1, v[i + 1] * h), g.y2 = std::max(g.y2, v[i + 1] * h);
      }
    } else {
      return label_error(line_number, fmt::format("{} numbers: expected 'class cx cy w h' or a "
                                                  "polygon 'class x1 y1 x2 y2 x3 y3 ...'",
                                                  v.size()));
    }
    boxes.push_back(g);
  }
  return boxes;
}

StatusOr<std::vector<GroundTruthBox>> read_yolo_labels(const std::string& path, int64_t image_width,
                                                       int64_t image_height) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::vector<GroundTruthBox>{};
  KS_ASSIGN_OR_RETURN(const std::string text, read_file(path, uint64_t{1} << 30));
  StatusOr<std::vector<GroundTruthBox>> boxes = parse_yolo_labels(text, image_width, image_height);
  if (!boxes.ok()) return boxes.status().with_context(path);
  return boxes;
}

EvalResult evaluate_detections(std::span<const EvalImage> images) {
  // Every detection of every image with its true-positive flags, in (image, score) order.
  struct Scored {
    float score;
    int32_t class_id;
    std::array<bool, kThresholds> correct;
  };
  std::vector<Scored> all;
  std::map<int32_t, int64_t> labels_per_class;
  EvalResult result;
  result.num_images = static_cast<int64_t>(images.size());
  for (const EvalImage& image : images) {
    std::vector<Detection> dets = image.detections;
    std::stable_sort(dets.begin(), dets.end(),
                     [](const Detection& a, const Detection& b) { return a.score > b.score; });
    const auto correct = match_image(dets, image.labels);
    for (size_t d = 0; d < dets.size(); ++d) {
      all.push_back({dets[d].score, dets[d].class_id, correct[d]});
    }
    for (const GroundTruthBox& g : image.labels) ++labels_per_class[g.class_id];
    result.num_labels += static_cast<int64_t>(image.labels.size());
    result.num_detections += static_cast<int64_t>(dets.size());
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const Scored& a, const Scored& b) { return a.score > b.score; });

  for (const auto& [class_id, num_labels] : labels_per_class) {
    ClassEval c;
    c.class_id = class_id;
    c.num_labels = num_labels;
    std::array<std::vector<double>, kThresholds> recall, precision;
    std::array<int64_t, kThresholds> tp{};
    int64_t n = 0;
    double best_f1 = -1;
    for (const Scored& s : all) {
      if (s.class_id != class_id) continue;
      ++n;
      for (int t = 0; t < kThresholds; ++t) {
        tp[t] += s.correct[t];
        recall[t].push_back(static_cast<double>(tp[t]) / static_cast<double>(num_labels));
        precision[t].push_back(static_cast<double>(tp[t]) / static_cast<double>(n));
      }
      const double p = precision[0].back(), r = recall[0].back();
      const double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
      if (f1 > best_f1) best_f1 = f1, c.precision = p, c.recall = r;
    }
    c.num_detections = n;
    if (n > 0) {
      double sum = 0;
      for (int t = 0; t < kThresholds; ++t) {
        const double ap = average_precision(recall[t], precision[t]);
        if (t == 0) c.ap50 = ap;
        sum += ap;
      }
      c.ap50_95 = sum / kThresholds;
    }
    result.classes.push_back(c);
  }
  if (!result.classes.empty()) {
    for (const ClassEval& c : result.classes) {
      result.map50 += c.ap50;
      result.map50_95 += c.ap50_95;
    }
    result.map50 /= static_cast<double>(result.classes.size());
    result.map50_95 /= static_cast<double>(result.classes.size());
  }
  return result;
}

}  // namespace kestrel::vision
