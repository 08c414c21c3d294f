// Batched NMS: the documented semantics (strict IoU threshold, tie-breaking, top-k, max detections,
// class-aware vs agnostic), agreement with an independent brute-force NMS on random outputs at
// batch sizes 1..64 (with empty images, thousands of boxes and many ties), padding, no leakage
// between images, and the mapping back to source pixels.
#include "kestrel/vision/nms.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace kestrel::vision {
namespace {

Candidate box(float x1, float y1, float x2, float y2, float score, int32_t cls, int64_t anchor) {
  return {x1, y1, x2, y2, score, cls, anchor};
}

TEST(NmsIouTest, Definition) {
  EXPECT_EQ(nms_iou(box(0, 0, 2, 2, 1, 0, 0), box(1, 1, 3, 3, 1, 0, 1)), 1.0f / 7.0f);
  EXPECT_EQ(nms_iou(box(0, 0, 2, 2, 1, 0, 0), box(2, 0, 4, 2, 1, 0, 1)), 0.0f);  // touching
  EXPECT_EQ(nms_iou(box(0, 0, 2, 2, 1, 0, 0), box(0, 0, 2, 2, 1, 0, 1)), 1.0f);
  EXPECT_EQ(nms_iou(box(0, 0, 0, 0, 1, 0, 0), box(0, 0, 0, 0, 1, 0, 1)), 0.0f);  // no area
  EXPECT_EQ(nms_iou(box(3, 3, 1, 1, 1, 0, 0), box(0, 0, 4, 4, 1, 0, 1)), 0.0f);  // inverted
  // fmaxf/fminf drop a NaN operand: the NaN box has no area and the union comes out 0.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(nms_iou(box(nan, 0, 2, 2, 1, 0, 0), box(0, 0, 2, 2, 1, 0, 1)), 0.0f);
}

TEST(NmsTest, IouAtTheThresholdDoesNotSuppress) {
  // IoU 3/5 exactly as float: 0.6f.
  const std::vector<Candidate> c = {box(0, 0, 4, 1, 0.9f, 0, 0), box(1, 0, 5, 1, 0.8f, 0, 1)};
  ASSERT_EQ(nms_iou(c[0], c[1]), 0.6f);
  DetectionOptions o;
  o.iou_threshold = 0.6f;
  EXPECT_EQ(nms(c, o).size(), 2u);
  o.iou_threshold = std::nextafter(0.6f, 0.0f);
  EXPECT_EQ(nms(c, o).size(), 1u);
}

TEST(NmsTest, ClassAwareAndAgnostic) {
  const std::vector<Candidate> c = {box(0, 0, 10, 10, 0.9f, 0, 0), box(1, 1, 10, 10, 0.8f, 1, 1),
                                    box(0, 0, 10, 9, 0.7f, 0, 2), box(50, 50, 60, 60, 0.6f, 0, 3)};
  DetectionOptions o;
  std::vector<Detection> d = nms(c, o);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].score, 0.9f);
  EXPECT_EQ(d[1].class_id, 1);
  EXPECT_EQ(d[2].score, 0.6f);
  o.class_agnostic = true;
  d = nms(c, o);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[1].score, 0.6f);
}

TEST(NmsTest, EqualScoresKeepTheLowerAnchorThenTheLowerClass) {
  DetectionOptions o;
  o.class_agnostic = true;
  // Given in (anchor, class) order, as the decoder produces them.
  const std::vector<Candidate> c = {box(0, 0, 10, 10, 0.5f, 3, 4), box(0, 0, 10, 10, 0.5f, 1, 7),
                                    box(0, 0, 10, 10, 0.5f, 2, 7)};
  std::vector<Detection> d = nms(c, o);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].class_id, 3);  // anchor 4 beats anchor 7
  d = nms(std::span(c).subspan(1), o);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].class_id, 1);  // same anchor: class 1 beats class 2
}

TEST(NmsTest, ScoreThresholdTopKAndMaxDetections) {
  std::vector<Candidate> c;
  for (int i = 0; i < 10; ++i) {
    c.push_back(box(20.0f * i, 0, 20.0f * i + 10, 10, 0.1f * static_cast<float>(i), 0, i));
  }
  DetectionOptions o;
  o.score_threshold = 0.45f;  // keeps 0.5 .. 0.9 (5 boxes)
  EXPECT_EQ(nms(c, o).size(), 5u);
  o.top_k = 3;
  std::vector<Detection> d = nms(c, o);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_FLOAT_EQ(d[0].score, 0.9f);
  EXPECT_FLOAT_EQ(d[2].score, 0.7f);
  o.top_k = 30000;
  o.max_detections = 2;
  d = nms(c, o);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_FLOAT_EQ(d[1].score, 0.8f);
  // top_k counts suppressed candidates too: the best box hides the next, then nothing is left.
  c = {box(0, 0, 10, 10, 0.9f, 0, 0), box(0, 0, 10, 10, 0.8f, 0, 1),
       box(50, 0, 60, 10, 0.7f, 0, 2)};
  o.score_threshold = 0;
  o.max_detections = 300;
  o.top_k = 2;
  EXPECT_EQ(nms(c, o).size(), 1u);
  EXPECT_TRUE(nms({}, o).empty());
}

