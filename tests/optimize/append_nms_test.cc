// append_yolo_nms (optimize/append_nms.h): the graph before and after (YoloNms on the first
// output, its four results the only outputs, the float16 cast skipped, metadata), shape inference
// of the new outputs, and the refusals. The kernels' results are tested in tests/vision and
// tests/gpu.
#include "kestrel/optimize/append_nms.h"

#include <gtest/gtest.h>

#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"

namespace kestrel::optimize {
namespace {

Attributes nms_attrs() {
  Attributes a;
  a.set("score_threshold", 0.25f);
  a.set("iou_threshold", 0.45f);
  a.set("max_detections", int64_t{100});
  a.set("layout", std::string("v5"));
  return a;
}

// images [batch, 3, 4, 4] -> Reshape -> [batch, 8, 6] (a one-class YOLOv5-layout output), plus a
// second output; optionally computed in float16 and cast back, as an FP16 engine ends.
std::unique_ptr<ir::Graph> detector_graph(bool fp16_tail) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = 17;
  ir::Value* images = g->add_input(
      "images", {DType::kFloat32, ir::SymShape({ir::SymDim::symbol("batch"), 3, 4, 4})});
  ir::Value* shape = g->add_constant("shape", Tensor::from_vector<int64_t>(Shape{3}, {0, 8, 6}));
  ir::Value* x = images;
  if (fp16_tail) {
    Attributes to16;
    to16.set("to", int64_t{10});  // float16
    x = g->add_node("Cast", {x}, 1, to16)->output(0);
  }
  ir::Value* raw = g->add_node("Reshape", {x, shape}, 1)->output(0);
  if (fp16_tail) {
    Attributes to32;
    to32.set("to", int64_t{1});
    raw = g->add_node("Cast", {raw}, 1, to32)->output(0);
  }
  g->add_output(raw);
  g->add_output(images);
  EXPECT_TRUE(ir::annotate_symbolic_shapes(*g, nullptr).ok());
  return g;
}

TEST(AppendNmsTest, AppendsYoloNmsAndReplacesTheOutputs) {
  for (const bool fp16 : {false, true}) {
    auto g = detector_graph(fp16);
    ASSERT_TRUE(append_yolo_nms(*g, nms_attrs()).ok());
    ASSERT_TRUE(ir::annotate_symbolic_shapes(*g, nullptr).ok());
    ASSERT_TRUE(ir::verify_graph(*g).ok());
    ASSERT_EQ(g->outputs().size(), 4u);
    const char* types[] = {"float32[batch,100,4]", "float32[batch,100]", "int32[batch,100]",
                           "int32[batch]"};
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(g->outputs()[i]->name(), kNmsOutputNames[i]);
      EXPECT_EQ(g->outputs()[i]->type().to_string(), types[i]);
    }
    const ir::Node* nms = g->outputs()[0]->producer();
    ASSERT_NE(nms, nullptr);
    EXPECT_EQ(nms->op_type(), "YoloNms");
    // FP16: NMS reads the float16 tensor, the final cast is gone.
    EXPECT_EQ(nms->input(0)->dtype(), fp16 ? DType::kFloat16 : DType::kFloat32);
    EXPECT_EQ(nms->input(0)->producer()->op_type(), "Reshape");
    size_t casts = 0;
    for (const ir::Node* n : g->nodes()) casts += n->op_type() == "Cast";
    EXPECT_EQ(casts, fp16 ? 1u : 0u);
    EXPECT_NE(g->metadata.at("kestrel_nms").find("max_detections=100"), std::string::npos);
  }
}

TEST(AppendNmsTest, Refusals) {
  {
    auto g = detector_graph(false);
    ASSERT_TRUE(append_yolo_nms(*g, nms_attrs()).ok());
    EXPECT_EQ(append_yolo_nms(*g, nms_attrs()).code(), StatusCode::kInvalidArgument);
  }
  {
    auto g = detector_graph(false);
    g->clear_outputs();
    g->add_output(g->inputs()[0]);  // rank 4
    EXPECT_EQ(append_yolo_nms(*g, nms_attrs()).code(), StatusCode::kInvalidArgument);
    g->clear_outputs();
    EXPECT_EQ(append_yolo_nms(*g, nms_attrs()).code(), StatusCode::kInvalidArgument);
  }
  {
    // A value already named like an NMS output.
    auto g = std::make_unique<ir::Graph>();
    ir::Value* scores =
        g->add_input("scores", {DType::kFloat32, ir::SymShape({ir::SymDim::symbol("b"), 8, 6})});
    g->add_output(scores);
    EXPECT_EQ(append_yolo_nms(*g, nms_attrs()).code(), StatusCode::kInvalidArgument);
  }
}

TEST(AppendNmsTest, ShapeRuleChecksTheAttributes) {
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, AttributeValue>>{{"max_detections", int64_t{0}},
                                                           {"top_k", int64_t{0}},
                                                           {"layout", std::string("v7")},
                                                           {"iou_threshold", 1.5f}}) {
    auto g = detector_graph(false);
    Attributes a = nms_attrs();
    a.set(name, value);
    ASSERT_TRUE(append_yolo_nms(*g, a).ok());
    const Status s = ir::annotate_symbolic_shapes(*g, nullptr);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name << ": " << s;
  }
}

}  // namespace
}  // namespace kestrel::optimize
