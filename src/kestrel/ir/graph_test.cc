#include "kestrel/ir/graph.h"

#include <gtest/gtest.h>

namespace kestrel::ir {
namespace {

TEST(GraphTest, SortsNodesTopologicallyAndKeepsUses) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim(2)})});
  Value* a = g.add_value("a");
  Value* b = g.add_value("b");
  // Added in reverse order on purpose.
  Node* second = g.add_node("Relu", {a}, {b});
  Node* first = g.add_node("Neg", {x}, {a});
  g.add_output(b);
  ASSERT_TRUE(g.sort_topologically().ok());
  EXPECT_EQ(g.nodes()[0], first);
  EXPECT_EQ(g.nodes()[1], second);
  ASSERT_EQ(a->uses().size(), 1u);
  EXPECT_EQ(a->uses()[0].node, second);
  EXPECT_EQ(a->producer(), first);
}

TEST(GraphTest, ReportsCycles) {
  Graph g;
  Value* a = g.add_value("a");
  Value* b = g.add_value("b");
  g.add_node("Relu", {a}, {b}, {}, "n1");
  g.add_node("Relu", {b}, {a}, {}, "n2");
  g.add_output(b);
  const Status s = g.sort_topologically();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("cycle"), std::string::npos);
}

TEST(GraphTest, RemoveDeadDropsUnusedNodesAndValues) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim(2)})});
  Node* used = g.add_node("Relu", {x}, 1);
  g.add_node("Neg", {x}, 1);  // nothing reads it
  g.add_output(used->output(0));
  EXPECT_EQ(g.remove_dead(), 1u);
  EXPECT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(x->uses().size(), 1u);
}

TEST(GraphTest, ReplaceAllUsesRewiresNodesAndOutputs) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim(2)})});
  Node* relu = g.add_node("Relu", {x}, 1);
  Node* neg = g.add_node("Neg", {relu->output(0)}, 1);
  g.add_output(relu->output(0));
  g.replace_all_uses(relu->output(0), x);
  EXPECT_EQ(neg->input(0), x);
  EXPECT_EQ(g.outputs()[0], x);
  EXPECT_TRUE(relu->output(0)->uses().empty());
}

TEST(GraphTest, CloneIsDeep) {
  Graph g;
  Value* x = g.add_input("x", {DType::kFloat32, SymShape({SymDim::symbol("batch")})});
  Node* relu = g.add_node("Relu", {x}, 1, {}, "relu");
  g.add_output(relu->output(0));
  g.metadata["names"] = "{}";
  std::unique_ptr<Graph> c = g.clone();
  ASSERT_EQ(c->num_nodes(), 1u);
  EXPECT_NE(c->nodes()[0], relu);
  EXPECT_EQ(c->nodes()[0]->input(0), c->inputs()[0]);
  EXPECT_EQ(c->metadata["names"], "{}");
  EXPECT_EQ(c->inputs()[0]->shape().to_string(), "[batch]");
}

}  // namespace
}  // namespace kestrel::ir