TEST(NmsTest, MapToSourceUndoesTheLetterboxAndClips) {
  const LetterboxParams p = compute_letterbox(810, 1080).value();  // ratio 0.5926, pad_left 80
  const Detection d{80.0f, 0.0f, 560.0f, 640.0f, 0.5f, 3};
  const Detection m = map_to_source(d, p);
  EXPECT_FLOAT_EQ(m.x1, 0.0f);
  EXPECT_FLOAT_EQ(m.x2, 810.0f);
  EXPECT_FLOAT_EQ(m.y2, 1080.0f);
  const Detection outside{0.0f, -20.0f, 700.0f, 700.0f, 0.5f, 3};
  const Detection c = map_to_source(outside, p);
  EXPECT_EQ(c.x1, 0.0f);
  EXPECT_EQ(c.y1, 0.0f);
  EXPECT_EQ(c.x2, 810.0f);
  EXPECT_EQ(c.y2, 1080.0f);
  const Detection mid{320.0f, 320.0f, 330.0f, 330.0f, 0.5f, 3};
  EXPECT_FLOAT_EQ(map_to_source(mid, p).x1, (320.0f - 80.0f) / static_cast<float>(p.ratio));
  EXPECT_EQ(map_to_source(mid, p).score, 0.5f);
  EXPECT_EQ(map_to_source(mid, p).class_id, 3);
}

// ---- random outputs against an independent brute-force NMS ----

// A YOLOv5-layout output [batch, anchors, 5 + classes] with clustered boxes; scores are drawn from
// a few values so that ties are common; every fourth image has no box over any threshold.
Tensor random_output(int64_t batch, int64_t anchors, int64_t classes, uint32_t seed) {
  Tensor t = Tensor::allocate(DType::kFloat32, Shape{batch, anchors, 5 + classes}).value();
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> pos(0, 640), size(4, 120), jitter(-6, 6);
  float* p = t.data<float>();
  for (int64_t b = 0; b < batch; ++b) {
    float cx = pos(rng), cy = pos(rng), w = size(rng), h = size(rng);
    for (int64_t a = 0; a < anchors; ++a) {
      float* r = p + (b * anchors + a) * (5 + classes);
      if (rng() % 8 == 0)
        cx = pos(rng), cy = pos(rng), w = size(rng), h = size(rng);  // new cluster
      r[0] = cx + jitter(rng), r[1] = cy + jitter(rng), r[2] = w + jitter(rng),
      r[3] = h + jitter(rng);
      r[4] = b % 4 == 3 ? 0.0f : static_cast<float>(rng() % 5) / 4.0f;
      for (int64_t c = 0; c < classes; ++c) r[5 + c] = static_cast<float>(rng() % 4) / 3.0f;
    }
  }
  return t;
}

// Standard NMS written the other way round: sort by the documented key, then suppression flags.
std::vector<Detection> brute_force_nms(std::vector<Candidate> c, const DetectionOptions& o) {
  std::erase_if(c, [&](const Candidate& x) { return !(x.score > o.score_threshold); });
  std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.anchor != b.anchor) return a.anchor < b.anchor;
    return a.class_id < b.class_id;
  });
  if (c.size() > static_cast<size_t>(o.top_k)) c.resize(static_cast<size_t>(o.top_k));
  std::vector<bool> suppressed(c.size(), false);
  std::vector<Detection> out;
  for (size_t i = 0; i < c.size() && out.size() < static_cast<size_t>(o.max_detections); ++i) {
    if (suppressed[i]) continue;
    out.push_back({c[i].x1, c[i].y1, c[i].x2, c[i].y2, c[i].score, c[i].class_id});
    for (size_t j = i + 1; j < c.size(); ++j) {
      if ((o.class_agnostic || c[i].class_id == c[j].class_id) &&
          nms_iou(c[i], c[j]) > o.iou_threshold) {
        suppressed[j] = true;
      }
    }
  }
  return out;
}

void expect_same(const std::vector<Detection>& got, const std::vector<Detection>& want,
                 const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(Detection)), 0) << where << " detection " << i;
  }
}

Tensor slice(const Tensor& t, int64_t i) {
  std::vector<int64_t> dims = t.shape().vec();
  const size_t bytes = t.nbytes() / static_cast<size_t>(dims[0]);
  dims[0] = 1;
  Tensor out = Tensor::allocate(t.dtype(), Shape(dims)).value();
  std::memcpy(out.raw_data(), static_cast<const char*>(t.raw_data()) + i * bytes, bytes);
  return out;
}

