// mAP of /detect answers (see accuracy.h): the method of vision/coco_eval.cc, restated on the
// bench's own box type because the bench layer may not include vision/.
#include "kestrel/bench/accuracy.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <map>

namespace kestrel::bench {
namespace {

constexpr int kThresholds = 10;  // IoU 0.50, 0.55, ..., 0.95

double iou(const Box& a, const Box& b) {
  const double iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const double ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  if (!(iw > 0) || !(ih > 0)) return 0;
  const double inter = iw * ih;
  const double uni = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return uni > 0 ? inter / uni : 0;
}

// numpy.interp for non-decreasing xp.
double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp) {
  const size_t n = xp.size();
  if (x < xp[0]) return fp[0];
  if (x > xp[n - 1]) return fp[n - 1];
  const size_t j = static_cast<size_t>(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
  if (j == n - 1 || xp[j] == x) return fp[j];
  return (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]) * (x - xp[j]) + fp[j];
}

// YOLOv5's compute_ap: precision envelope, 101 recall points, trapezoidal integration.
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

// val.py's process_batch: per threshold, each detection (in score order) takes its best label of
// the same class at IoU >= threshold; a label goes to the first detection that takes it.
std::vector<std::array<bool, kThresholds>> match(const std::vector<Box>& dets,
                                                 const std::vector<Box>& labels) {
  std::vector<std::array<bool, kThresholds>> correct(dets.size());
  for (auto& c : correct) c.fill(false);
  std::vector<std::vector<double>> ious(dets.size(), std::vector<double>(labels.size(), -1.0));
  for (size_t d = 0; d < dets.size(); ++d) {
    for (size_t l = 0; l < labels.size(); ++l) {
      if (dets[d].class_id == labels[l].class_id) ious[d][l] = iou(dets[d], labels[l]);
    }
  }
  for (int t = 0; t < kThresholds; ++t) {
    const double threshold = 0.5 + 0.05 * t;
    std::vector<bool> taken(labels.size(), false);
    for (size_t d = 0; d < dets.size(); ++d) {
      int64_t best = -1;
      for (size_t l = 0; l < labels.size(); ++l) {
        if (ious[d][l] >= threshold && (best < 0 || ious[d][l] > ious[d][best])) {
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

bool read_number(simdjson::dom::element e, double& out) {
  if (!e.get(out)) return true;
  int64_t i = 0;
  if (!e.get(i)) {
    out = static_cast<double>(i);
    return true;
  }
  return false;
}

bool first_number(simdjson::dom::object o, std::initializer_list<const char*> keys, double& out) {
  for (const char* k : keys) {
    simdjson::dom::element e;
    if (!o[k].get(e) && read_number(e, out)) return true;
  }
  return false;
}

}  // namespace

MapResult mean_average_precision(std::span<const ImageBoxes> images) {
  struct Scored {
    double score;
    int32_t class_id;
    std::array<bool, kThresholds> correct;
  };
  std::vector<Scored> all;
  std::map<int32_t, int64_t> labels_per_class;
  MapResult result;
  for (const ImageBoxes& image : images) {
    std::vector<Box> dets = image.detections;
    std::stable_sort(dets.begin(), dets.end(),
                     [](const Box& a, const Box& b) { return a.score > b.score; });
    const auto correct = match(dets, image.labels);
    for (size_t d = 0; d < dets.size(); ++d) {
      all.push_back({dets[d].score, dets[d].class_id, correct[d]});
    }
    for (const Box& g : image.labels) ++labels_per_class[g.class_id];
    result.labels += static_cast<int64_t>(image.labels.size());
    result.detections += static_cast<int64_t>(dets.size());
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const Scored& a, const Scored& b) { return a.score > b.score; });
  for (const auto& [class_id, num_labels] : labels_per_class) {
    std::array<std::vector<double>, kThresholds> recall, precision;
    std::array<int64_t, kThresholds> tp{};
    int64_t n = 0;
    for (const Scored& s : all) {
      if (s.class_id != class_id) continue;
      ++n;
      for (int t = 0; t < kThresholds; ++t) {
        tp[t] += s.correct[t];
        recall[t].push_back(static_cast<double>(tp[t]) / static_cast<double>(num_labels));
        precision[t].push_back(static_cast<double>(tp[t]) / static_cast<double>(n));
      }
    }
    if (n == 0) continue;  // AP 0
    for (int t = 0; t < kThresholds; ++t) {
      const double ap = average_precision(recall[t], precision[t]);
      if (t == 0) result.map50 += ap;
      result.map50_95 += ap / kThresholds;
    }
  }
  if (!labels_per_class.empty()) {
    result.map50 /= static_cast<double>(labels_per_class.size());
    result.map50_95 /= static_cast<double>(labels_per_class.size());
  }
  return result;
}

StatusOr<std::vector<Box>> parse_yolo_label_text(std::string_view text, int64_t width,
                                                 int64_t height) {
  std::vector<Box> boxes;
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
      if (ec != std::errc() || !std::isfinite(x)) {
        return invalid_argument("YOLO label line {}: not a number", line_number);
      }
      v.push_back(x);
      line.remove_prefix(static_cast<size_t>(ptr - line.data()));
    }
    if (v.empty()) continue;
    if (v.size() != 5 || v[0] < 0 || v[0] != std::floor(v[0])) {
      return invalid_argument("YOLO label line {}: expected 'class cx cy w h'", line_number);
    }
    const double w = static_cast<double>(width), h = static_cast<double>(height);
    boxes.push_back({(v[1] - v[3] / 2) * w, (v[2] - v[4] / 2) * h, (v[1] + v[3] / 2) * w,
                     (v[2] + v[4] / 2) * h, 1.0, static_cast<int32_t>(v[0])});
  }
  return boxes;
}

StatusOr<std::vector<Box>> parse_detect_answer(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto error = parser.parse(json.data(), json.size()).get(doc); error) {
    return invalid_argument("/detect answer is not JSON: {}", simdjson::error_message(error));
  }
  simdjson::dom::array list;
  if (doc["detections"].get(list)) {
    simdjson::dom::array images;
    if ((doc["images"].get(images) && doc["results"].get(images)) || images.size() == 0 ||
        images.at(0)["detections"].get(list)) {
      return invalid_argument("/detect answer has no 'detections'");
    }
  }
  std::vector<Box> boxes;
  for (simdjson::dom::element e : list) {
    simdjson::dom::object o;
    if (e.get(o)) return invalid_argument("/detect answer: a detection is not an object");
    Box b;
    simdjson::dom::array coords;
    if (!o["box"].get(coords) || !o["bbox"].get(coords)) {
      double v[4];
      size_t i = 0;
      for (simdjson::dom::element c : coords) {
        if (i < 4 && !read_number(c, v[i])) return invalid_argument("/detect answer: bad box");
        ++i;
      }
      if (i != 4) return invalid_argument("/detect answer: a box needs 4 numbers");
      b.x1 = v[0], b.y1 = v[1], b.x2 = v[2], b.y2 = v[3];
    } else if (!first_number(o, {"x1"}, b.x1) || !first_number(o, {"y1"}, b.y1) ||
               !first_number(o, {"x2"}, b.x2) || !first_number(o, {"y2"}, b.y2)) {
      return invalid_argument("/detect answer: a detection has no box");
    }
    double class_id = 0;
    if (!first_number(o, {"score", "confidence"}, b.score) ||
        !first_number(o, {"class_id", "class", "category_id"}, class_id)) {
      return invalid_argument("/detect answer: a detection lacks score or class");
    }
    b.class_id = static_cast<int32_t>(class_id);
    boxes.push_back(b);
  }
  return boxes;
}

StatusOr<std::pair<int64_t, int64_t>> image_size(std::string_view b) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(b[i]); };
  if (b.size() >= 24 && b.substr(0, 8) == "\x89PNG\r\n\x1a\n") {
    auto be32 = [&](size_t i) {
      return (int64_t{byte(i)} << 24) | (byte(i + 1) << 16) | (byte(i + 2) << 8) | byte(i + 3);
    };
    return std::pair(be32(16), be32(20));
  }
  if (b.size() >= 4 && byte(0) == 0xFF && byte(1) == 0xD8) {
    size_t i = 2;
    while (i + 9 < b.size()) {
      if (byte(i) != 0xFF) return invalid_argument("corrupt JPEG header");
      const unsigned marker = byte(i + 1);
      if (marker == 0xFF) {  // fill byte
        ++i;
        continue;
      }
      const size_t length = (byte(i + 2) << 8) | byte(i + 3);
      // Start-of-frame markers (C0..CF except DHT C4, JPG C8, DAC CC) hold the size.
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
        const int64_t height = (byte(i + 5) << 8) | byte(i + 6);
        const int64_t width = (byte(i + 7) << 8) | byte(i + 8);
        return std::pair(width, height);
      }
      i += 2 + length;
    }
    return invalid_argument("JPEG without a frame header");
  }
  return invalid_argument("not a JPEG or PNG image");
}

}  // namespace kestrel::bench
