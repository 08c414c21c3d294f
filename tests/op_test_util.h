// Running one operator in isolation, for the operator tests under tests/ops/.
//
//   StatusOr<std::vector<Tensor>> out = run_op("Transpose", {x}, attrs({{"perm", ints{1, 0}}}));
//
// The node goes through everything a model's nodes go through: the schema check, the shape rule
// and the backend's kernel (CPU reference kernels by default, or the fast kernels). Omitted
// optional inputs are undefined Tensors.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "kestrel/base/tensor.h"
#include "kestrel/engine/engine.h"
#include "kestrel/ir/graph.h"

namespace kestrel::testing {

using ints = std::vector<int64_t>;
using floats = std::vector<float>;

inline Attributes attrs(std::initializer_list<std::pair<std::string, AttributeValue>> list) {
  Attributes a;
  for (const auto& [name, value] : list) a.set(name, value);
  return a;
}

struct OpOptions {
  bool reference = true;
  // Inputs given here become graph constants instead of graph inputs (e.g. weights, shapes).
  std::vector<size_t> constant_inputs = {};
  size_t num_outputs = 1;
  int64_t opset = 21;
};

inline StatusOr<std::vector<Tensor>> run_op(const std::string& op_type,
                                            const std::vector<Tensor>& inputs,
                                            const Attributes& attributes = {},
                                            const OpOptions& options = {}) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_version = options.opset;
  std::vector<ir::Value*> in;
  std::map<std::string, Tensor> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      in.push_back(nullptr);
      continue;
    }
    const std::string name = "in" + std::to_string(i);
    const bool constant = std::find(options.constant_inputs.begin(), options.constant_inputs.end(),
                                    i) != options.constant_inputs.end();
    if (constant) {
      in.push_back(g->add_constant(name, inputs[i]));
    } else {
      in.push_back(g->add_input(name, {inputs[i].dtype(), ir::SymShape::from(inputs[i].shape())}));
      feeds[name] = inputs[i];
    }
  }
  ir::Node* n = g->add_node(op_type, in, options.num_outputs, attributes, "op");
  for (ir::Value* out : n->outputs()) g->add_output(out);
  KS_ASSIGN_OR_RETURN(
      std::unique_ptr<engine::Engine> e,
      engine::Engine::create(std::move(g),
                             {.backend = "cpu", .cpu_reference_only = options.reference}));
  return e->run(feeds);
}

// Values of a host tensor as doubles, for EXPECT_EQ against literals.
inline std::vector<double> values(const Tensor& t) { return t.to_double_vector(); }

}  // namespace kestrel::testing
