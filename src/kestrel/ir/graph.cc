#include "kestrel/ir/graph.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <unordered_set>

namespace kestrel::ir {
namespace {

void remove_use(Value* v, Node* node, size_t index, std::vector<Use>& uses) {
  (void)v;
  auto it = std::find_if(uses.begin(), uses.end(),
                         [&](const Use& u) { return u.node == node && u.index == index; });
  if (it != uses.end()) uses.erase(it);
}

}  // namespace

// ---- Node ----

void Node::set_input(size_t i, Value* v) {
  if (Value* old = inputs_[i]) remove_use(old, this, i, old->uses_);
  inputs_[i] = v;
  if (v) v->uses_.push_back({this, i});
}

void Node::add_input(Value* v) {
  inputs_.push_back(nullptr);
  set_input(inputs_.size() - 1, v);
}

void Node::truncate_inputs(size_t count) {
  while (inputs_.size() > count) {
    set_input(inputs_.size() - 1, nullptr);
    inputs_.pop_back();
  }
}

std::string Node::describe() const {
  return name_.empty() ? op_type_ : fmt::format("{} '{}'", op_type_, name_);
}

// ---- Graph ----

Graph::Graph() = default;
Graph::~Graph() = default;

Value* Graph::new_value(std::string name) {
  auto v = std::unique_ptr<Value>(new Value(std::move(name)));
  Value* raw = v.get();
  by_name_[raw->name_] = raw;
  values_.push_back(std::move(v));
  return raw;
}

Value* Graph::add_input(std::string name, TensorType type) {
  Value* v = new_value(std::move(name));
  v->type_ = std::move(type);
  v->is_graph_input_ = true;
  inputs_.push_back(v);
  return v;
}

Value* Graph::add_constant(std::string name, Tensor value) {
  Value* v = new_value(std::move(name));
  v->type_ = TensorType{value.dtype(), SymShape::from(value.shape())};
  v->constant_ = std::move(value);
  return v;
}

Value* Graph::add_value(std::string name) { return new_value(std::move(name)); }

Node* Graph::add_node(std::string op_type, std::vector<Value*> inputs, std::vector<Value*> outputs,
                      Attributes attrs, std::string name, std::string domain) {
  auto node = std::unique_ptr<Node>(new Node());
  Node* n = node.get();
  n->op_type_ = std::move(op_type);
  n->domain_ = std::move(domain);
  n->attrs_ = std::move(attrs);
  n->name_ = name.empty() ? fmt::format("{}_{}", n->op_type_, node_counter_) : std::move(name);
  ++node_counter_;
  for (Value* in : inputs) n->add_input(in);
  for (size_t i = 0; i < outputs.size(); ++i) {
    outputs[i]->producer_ = n;
    outputs[i]->producer_index_ = i;
  }
  n->outputs_ = std::move(outputs);
  nodes_.push_back(std::move(node));
  return n;
}

Node* Graph::add_node(std::string op_type, std::vector<Value*> inputs, size_t num_outputs,
                      Attributes attrs, std::string name) {
  if (name.empty()) name = unique_name(fmt::format("{}_{}", op_type, node_counter_));
  std::vector<Value*> outputs;
  for (size_t i = 0; i < num_outputs; ++i) {
    outputs.push_back(add_value(unique_name(fmt::format("{}_output_{}", name, i))));
  }
  return add_node(std::move(op_type), std::move(inputs), std::move(outputs), std::move(attrs),
                  std::move(name));
}

void Graph::add_output(Value* v) {
  v->is_graph_output_ = true;
  outputs_.push_back(v);
}

void Graph::clear_outputs() {
  for (Value* v : outputs_) v->is_graph_output_ = false;
  outputs_.clear();
}

std::vector<Node*> Graph::nodes() const {
  std::vector<Node*> out;
  out.reserve(nodes_.size());
  for (const auto& n : nodes_) out.push_back(n.get());
  return out;
}

Status Graph::sort_topologically() {
  // Kahn's algorithm over the current order, taking ready nodes in their existing order.
  std::unordered_map<const Node*, size_t> pending;  // producers not yet placed
  for (const auto& n : nodes_) {
    size_t count = 0;
    for (Value* in : n->inputs_) {
      if (in && in->producer_) ++count;
    }
    pending[n.get()] = count;
  }
  std::vector<std::unique_ptr<Node>> sorted;
  sorted.reserve(nodes_.size());
  std::deque<Node*> ready;
  for (const auto& n : nodes_) {
    if (pending[n.get()] == 0) ready.push_back(n.get());
  }
  std::unordered_map<const Node*, size_t> position;
  for (size_t i = 0; i < nodes_.size(); ++i) position[nodes_[i].get()] = i;
  while (!ready.empty()) {
    Node* n = ready.front();
    ready.pop_front();
    sorted.push_back(std::move(nodes_[position[n]]));
    for (Value* out : n->outputs_) {
      for (const Use& use : out->uses_) {
        if (--pending[use.node] == 0) ready.push_back(use.node);
      }
    }
  }
  if (sorted.size() != nodes_.size()) {
    for (auto& n : nodes_) {
      if (n) {
        return failed_precondition("the graph has a cycle through node {}", n->describe());
      }
    }
  }
  nodes_ = std::move(sorted);
  return Status();
}

void Graph::replace_all_uses(Value* from, Value* to) {
  const std::vector<Use> uses = from->uses_;
  for (const Use& u : uses) u.node->set_input(u.index, to);
  replace_output(from, to);
}

void Graph::replace_output(Value* from, Value* to) {
  bool was_output = false;
  for (Value*& out : outputs_) {
    if (out == from) {
      from->is_graph_output_ = false;
      to->is_graph_output_ = true;
      out = to;
      was_output = true;
    }
  }
  if (was_output && !to->is_graph_input_) {
    // Swap names so that the output is still called what the model calls it.
    const std::string public_name = from->name_;
    const std::string old_name = to->name_;
    by_name_.erase(public_name);
    by_name_.erase(old_name);
    from->name_ = unique_name(public_name + "_replaced");
    to->name_ = public_name;
    by_name_[to->name_] = to;
    by_name_[from->name_] = from;
  }
}

void Graph::make_constant(Value* v, Tensor value) {
  if (Node* p = v->producer_) {
    p->outputs_[v->producer_index_] = add_value(unique_name(v->name_ + "_detached"));
    p->outputs_[v->producer_index_]->producer_ = p;
    p->outputs_[v->producer_index_]->producer_index_ = v->producer_index_;
  }
  v->producer_ = nullptr;
  v->type_ = TensorType{value.dtype(), SymShape::from(value.shape())};
  v->constant_ = std::move(value);
}

void Graph::remove_node(Node* node) {
  for (size_t i = 0; i < node->inputs_.size(); ++i) node->set_input(i, nullptr);
  for (Value* out : node->outputs_) {
    if (out->producer_ == node) out->producer_ = nullptr;
  }
  nodes_.erase(
      std::find_if(nodes_.begin(), nodes_.end(), [&](const auto& n) { return n.get() == node; }));
}

size_t Graph::remove_dead() {
  size_t removed = 0;
  bool changed = true;
  while (changed) {
    changed = false;
    for (size_t i = nodes_.size(); i-- > 0;) {
      Node* n = nodes_[i].get();
      const bool used = std::any_of(n->outputs_.begin(), n->outputs_.end(), [](Value* v) {
        return !v->uses_.empty() || v->is_graph_output_;
      });
      if (!used) {
        remove_node(n);
        ++removed;
        changed = true;
      }
    }
  }
  std::erase_if(values_, [&](const std::unique_ptr<Value>& v) {
    const bool dead =
        v->uses_.empty() && !v->is_graph_output_ && !v->is_graph_input_ && v->producer_ == nullptr;
    if (dead) by_name_.erase(v->name_);
    return dead;
  });
  return removed;
}

Value* Graph::find_value(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

std::string Graph::unique_name(std::string_view base) const {
  std::string name(base);
  for (int i = 1; by_name_.count(name); ++i) name = fmt::format("{}_{}", base, i);
  return name;
}

std::vector<Value*> Graph::values() const {
  std::vector<Value*> out;
  for (const auto& v : values_) out.push_back(v.get());
  return out;
}

std::unique_ptr<Graph> Graph::clone() const {
  auto g = std::make_unique<Graph>();
  g->metadata = metadata;
  g->opset_version = opset_version;
  g->graph_name = graph_name;
  g->producer_name = producer_name;
  std::unordered_map<const Value*, Value*> map;
  for (const auto& v : values_) {
    Value* c = g->new_value(v->name_);
    c->type_ = v->type_;
    c->constant_ = v->constant_;
    c->is_graph_input_ = v->is_graph_input_;
    map[v.get()] = c;
  }
  for (Value* in : inputs_) g->inputs_.push_back(map[in]);
  for (const auto& n : nodes_) {
    std::vector<Value*> ins, outs;
    for (Value* in : n->inputs_) ins.push_back(in ? map[in] : nullptr);
    for (Value* out : n->outputs_) outs.push_back(map[out]);
    g->add_node(n->op_type_, std::move(ins), std::move(outs), n->attrs_, n->name_, n->domain_);
  }
  for (Value* out : outputs_) g->add_output(map[out]);
  g->node_counter_ = node_counter_;
  return g;
}

}  // namespace kestrel::ir
