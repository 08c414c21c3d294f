// YOLO output decoders: layout resolution, thresholds, objectness, best-class vs multi-label, and
// float16 outputs, on small hand-made outputs.
#include "kestrel/vision/yolo_decode.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace kestrel::vision {
namespace {

// A YOLOv5 output [n, anchors, 5 + classes] from rows.
Tensor v5_output(int64_t n, int64_t anchors, int64_t classes, const std::vector<float>& values) {
  return Tensor::from_vector<float>(Shape{n, anchors, 5 + classes}, values);
}

TEST(YoloLayoutTest, ResolvedFromTheShape) {
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 25200, 85}, YoloLayout::kAuto).value(), YoloLayout::kV5);
  EXPECT_EQ(resolve_yolo_layout(Shape{8, 84, 8400}, YoloLayout::kAuto).value(), YoloLayout::kV8);
  // With the class count known, the size decides even for odd shapes.
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 6, 3}, YoloLayout::kAuto, 2).value(), YoloLayout::kV8);
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 3, 7}, YoloLayout::kAuto, 2).value(), YoloLayout::kV5);
  EXPECT_EQ(yolo_num_classes(Shape{1, 25200, 85}, YoloLayout::kV5), 80);
  EXPECT_EQ(yolo_num_classes(Shape{1, 84, 8400}, YoloLayout::kV8), 80);
  // Explicit layouts are checked.
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 25200, 85}, YoloLayout::kV8, 80).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 25200, 85}, YoloLayout::kV5, 81).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(resolve_yolo_layout(Shape{25200, 85}, YoloLayout::kAuto).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 4, 5}, YoloLayout::kAuto).status().code(),
            StatusCode::kInvalidArgument);  // too few channels for either
  // [1, 8, 9] is v5 or v8 with 4 classes: that needs an explicit layout.
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 8, 9}, YoloLayout::kAuto, 4).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(resolve_yolo_layout(Shape{1, 8, 9}, YoloLayout::kV8, 4).value(), YoloLayout::kV8);
}

TEST(YoloV5DecodeTest, ObjectnessTimesClassScoreWithStrictThresholds) {
  // Two classes; four anchors.
  const Tensor out = v5_output(1, 4, 2,
                               {
                                   10, 20, 4, 6, 0.9f,  0.5f, 0.8f,  // best class 1, 0.72
                                   0,  0,  2, 2, 0.25f, 1.0f, 1.0f,  // obj == threshold: out
                                   5,  5,  2, 2, 0.5f,  0.5f, 0.4f,  // 0.25 == threshold: out
                                   7,  7,  2, 2, 0.6f,  0.5f, 0.5f,  // tie: first class, 0.3
                               });
  DetectionOptions o;  // threshold 0.25, best class
  const std::vector<Candidate> c = decode_yolo(out, 0, o).value();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].anchor, 0);
  EXPECT_EQ(c[0].class_id, 1);
  EXPECT_EQ(c[0].score, 0.8f * 0.9f);
  EXPECT_EQ(c[0].x1, 8.0f);
  EXPECT_EQ(c[0].y1, 17.0f);
  EXPECT_EQ(c[0].x2, 12.0f);
  EXPECT_EQ(c[0].y2, 23.0f);
  EXPECT_EQ(c[1].anchor, 3);
  EXPECT_EQ(c[1].class_id, 0);
  EXPECT_EQ(c[1].score, 0.5f * 0.6f);

  o.multi_label = true;
  const std::vector<Candidate> m = decode_yolo(out, 0, o).value();
  ASSERT_EQ(m.size(), 4u);  // anchor 0: both classes (0.45, 0.72); anchor 3: both (0.3, 0.3)
  EXPECT_EQ(m[0].class_id, 0);
  EXPECT_EQ(m[0].score, 0.5f * 0.9f);
  EXPECT_EQ(m[1].class_id, 1);
  EXPECT_EQ(m[2].anchor, 3);
  EXPECT_EQ(m[3].anchor, 3);

  o.score_threshold = 0.001f;
  o.multi_label = false;
  EXPECT_EQ(decode_yolo(out, 0, o)->size(), 4u);
}

