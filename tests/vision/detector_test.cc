// Detector: class names from model metadata, the model checks of Detector::create, and the whole
// images-to-detections path on a tiny hand-built "model" (and on yolov5n when ../shared is there).
#include "kestrel/vision/detector.h"

#include <gtest/gtest.h>

#include "kestrel/engine/builder.h"
#include "kestrel/engine/engine.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/vision/image.h"
#include "vision_test_util.h"

namespace kestrel::vision {
namespace {

TEST(ClassNamesTest, JsonPythonAndLists) {
  using V = std::vector<std::string>;
  EXPECT_EQ(parse_class_names(R"({"0": "person", "1": "bicycle"})").value(),
            (V{"person", "bicycle"}));
  EXPECT_EQ(parse_class_names("{0: 'person', 1: \"it's\", 2: 'a\\'b'}").value(),
            (V{"person", "it's", "a'b"}));
  EXPECT_EQ(parse_class_names(R"(["cat", "dog"])").value(), (V{"cat", "dog"}));
  EXPECT_EQ(parse_class_names(" { 2 : 'two' } ").value(), (V{"class0", "class1", "two"}));
  EXPECT_TRUE(parse_class_names("{}")->empty());
  EXPECT_TRUE(parse_class_names("[]")->empty());
  for (const char* bad : {"", "person", "{0: person}", "{0: 'a', 0: 'b'}", "{-1: 'a'}", "{0: 'a'",
                          "['a' 'b']", "{0: 'a'} x", "{99999999999: 'a'}"}) {
    EXPECT_EQ(parse_class_names(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// images [N, 3, 8, 8] -> Reshape -> [N, 32, 6]: a YOLOv5-layout "detector" with one class whose
// "detections" are pixel values.
std::unique_ptr<engine::Engine> tiny_detector(std::vector<int64_t> output_shape,
                                              std::string names = "{0: 'thing'}") {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = 17;
  ir::Value* images =
      g->add_input("images", {DType::kFloat32, ir::SymShape({ir::SymDim::symbol("N"), 3, 8, 8})});
  ir::Value* shape = g->add_constant(
      "shape",
      Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(output_shape.size())}, output_shape));
  ir::Node* reshape = g->add_node("Reshape", {images, shape}, 1);
  // Declared as an export declares it: [N, ...].
  std::vector<ir::SymDim> dims = {ir::SymDim::symbol("N")};
  for (size_t i = 1; i < output_shape.size(); ++i) dims.push_back(output_shape[i]);
  reshape->outputs()[0]->set_type({DType::kFloat32, ir::SymShape(dims)});
  g->add_output(reshape->outputs()[0]);
  g->metadata["names"] = std::move(names);
  StatusOr<std::unique_ptr<engine::Engine>> e =
      engine::Engine::create(std::move(g), {.backend = "cpu"});
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(e).value() : nullptr;
}

TEST(DetectorTest, RunsTheWholePathOnATinyModel) {
  auto engine = tiny_detector({-1, 32, 6});
  ASSERT_TRUE(engine);
  StatusOr<std::unique_ptr<Detector>> detector = Detector::create(*engine);
  ASSERT_TRUE(detector.ok()) << detector.status();
  EXPECT_EQ((*detector)->input_width(), 8);
  EXPECT_EQ((*detector)->input_height(), 8);
  EXPECT_EQ((*detector)->class_names(), std::vector<std::string>{"thing"});
  // Two images of different sizes in one batch.
  const Tensor images[] = {testing::pattern_image(16, 16, 3, 1),
                           testing::pattern_image(4, 12, 3, 2)};
  DetectionOptions o;
  o.score_threshold = 0.05f;
  StatusOr<std::vector<std::vector<Detection>>> dets = (*detector)->detect(images, o);
  ASSERT_TRUE(dets.ok()) << dets.status();
  ASSERT_EQ(dets->size(), 2u);
  // The same as the steps one by one.
  std::vector<LetterboxParams> params;
  const Tensor input = (*detector)->preprocess(images, &params).value();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[1].resized_height, 3);  // 4 * 8/12 = 2.67
  const std::vector<Tensor> output = (*detector)->infer(input).value();
  ASSERT_EQ(output.size(), 1u);
  EXPECT_EQ(output[0].shape(), (Shape{2, 32, 6}));
  const auto steps = (*detector)->postprocess(output, params, o).value();
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(steps[i].size(), (*dets)[i].size());
    for (size_t k = 0; k < steps[i].size(); ++k) {
      EXPECT_EQ(std::memcmp(&steps[i][k], &(*dets)[i][k], sizeof(Detection)), 0);
      EXPECT_LE((*dets)[i][k].x2, static_cast<float>(images[i].shape()[1]));
    }
  }
  // Bad input: no images, a wrong image tensor, letterbox placements that do not fit.
  EXPECT_EQ((*detector)->detect({}, o).status().code(), StatusCode::kInvalidArgument);
  const Tensor gray = Tensor::allocate(DType::kFloat32, Shape{8, 8, 3}).value();
  EXPECT_EQ((*detector)->detect({&gray, 1}, o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*detector)->postprocess(output, std::span(params).subspan(1), o).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(DetectorTest, RefusesModelsThatAreNotDetectors) {
  // A rank-4 output.
  auto rank4 = tiny_detector({-1, 3, 8, 8});
  ASSERT_TRUE(rank4);
  EXPECT_EQ(Detector::create(*rank4).status().code(), StatusCode::kInvalidArgument);
  // 6 values per anchor is 1 class, not the 3 the names promise.
  auto three_names = tiny_detector({-1, 32, 6}, "['a', 'b', 'c']");
  ASSERT_TRUE(three_names);
  EXPECT_EQ(Detector::create(*three_names).status().code(), StatusCode::kInvalidArgument);
  auto bad_names = tiny_detector({-1, 32, 6}, "not names");
  ASSERT_TRUE(bad_names);
  EXPECT_EQ(Detector::create(*bad_names).status().code(), StatusCode::kInvalidArgument);
}

TEST(DetectorTest, YoloV5nOnBus) {
  REQUIRE_SHARED();
  auto graph = onnx::import_model_file((testing::shared_dir() / "models/yolov5n.onnx").string());
  ASSERT_TRUE(graph.ok()) << graph.status();
  auto engine = engine::Engine::create(std::move(graph).value(), {.backend = "cpu"});
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto detector = Detector::create(**engine);
  ASSERT_TRUE(detector.ok()) << detector.status();
  EXPECT_EQ((*detector)->input_width(), 640);
  ASSERT_EQ((*detector)->class_names().size(), 80u);
  EXPECT_EQ((*detector)->class_names()[5], "bus");
  const Tensor bus = read_image((testing::shared_dir() / "images/bus.jpg").string()).value();
  const auto dets = (*detector)->detect({&bus, 1}, {}).value();
  ASSERT_EQ(dets[0].size(), 4u);  // three people and the bus
  EXPECT_EQ(dets[0][3].class_id, 5);
  EXPECT_NEAR(dets[0][0].score, 0.823, 0.005);
}

// An engine built with NMS (YoloNms appended) gives exactly what host-side NMS gives on the raw
// output, for detect.py's and val.py's settings.
TEST(DetectorTest, EngineNmsEqualsHostNmsOnYoloV5n) {
  REQUIRE_SHARED();
  register_detection_kernels();
  const std::string model = (testing::shared_dir() / "models/yolov5n.onnx").string();
  const Tensor images[] = {
      read_image((testing::shared_dir() / "images/bus.jpg").string()).value(),
      read_image((testing::shared_dir() / "images/zidane.jpg").string()).value()};
  DetectionOptions detect;
  DetectionOptions map;
  map.score_threshold = 0.001f;
  map.iou_threshold = 0.65f;
  map.multi_label = true;
  engine::BuildOptions raw_build;
  raw_build.engine.backend = "cpu";
  raw_build.max_batch = 2;
  auto raw_engine = engine::build_engine(onnx::import_model_file(model).value(), raw_build).value();
  auto raw = Detector::create(*raw_engine).value();
  EXPECT_FALSE(raw->has_nms());
  std::vector<LetterboxParams> params;
  const Tensor input = raw->preprocess(images, &params).value();
  const std::vector<Tensor> raw_out = raw->infer(input).value();
  for (const DetectionOptions& o : {detect, map}) {
    engine::BuildOptions b = raw_build;
    b.nms = yolo_nms_attributes(o);
    auto nms_engine = engine::build_engine(onnx::import_model_file(model).value(), b).value();
    auto with_nms = Detector::create(*nms_engine).value();
    ASSERT_TRUE(with_nms->has_nms());
    EXPECT_EQ(with_nms->output_names(),
              (std::vector<std::string>{"boxes", "scores", "classes", "num_dets"}));
    EXPECT_EQ(nms_engine->outputs()[0].type.to_string(), "float32[batch,300,4]");
    const auto expected = raw->postprocess(raw_out, params, o).value();
    const auto got = with_nms->postprocess(with_nms->infer(input).value(), params, o).value();
    ASSERT_EQ(got.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_EQ(got[i].size(), expected[i].size()) << "image " << i;
      EXPECT_GE(got[i].size(), 3u);
      for (size_t k = 0; k < got[i].size(); ++k) {
        EXPECT_EQ(std::memcmp(&got[i][k], &expected[i][k], sizeof(Detection)), 0)
            << "image " << i << " detection " << k;
      }
    }
    // A stricter threshold at postprocess keeps the engine's detections above it.
    DetectionOptions stricter = o;
    stricter.score_threshold = 0.5f;
    const auto fewer = with_nms->postprocess(with_nms->infer(input).value(), params, stricter);
    ASSERT_TRUE(fewer.ok()) << fewer.status();
    for (const Detection& d : (*fewer)[0]) EXPECT_GT(d.score, 0.5f);
  }
}

}  // namespace
}  // namespace kestrel::vision
