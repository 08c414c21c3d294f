#include "kestrel/onnx/op_upgrades.h"

#include <set>

namespace kestrel::onnx {
namespace {

// Moves an ints attribute to a constant int64 input at `index` (when the attribute is present).
void attribute_to_input(ir::Graph& g, ir::Node* n, std::string_view attr, size_t index) {
  const AttributeValue* v = n->attrs().find(attr);
  if (v == nullptr) return;
  std::vector<int64_t> values;
  if (const auto* ints = std::get_if<std::vector<int64_t>>(v)) values = *ints;
  if (const auto* one = std::get_if<int64_t>(v)) values = {*one};
  ir::Value* c = g.add_constant(
      g.unique_name(fmt::format("{}_{}", n->name(), attr)),
      Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(values.size())}, values));
  while (n->num_inputs() <= index) n->add_input(nullptr);
  n->set_input(index, c);
  n->attrs().erase(attr);
}

// Moves a float attribute to a scalar input at `index` with the element type of input 0, through
// CastLike (the type is not known before inference).
void float_attribute_to_input(ir::Graph& g, ir::Node* n, std::string_view attr, size_t index) {
  const AttributeValue* v = n->attrs().find(attr);
  if (v == nullptr) return;
  const float f = std::get_if<float>(v) ? *std::get_if<float>(v) : 0.0f;
  ir::Value* c = g.add_constant(g.unique_name(fmt::format("{}_{}", n->name(), attr)),
                                Tensor::scalar<float>(f));
  ir::Node* cast = g.add_node("CastLike", {c, n->input(0)}, 1, {},
                              g.unique_name(fmt::format("{}_{}_cast", n->name(), attr)));
  while (n->num_inputs() <= index) n->add_input(nullptr);
  n->set_input(index, cast->output(0));
  n->attrs().erase(attr);
}

// Softmax-family before opset 13: coerce to 2-D at `axis`, normalize each row, reshape back.
void upgrade_legacy_softmax(ir::Graph& g, ir::Node* n) {
  const int64_t axis = n->attrs().get_int("axis", 1);
  ir::Value* x = n->input(0);
  ir::Value* y = n->output(0);
  const std::string op = n->op_type(), name = n->name();
  g.remove_node(n);
  Attributes flatten_attrs;
  flatten_attrs.set("axis", axis);
  ir::Node* shape = g.add_node("Shape", {x}, 1, {}, g.unique_name(name + "_shape"));
  ir::Node* flat = g.add_node("Flatten", {x}, 1, flatten_attrs, g.unique_name(name + "_flatten"));
  Attributes op_attrs;
  op_attrs.set("axis", int64_t{1});
  ir::Node* soft = g.add_node(op, {flat->output(0)}, 1, op_attrs, g.unique_name(name + "_2d"));
  g.add_node("Reshape", {soft->output(0), shape->output(0)}, {y}, {}, name);
}

}  // namespace

Status upgrade_operators(ir::Graph& g) {
  const int64_t opset = g.opset_version;
  static const std::set<std::string> kReduceWithAxesInput18 = {
      "ReduceMean", "ReduceMax",    "ReduceMin",       "ReduceProd",     "ReduceL1",
      "ReduceL2",   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  for (ir::Node* n : g.nodes()) {
    const std::string& op = n->op_type();
    if (opset < 10 && op == "Slice") {
      attribute_to_input(g, n, "starts", 1);
      attribute_to_input(g, n, "ends", 2);
      attribute_to_input(g, n, "axes", 3);
    } else if (opset < 10 && op == "TopK") {
      attribute_to_input(g, n, "k", 1);
    } else if (opset < 11 && op == "Pad") {
      attribute_to_input(g, n, "pads", 1);
      float_attribute_to_input(g, n, "value", 2);
    } else if (opset < 11 && op == "Clip") {
      // An absent min or max stays an omitted input: unbounded on that side.
      float_attribute_to_input(g, n, "min", 1);
      float_attribute_to_input(g, n, "max", 2);
    } else if (opset < 11 && op == "Resize") {
      // Resize-10: (X, scales) with asymmetric coordinates; nearest rounds down.
      ir::Value* scales = n->input(1);
      n->set_input(1, nullptr);
      n->add_input(scales);
      n->attrs().set("coordinate_transformation_mode", std::string("asymmetric"));
      if (n->attrs().get_string("mode", "nearest") == "nearest") {
        n->attrs().set("nearest_mode", std::string("floor"));
      }
    } else if (opset < 13 && (op == "Squeeze" || op == "Unsqueeze")) {
      attribute_to_input(g, n, "axes", 1);
    } else if (opset < 13 && op == "Split") {
      attribute_to_input(g, n, "split", 1);
    } else if (opset < 13 && (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax")) {
      upgrade_legacy_softmax(g, n);
    } else if (opset < 13 && op == "ReduceSum") {
      attribute_to_input(g, n, "axes", 1);
    } else if (opset < 18 && kReduceWithAxesInput18.count(op)) {
      attribute_to_input(g, n, "axes", 1);
    } else if (op == "BatchNormalization" && n->attrs().has("spatial")) {
      if (n->attrs().get_int("spatial", 1) != 1) {
        return unimplemented("{}: BatchNormalization with spatial=0 is not supported",
                             n->describe());
      }
      n->attrs().erase("spatial");
    } else if (op == "Dropout") {
      // Inference: Dropout is the identity. Training mode and the mask output are not supported.
      const ir::Value* training = n->input(2);
      const bool inference =
          training == nullptr ||
          (training->has_constant() && training->constant().num_elements() == 1 &&
           training->constant().dtype() == DType::kBool && !training->constant().data<bool>()[0]);
      if (!inference) {
        return unimplemented("{}: Dropout in training mode is not supported", n->describe());
      }
      if (n->num_outputs() > 1 &&
          (!n->output(1)->uses().empty() || n->output(1)->is_graph_output())) {
        return unimplemented("{}: Dropout's mask output is not supported", n->describe());
      }
      ir::Value* x = n->input(0);
      ir::Value* y = n->output(0);
      const std::string name = n->name();
      g.remove_node(n);
      g.add_node("Identity", {x}, {y}, {}, name);
    }
  }
  return Status();
}

}  // namespace kestrel::onnx
