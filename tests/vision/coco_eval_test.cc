// mAP evaluation: YOLO label parsing, AP on hand-computed cases (YOLOv5's interpolation gives 0.995
// for a perfect detector), val.py's matching rule, and the reference's own detections scored
// against coco-val's labels (which must give the published 0.333 / 0.512).
#include "kestrel/vision/coco_eval.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <iostream>

#include "vision_test_util.h"

namespace kestrel::vision {
namespace {

TEST(YoloLabelsTest, BoxesPolygonsAndErrors) {
  const auto boxes =
      parse_yolo_labels("0 0.5 0.5 0.2 0.4\r\n\n  17 0.1 0.2 0.1 0.2 \n3 0.1 0.1 0.3 0.1 0.2 0.5\n",
                        200, 100)
          .value();
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0].class_id, 0);
  EXPECT_DOUBLE_EQ(boxes[0].x1, 80);
  EXPECT_DOUBLE_EQ(boxes[0].y1, 30);
  EXPECT_DOUBLE_EQ(boxes[0].x2, 120);
  EXPECT_DOUBLE_EQ(boxes[0].y2, 70);
  EXPECT_EQ(boxes[1].class_id, 17);
  EXPECT_DOUBLE_EQ(boxes[1].x1, 10);
  EXPECT_DOUBLE_EQ(boxes[1].y2, 30);
  // Polygon (0.1,0.1) (0.3,0.1) (0.2,0.5): its extent.
  EXPECT_EQ(boxes[2].class_id, 3);
  EXPECT_DOUBLE_EQ(boxes[2].x1, 20);
  EXPECT_DOUBLE_EQ(boxes[2].x2, 60);
  EXPECT_DOUBLE_EQ(boxes[2].y1, 10);
  EXPECT_DOUBLE_EQ(boxes[2].y2, 50);
  EXPECT_TRUE(parse_yolo_labels("", 10, 10)->empty());
  for (const char* bad :
       {"0 0.5 0.5 0.2", "x 0.5 0.5 0.2 0.2", "-1 0.5 0.5 0.2 0.2", "1.5 0.5 0.5 0.2 0.2",
        "0 0.5,0.5 0.2 0.2", "0 nan 0.5 0.2 0.2", "0 0.1 0.1 0.2 0.2 0.3 0.3 0.4"}) {
    StatusOr<std::vector<GroundTruthBox>> r = parse_yolo_labels(bad, 10, 10);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  StatusOr<std::vector<GroundTruthBox>> line3 = parse_yolo_labels("0 .5 .5 .1 .1\n\n0 1", 10, 10);
  EXPECT_NE(line3.status().message().find("line 3"), std::string_view::npos) << line3.status();
  // A missing file is an image without objects.
  EXPECT_TRUE(read_yolo_labels("/nonexistent/labels/x.txt", 10, 10)->empty());
}

TEST(Coco91Test, CategoryIds) {
  EXPECT_EQ(coco80_to_coco91(0), 1);    // person
  EXPECT_EQ(coco80_to_coco91(11), 13);  // stop sign (12 is unused)
  EXPECT_EQ(coco80_to_coco91(79), 90);  // toothbrush
  EXPECT_EQ(coco80_to_coco91(80), -1);
  EXPECT_EQ(coco80_to_coco91(-1), -1);
  for (int32_t c = 1; c < 80; ++c) EXPECT_GT(coco80_to_coco91(c), coco80_to_coco91(c - 1));
}

GroundTruthBox label(int32_t cls, double x1, double y1, double x2, double y2) {
  return {cls, x1, y1, x2, y2};
}

Detection det(int32_t cls, float score, float x1, float y1, float x2, float y2) {
  return {x1, y1, x2, y2, score, cls};
}

TEST(EvaluateTest, PerfectDetectionsScoreYoloV5s0995) {
  const EvalImage images[] = {
      {{det(0, 0.9f, 0, 0, 10, 10)}, {label(0, 0, 0, 10, 10)}},
      {{det(2, 0.3f, 5, 5, 50, 50)}, {label(2, 5, 5, 50, 50)}},
  };
  const EvalResult r = evaluate_detections(images);
  EXPECT_NEAR(r.map50, 0.995, 1e-12);
  EXPECT_NEAR(r.map50_95, 0.995, 1e-12);
  ASSERT_EQ(r.classes.size(), 2u);
  EXPECT_EQ(r.classes[1].class_id, 2);
  EXPECT_EQ(r.classes[1].precision, 1.0);
  EXPECT_EQ(r.classes[1].recall, 1.0);
  EXPECT_EQ(r.num_images, 2);
  EXPECT_EQ(r.num_labels, 2);
}

TEST(EvaluateTest, HandComputedPrecisionRecallCurve) {
  // Scores 0.9 (TP), 0.8 (FP), 0.7 (TP) against two labels: recall .5 .5 1, precision 1 .5 .67.
  // Envelope 1 up to recall .5, 2/3 after; trapezoids on the 101 points:
  //   0.49 + 0.01 * (1 + 2/3) / 2 + 0.49 * 2/3 + 0.01 * (2/3) / 2.
  const EvalImage images[] = {
      {{det(0, 0.9f, 0, 0, 10, 10), det(0, 0.8f, 100, 100, 110, 110), det(0, 0.7f, 20, 20, 30, 30)},
       {label(0, 0, 0, 10, 10), label(0, 20, 20, 30, 30)}}};
  const double want = 0.49 + 0.01 * (1 + 2.0 / 3) / 2 + 0.49 * 2.0 / 3 + 0.01 * (2.0 / 3) / 2;
  const EvalResult r = evaluate_detections(images);
  EXPECT_NEAR(r.map50, want, 1e-12);
  EXPECT_NEAR(r.map50_95, want, 1e-12);
  // Best F1: all three detections (P 2/3, R 1: F1 0.8) beat the first alone (P 1, R .5: 0.67).
  EXPECT_NEAR(r.classes[0].precision, 2.0 / 3, 1e-12);
  EXPECT_EQ(r.classes[0].recall, 1.0);
}

TEST(EvaluateTest, AClassWithoutDetectionsCountsZeroAndStrayClassesCountNowhere) {
  const EvalImage images[] = {
      {{det(0, 0.9f, 0, 0, 10, 10), det(7, 0.99f, 0, 0, 10, 10)},
       {label(0, 0, 0, 10, 10), label(1, 50, 50, 60, 60)}},
      {{}, {}},  // an image with neither
  };
  const EvalResult r = evaluate_detections(images);
  ASSERT_EQ(r.classes.size(), 2u);
  EXPECT_EQ(r.classes[1].num_detections, 0);
  EXPECT_EQ(r.classes[1].ap50, 0.0);
  EXPECT_NEAR(r.map50, 0.995 / 2, 1e-12);
  EXPECT_EQ(r.num_detections, 2);
  EXPECT_EQ(evaluate_detections({}).map50, 0.0);
}

TEST(EvaluateTest, ValPyMatchingEachDetectionTakesItsBestLabelOnly) {
  // Both detections' best label is A (IoU 1); the second is then a false positive although label B
  // (IoU 0.9 with it) stays unmatched. TP, FP: recall .5 .5, precision 1 .5; envelope 1 up to
  // recall .5, then falling linearly to 0 at recall 1:  0.49 + 0.01 * 1.5 / 2 + 0.125.
  const EvalImage images[] = {{{det(0, 0.9f, 0, 0, 10, 10), det(0, 0.8f, 0, 0, 10, 10)},
                               {label(0, 0, 0, 10, 10), label(0, 0, 0, 10, 9)}}};
  const EvalResult r = evaluate_detections(images);
  EXPECT_NEAR(r.map50, 0.49 + 0.0075 + 0.125, 1e-12);
  // At IoU >= 0.95 label B is out of reach anyway: the same curve.
  EXPECT_NEAR(r.map50_95, r.map50, 1e-12);
}

TEST(EvaluateTest, IouThresholdsFromHalfToNinetyFive) {
  // One detection with IoU 0.78 against its label: a TP at 0.50..0.75 (6 thresholds), else FP.
  const EvalImage images[] = {{{det(0, 0.5f, 0, 0, 10, 7.8f)}, {label(0, 0, 0, 10, 10)}}};
  const EvalResult r = evaluate_detections(images);
  EXPECT_NEAR(r.map50, 0.995, 1e-12);
  EXPECT_NEAR(r.map50_95, 0.995 * 6 / 10, 1e-12);
}

// The reference's own mAP detections, scored here: the published 0.333 / 0.512 if this evaluator is
// YOLOv5's.
TEST(EvaluateReferenceTest, ReferenceDetectionsGiveThePublishedMap) {
  REQUIRE_SHARED();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(
      parser.load((testing::shared_dir() / "reference/yolov5n_reference.json").string()).get(doc),
      simdjson::SUCCESS);
  std::vector<EvalImage> images;
  for (auto [name, entry] : doc["images"].get_object()) {
    if (std::string_view(entry["set"]) != "coco-val/images") continue;
    const std::string stem(std::string_view(name).substr(0, std::string_view(name).rfind('.')));
    EvalImage image;
    image.labels =
        read_yolo_labels((testing::shared_dir() / "coco-val/labels" / (stem + ".txt")).string(),
                         int64_t(entry["width"]), int64_t(entry["height"]))
            .value();
    for (simdjson::dom::element row : entry["detections_map"].get_array()) {
      simdjson::dom::array r = row;
      auto num = [&](size_t i) {
        simdjson::dom::element e = r.at(i);
        return e.is_double() ? double(e) : double(int64_t(e));
      };
      image.detections.push_back({float(num(0)), float(num(1)), float(num(2)), float(num(3)),
                                  float(num(4)), int32_t(num(5))});
    }
    images.push_back(std::move(image));
  }
  ASSERT_EQ(images.size(), 128u);
  const EvalResult r = evaluate_detections(images);
  std::cout << "reference detections: mAP@0.5 " << r.map50 << ", mAP@0.5:0.95 " << r.map50_95
            << " (" << r.classes.size() << " classes, " << r.num_labels << " labels, "
            << r.num_detections << " detections)\n";
  EXPECT_NEAR(r.map50_95, 0.333, 0.0015);
  EXPECT_NEAR(r.map50, 0.512, 0.0015);
}

}  // namespace
}  // namespace kestrel::vision