TEST(YoloV5DecodeTest, PicksTheRightImageOfABatchAndReadsFloat16) {
  std::vector<float> values(3 * 2 * 6, 0.0f);
  // image 1, anchor 1: a box of class 0.
  float* r = values.data() + (1 * 2 + 1) * 6;
  r[0] = 100, r[1] = 50, r[2] = 20, r[3] = 10, r[4] = 0.75f, r[5] = 0.5f;
  const Tensor out = v5_output(3, 2, 1, values);
  DetectionOptions o;
  EXPECT_TRUE(decode_yolo(out, 0, o)->empty());
  EXPECT_EQ(decode_yolo(out, 1, o)->size(), 1u);
  EXPECT_TRUE(decode_yolo(out, 2, o)->empty());
  EXPECT_EQ(decode_yolo(out, 3, o).status().code(), StatusCode::kInvalidArgument);

  Tensor half = Tensor::allocate(DType::kFloat16, out.shape()).value();
  for (int64_t i = 0; i < out.num_elements(); ++i) half.data<Half>()[i] = Half(values[i]);
  const std::vector<Candidate> c = decode_yolo(half, 1, o).value();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].score, 0.375f);
  EXPECT_EQ(c[0].x1, 90.0f);
  EXPECT_EQ(c[0].y2, 55.0f);
  EXPECT_EQ(decode_yolo(Tensor::from_vector<int32_t>(Shape{1, 1, 6}, {0, 0, 0, 0, 0, 0}), 0, o)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(YoloV8DecodeTest, ChannelsFirstWithoutObjectness) {
  // [1, 4 + 3, 2]: channel-major.
  const int64_t anchors = 2;
  std::vector<float> v(7 * anchors, 0.0f);
  auto set = [&](int64_t channel, int64_t anchor, float value) {
    v[channel * anchors + anchor] = value;
  };
  set(0, 0, 30), set(1, 0, 40), set(2, 0, 10), set(3, 0, 20);
  set(4, 0, 0.2f), set(5, 0, 0.9f), set(6, 0, 0.3f);
  set(0, 1, 5), set(1, 1, 5), set(2, 1, 2), set(3, 1, 2);
  set(4, 1, 0.25f), set(5, 1, 0.1f), set(6, 1, 0.1f);  // 0.25 is not > 0.25
  const Tensor out = Tensor::from_vector<float>(Shape{1, 7, anchors}, v);
  DetectionOptions o;
  const std::vector<Candidate> c = decode_yolo(out, 0, o).value();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].class_id, 1);
  EXPECT_EQ(c[0].score, 0.9f);
  EXPECT_EQ(c[0].x1, 25.0f);
  EXPECT_EQ(c[0].y1, 30.0f);
  EXPECT_EQ(c[0].x2, 35.0f);
  EXPECT_EQ(c[0].y2, 50.0f);
  o.multi_label = true;
  EXPECT_EQ(decode_yolo(out, 0, o)->size(), 2u);  // class 1 (0.9) and class 2 (0.3)
}

TEST(YoloDecodeTest, NonFiniteValuesAreNeverCandidatesUnlessTheyScore) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor out = v5_output(1, 3, 1,
                               {
                                   1, 1, 1, 1, nan, 1,    // NaN objectness: no
                                   1, 1, 1, 1, 1, nan,    // NaN score: no
                                   nan, 1, 1, 1, 1, inf,  // infinite score: yes, NaN box kept as is
                               });
  const std::vector<Candidate> c = decode_yolo(out, 0, DetectionOptions{}).value();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].anchor, 2);
  EXPECT_TRUE(std::isnan(c[0].x1));
}

}  // namespace
}  // namespace kestrel::vision
