#include "kestrel/ir/shape_inference.h"

#include <gtest/gtest.h>

#include "kestrel/ir/op_schema.h"
#include "kestrel/ir/verifier.h"

namespace kestrel::ir {
namespace {

TEST(ShapeInferenceTest, BroadcastsWithSymbolicBatch) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim::symbol("batch"), 3, SymDim(1)})});
  Value* y = g.add_input("y", {DType::kFloat32, SymShape({SymDim(4)})});
  Node* add = g.add_node("Add", {x, y}, 1);
  g.add_output(add->output(0));
  ASSERT_TRUE(verify_graph(g).ok());
  InferenceOptions options;
  options.symbols["batch"] = 6;
  StatusOr<InferredTypes> t = infer_types(g, options);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->at(add->output(0)).dims, (std::vector<int64_t>{6, 3, 4}));
  ASSERT_TRUE(annotate_symbolic_shapes(g, nullptr).ok());
  EXPECT_EQ(add->output(0)->type().to_string(), "float32[batch,3,4]");
}

TEST(ShapeInferenceTest, ErrorsNameTheNode) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim(2)})});
  Value* y = g.add_input("y", {DType::kFloat32, SymShape({SymDim(3)})});
  Node* add = g.add_node("Add", {x, y}, 1, {}, "bad_add");
  g.add_output(add->output(0));
  const Status s = verify_graph(g);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bad_add"), std::string::npos) << s;
}

TEST(ShapeInferenceTest, UnknownOperatorIsUnimplementedByName) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim(2)})});
  Node* n = g.add_node("FancyOp", {x}, 1, {}, "fancy");
  g.add_output(n->output(0));
  const Status s = verify_graph(g);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("FancyOp"), std::string::npos);
  EXPECT_NE(s.message().find("fancy"), std::string::npos);
}

TEST(ShapeInferenceTest, RejectsAttributesOfTheWrongType) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim(2)})});
  Attributes a;
  a.set("alpha", int64_t{3});
  Node* n = g.add_node("LeakyRelu", {x}, 1, a, "leaky");
  g.add_output(n->output(0));
  const Status s = verify_graph(g);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("alpha"), std::string::npos);
}

}  // namespace
}  // namespace kestrel::ir