TEST(BatchedNmsTest, AgreesWithBruteForceAtEveryBatchSizeWithoutLeaks) {
  for (int64_t batch = 1; batch <= 64; ++batch) {
    const Tensor out = random_output(batch, 150, 3, static_cast<uint32_t>(batch));
    DetectionOptions o;
    o.score_threshold = 0.2f;
    o.iou_threshold = 0.45f;
    o.max_detections = 20;
    o.multi_label = batch % 2 == 0;
    o.class_agnostic = batch % 3 == 0;
    const NmsOutput nms_out = batched_nms(out, o).value();
    ASSERT_EQ(nms_out.boxes.shape(), (Shape{batch, 20, 4}));
    ASSERT_EQ(nms_out.scores.shape(), (Shape{batch, 20}));
    ASSERT_EQ(nms_out.classes.shape(), (Shape{batch, 20}));
    ASSERT_EQ(nms_out.num_dets.shape(), (Shape{batch}));
    for (int64_t b = 0; b < batch; ++b) {
      const std::string where = "batch " + std::to_string(batch) + " image " + std::to_string(b);
      const std::vector<Detection> got = unpack_detections(nms_out, b);
      expect_same(got, brute_force_nms(decode_yolo(out, b, o).value(), o), where);
      // The image alone gives the same result: nothing leaks between images.
      expect_same(unpack_detections(batched_nms(slice(out, b), o).value(), 0), got, where);
      if (b % 4 == 3) {
        EXPECT_TRUE(got.empty()) << where;
      }
      // Padding.
      for (int64_t i = static_cast<int64_t>(got.size()); i < 20; ++i) {
        ASSERT_EQ(nms_out.classes.data<int32_t>()[b * 20 + i], -1);
        ASSERT_EQ(nms_out.scores.data<float>()[b * 20 + i], 0.0f);
        for (int k = 0; k < 4; ++k)
          ASSERT_EQ(nms_out.boxes.data<float>()[(b * 20 + i) * 4 + k], 0.0f);
      }
    }
  }
}

TEST(BatchedNmsTest, ThousandsOfBoxesWithTies) {
  const Tensor out = random_output(3, 6000, 4, 99);
  for (bool agnostic : {false, true}) {
    for (int64_t top_k : {30000, 500}) {
      DetectionOptions o;
      o.score_threshold = 0.001f;
      o.iou_threshold = 0.5f;
      o.multi_label = true;
      o.class_agnostic = agnostic;
      o.top_k = top_k;
      const NmsOutput nms_out = batched_nms(out, o).value();
      for (int64_t b = 0; b < 3; ++b) {
        const std::vector<Candidate> c = decode_yolo(out, b, o).value();
        EXPECT_GT(c.size(), 5000u);
        const std::vector<Detection> got = unpack_detections(nms_out, b);
        expect_same(got, brute_force_nms(c, o), "image " + std::to_string(b));
        EXPECT_LE(got.size(), 300u);
        for (size_t i = 1; i < got.size(); ++i) ASSERT_GE(got[i - 1].score, got[i].score);
      }
    }
  }
}

TEST(BatchedNmsTest, MapsEachImageWithItsOwnLetterbox) {
  const Tensor out = random_output(2, 100, 2, 5);
  const LetterboxParams params[] = {compute_letterbox(810, 1080).value(),
                                    compute_letterbox(1280, 720).value()};
  DetectionOptions o;
  const NmsOutput mapped = batched_nms(out, o, params).value();
  const NmsOutput raw = batched_nms(out, o).value();
  for (int64_t b = 0; b < 2; ++b) {
    const std::vector<Detection> m = unpack_detections(mapped, b), r = unpack_detections(raw, b);
    ASSERT_EQ(m.size(), r.size());
    ASSERT_FALSE(m.empty());
    for (size_t i = 0; i < m.size(); ++i) {
      const Detection want = map_to_source(r[i], params[b]);
      EXPECT_EQ(std::memcmp(&m[i], &want, sizeof(Detection)), 0);
      EXPECT_LE(m[i].x2, static_cast<float>(params[b].source_width));
      EXPECT_LE(m[i].y2, static_cast<float>(params[b].source_height));
    }
  }
  EXPECT_EQ(batched_nms(out, o, std::span(params, 1)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(BatchedNmsTest, BadArgumentsAndHostileValues) {
  const Tensor out = random_output(1, 10, 2, 1);
  DetectionOptions o;
  o.max_detections = 0;
  EXPECT_EQ(batched_nms(out, o).status().code(), StatusCode::kInvalidArgument);
  o.max_detections = 300;
  o.top_k = 0;
  EXPECT_EQ(batched_nms(out, o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(
      batched_nms(Tensor::from_vector<float>(Shape{1, 5}, {1, 2, 3, 4, 5}), {}).status().code(),
      StatusCode::kInvalidArgument);
  // NaN and infinite coordinates and scores: no crash, and NaN boxes suppress nothing.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor hostile =
      Tensor::from_vector<float>(Shape{1, 4, 6}, {nan, nan, nan, nan, 1, 1,     //
                                                  10,  10,  5,   5,   1, inf,   //
                                                  10,  10,  5,   5,   1, 0.9f,  //
                                                  inf, 10,  inf, 5,   1, 0.8f});
  const NmsOutput r = batched_nms(hostile, DetectionOptions{}).value();
  // Kept: the infinite score, the NaN box and the infinite box (no area: they suppress nothing);
  // the 0.9 copy of the first box is suppressed.
  EXPECT_EQ(r.num_dets.data<int32_t>()[0], 3);
}

}  // namespace
}  // namespace kestrel::vision
