// The graph IR: what the importer produces, the optimizer rewrites and the engine executes.
//
// A Graph owns its Nodes (operators) and Values (tensors). A Value is produced by at most one Node
// output, or is a graph input, or holds a constant (an ONNX initializer or folded result); it knows
// its uses. Node inputs may be null for omitted optional inputs (ONNX's empty name). Operators are
// identified by their ONNX op_type in the default domain; their attributes and shape rules are in
// ir/op_schema.h.
//
// Nodes are kept in a list; sort_topologically() orders it (and finds cycles). Mutations keep use
// lists consistent; remove_dead() drops nodes and values nothing needs.
//
// Thread safety: a Graph is not synchronized; const methods may be called concurrently.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kestrel/base/attributes.h"
#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/ir/sym_shape.h"

namespace kestrel::ir {

class Graph;
class Node;

struct Use {
  Node* node;
  size_t index;  // which input of `node`
};

class Value {
 public:
  const std::string& name() const { return name_; }
  const TensorType& type() const { return type_; }
  DType dtype() const { return type_.dtype; }
  const SymShape& shape() const { return type_.shape; }
  void set_type(TensorType type) { type_ = std::move(type); }

  // The node that computes this value, or null for graph inputs and constants.
  Node* producer() const { return producer_; }
  size_t producer_index() const { return producer_index_; }
  const std::vector<Use>& uses() const { return uses_; }

  bool has_constant() const { return constant_.defined(); }
  // REQUIRES: has_constant().
  const Tensor& constant() const { return constant_; }

  bool is_graph_input() const { return is_graph_input_; }
  bool is_graph_output() const { return is_graph_output_; }

 private:
  friend class Graph;
  friend class Node;
  explicit Value(std::string name) : name_(std::move(name)) {}

  std::string name_;
  TensorType type_;
  Node* producer_ = nullptr;
  size_t producer_index_ = 0;
  std::vector<Use> uses_;
  Tensor constant_;
  bool is_graph_input_ = false;
  bool is_graph_output_ = false;
};

class Node {
 public:
  const std::string& name() const { return name_; }
  const std::string& op_type() const { return op_type_; }
  const std::string& domain() const { return domain_; }
  Attributes& attrs() { return attrs_; }
  const Attributes& attrs() const { return attrs_; }

  size_t num_inputs() const { return inputs_.size(); }
  // Null for an omitted optional input; also null past the end.
  Value* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }
  bool has_input(size_t i) const { return input(i) != nullptr; }
  std::span<Value* const> inputs() const { return inputs_; }
  size_t num_outputs() const { return outputs_.size(); }
  Value* output(size_t i) const { return outputs_[i]; }
  std::span<Value* const> outputs() const { return outputs_; }

  // Rewires input i (which must exist) to `v` (null to omit it), keeping use lists right.
  void set_input(size_t i, Value* v);
  void add_input(Value* v);
  // Drops trailing inputs past `count`.
  void truncate_inputs(size_t count);
  void set_op_type(std::string op_type) { op_type_ = std::move(op_type); }

  // "Conv '/model.0/conv/Conv'" for messages.
  std::string describe() const;

 private:
  friend class Graph;
  Node() = default;

  std::string name_;
  std::string op_type_;
  std::string domain_;
  Attributes attrs_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
};

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // A deep copy (constants share their immutable data).
  std::unique_ptr<Graph> clone() const;

  // REQUIRES for every add_*: `name` is not yet used in this graph (see unique_name()).
  Value* add_input(std::string name, TensorType type);
  Value* add_constant(std::string name, Tensor value);
  // An intermediate value; its type is filled in by shape inference.
  Value* add_value(std::string name);
  // A node computing `outputs` (values not produced by anything else) from `inputs`.
  Node* add_node(std::string op_type, std::vector<Value*> inputs, std::vector<Value*> outputs,
                 Attributes attrs = {}, std::string name = "", std::string domain = "");
  // A node with `num_outputs` fresh output values named after it.
  Node* add_node(std::string op_type, std::vector<Value*> inputs, size_t num_outputs,
                 Attributes attrs = {}, std::string name = "");

  void add_output(Value* v);
  void clear_outputs();
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }

  // Nodes in their current order: topological after sort_topologically().
  std::vector<Node*> nodes() const;
  size_t num_nodes() const { return nodes_.size(); }
  // Orders nodes so that every node follows the producers of its inputs; FAILED_PRECONDITION naming
  // a node on the cycle when there is one. Stable: keeps the existing order where it can.
  Status sort_topologically();

  // Replaces `from` by `to` in every use and in the graph outputs. A graph output keeps its name:
  // `to` takes over `from`'s name (clients address outputs by name), `from` gets a fresh one.
  void replace_all_uses(Value* from, Value* to);
  // Makes `to` the graph output that `from` was (uses are untouched); `to` takes `from`'s name.
  void replace_output(Value* from, Value* to);
  // Replaces a value's data with a constant (used when folding); the producer is detached.
  void make_constant(Value* v, Tensor value);
  // REQUIRES: none of the node's outputs is used or a graph output.
  void remove_node(Node* node);
  // Removes nodes whose outputs nothing uses, then values nothing refers to. Returns nodes removed.
  size_t remove_dead();

  Value* find_value(std::string_view name) const;
  // `base` if unused, else base_1, base_2, ...
  std::string unique_name(std::string_view base) const;
  size_t num_values() const { return values_.size(); }
  // Every value, constants included, in creation order.
  std::vector<Value*> values() const;

  // ONNX metadata_props (e.g. "names", "stride"), the default-domain opset, and descriptive fields.
  std::map<std::string, std::string> metadata;
  int64_t opset_version = 0;
  std::string graph_name;
  std::string producer_name;

 private:
  Value* new_value(std::string name);

  std::vector<std::unique_ptr<Value>> values_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::string, Value*> by_name_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  size_t node_counter_ = 0;
};

}  // namespace kestrel::ir
