#include "kestrel/optimize/fuse_elementwise.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kestrel::optimize {
namespace {

constexpr size_t kMaxInputs = 8;
constexpr size_t kMaxNodes = 16;

// The operators fused, by their number of data operands. Each is also the FusedElementwise
// instruction of the same name.
const std::map<std::string_view, int>& fusable_operators() {
  static const std::map<std::string_view, int> ops = {
      {"Add", 2},        {"Sub", 2},         {"Mul", 2},     {"Div", 2},   {"Pow", 2},
      {"Min", 2},        {"Max", 2},         {"Sigmoid", 1}, {"Relu", 1},  {"Tanh", 1},
      {"Exp", 1},        {"Log", 1},         {"Neg", 1},     {"Abs", 1},   {"Sqrt", 1},
      {"Reciprocal", 1}, {"Floor", 1},       {"Ceil", 1},    {"Round", 1}, {"HardSwish", 1},
      {"LeakyRelu", 1},  {"HardSigmoid", 1}, {"Clip", 1}};
  return ops;
}

// A constant of one element: it becomes a Const instruction (or a Clip bound).
bool is_scalar_constant(const ir::Value* v) {
  return v != nullptr && v->has_constant() && v->constant().num_elements() == 1 &&
         (is_floating(v->dtype()) || is_integer(v->dtype()));
}

float scalar_value(const ir::Value* v) {
  return static_cast<float>(v->constant().to_double_vector()[0]);
}

// An operator the pass can fuse: its element type, its data operands (its first inputs) and its
// constants.
struct Candidate {
  DType dtype = DType::kUndefined;
  size_t operands = 0;
  float alpha = 0;
  float beta = 0;
};

std::optional<Candidate> candidate(const ir::Node* n) {
  const auto op = fusable_operators().find(n->op_type());
  if (op == fusable_operators().end() || !n->domain().empty() || n->num_outputs() != 1) {
    return std::nullopt;
  }
  Candidate c;
  c.dtype = n->output(0)->dtype();
  if (c.dtype != DType::kFloat32 && c.dtype != DType::kFloat16) return std::nullopt;
  const bool clip = n->op_type() == "Clip";
  if (clip ? n->num_inputs() > 3 : n->num_inputs() != static_cast<size_t>(op->second)) {
    return std::nullopt;
  }
  c.operands = static_cast<size_t>(op->second);
  for (size_t i = 0; i < c.operands; ++i) {
    const ir::Value* v = n->input(i);
    if (v == nullptr || (v->dtype() != c.dtype && !is_scalar_constant(v))) return std::nullopt;
  }
  if (n->op_type() == "LeakyRelu") c.alpha = n->attrs().get_float("alpha", 0.01f);
  if (n->op_type() == "HardSigmoid") {
    c.alpha = n->attrs().get_float("alpha", 0.2f);
    c.beta = n->attrs().get_float("beta", 0.5f);
  }
  if (clip) {
    c.alpha = -std::numeric_limits<float>::infinity();
    c.beta = std::numeric_limits<float>::infinity();
    for (size_t i = 1; i < n->num_inputs(); ++i) {
      if (!n->has_input(i)) continue;
      if (!is_scalar_constant(n->input(i))) return std::nullopt;
      (i == 1 ? c.alpha : c.beta) = scalar_value(n->input(i));
    }
  }
  return c;
}

// Numpy broadcasting on symbolic shapes: every dimension of `in` is 1 or equal to `out`'s.
bool broadcasts_to(const ir::SymShape& in, const ir::SymShape& out) {
  if (!in.has_rank() || !out.has_rank() || in.rank() > out.rank()) return false;
  const size_t lead = out.rank() - in.rank();
  for (size_t i = 0; i < in.rank(); ++i) {
    const ir::SymDim& d = in[i];
    const ir::SymDim& o = out[lead + i];
    if (d.is_unknown() || o.is_unknown()) return false;
    if (!(d == o) && !(d.is_known() && d.value() == 1)) return false;
  }
  return true;
}

struct Group {
  DType dtype = DType::kUndefined;
  std::vector<ir::Node*> nodes;       // in reverse topological order: the result's node first
  std::set<const ir::Value*> inputs;  // external tensors read (scalar constants not counted)
};

// Replaces the group by one FusedElementwise node; false (graph untouched) when its inputs do not
// broadcast to its result or it reads nothing but constants. Operands are read from the nodes
// now: fusing an earlier group may have rewired them to its FusedElementwise.
bool fuse(ir::Graph& g, const Group& group,
          const std::unordered_map<const ir::Node*, Candidate>& candidates) {
  const std::vector<ir::Node*> nodes(group.nodes.rbegin(), group.nodes.rend());
  ir::Node* root = nodes.back();
  ir::Value* result = root->output(0);
  std::set<const ir::Value*> inside;
  for (const ir::Node* n : nodes) inside.insert(n->output(0));
  // External operands in order of first use. Scalar constants are inlined unless one of them is
  // all that gives the result its rank (x[3] + c[1,1] is [1,3]).
  std::vector<ir::Value*> externals;
  size_t data_rank = 0;
  bool reads_data = false;
  for (const ir::Node* n : nodes) {
    for (size_t i = 0; i < candidates.at(n).operands; ++i) {
      ir::Value* v = n->input(i);
      if (inside.count(v) || std::count(externals.begin(), externals.end(), v)) continue;
      externals.push_back(v);
      if (!is_scalar_constant(v)) {
        if (!v->shape().has_rank()) return false;
        data_rank = std::max(data_rank, v->shape().rank());
        reads_data = true;
      }
    }
  }
  if (!reads_data) return false;
  auto inlined = [&](const ir::Value* v) {
    return is_scalar_constant(v) && v->shape().has_rank() && v->shape().rank() <= data_rank;
  };
  std::vector<ir::Value*> inputs;
  for (ir::Value* v : externals) {
    if (inlined(v)) continue;
    if (!broadcasts_to(v->shape(), result->shape()) || v->dtype() != group.dtype) return false;
    inputs.push_back(v);
  }
  // The program: inputs are 0..N-1, instruction j's result N+j.
  std::vector<std::string> ops;
  std::vector<int64_t> args;
  std::vector<float> params;
  std::unordered_map<const ir::Value*, int64_t> ref;
  for (size_t i = 0; i < inputs.size(); ++i) ref[inputs[i]] = static_cast<int64_t>(i);
  auto emit = [&](std::string op, int64_t a, int64_t b, float alpha, float beta) {
    const auto r = static_cast<int64_t>(inputs.size() + ops.size());
    ops.push_back(std::move(op));
    args.insert(args.end(), {a, b});
    params.insert(params.end(), {alpha, beta});
    return r;
  };
  for (const ir::Node* n : nodes) {
    const Candidate& c = candidates.at(n);
    int64_t operand[2] = {-1, -1};
    for (size_t i = 0; i < c.operands; ++i) {
      const ir::Value* v = n->input(i);
      if (!ref.count(v)) ref[v] = emit("Const", -1, -1, scalar_value(v), 0.f);  // inlined
      operand[i] = ref.at(v);
    }
    ref[n->output(0)] = emit(n->op_type(), operand[0], operand[1], c.alpha, c.beta);
  }
  Attributes attrs;
  attrs.set("ops", std::move(ops));
  attrs.set("args", std::move(args));
  attrs.set("params", std::move(params));
  ir::Node* fused = g.add_node("FusedElementwise", inputs, 1, std::move(attrs), root->name());
  fused->output(0)->set_type(result->type());
  g.replace_all_uses(result, fused->output(0));
  return true;
}

}  // namespace

StatusOr<int> fuse_elementwise(ir::Graph& g) {
  KS_RETURN_IF_ERROR(g.sort_topologically());
  const std::vector<ir::Node*> order = g.nodes();
  std::unordered_map<const ir::Node*, Candidate> candidates;
  for (const ir::Node* n : order) {
    if (std::optional<Candidate> c = candidate(n)) candidates.emplace(n, std::move(*c));
  }
  // Consumers come before producers here, so a node joins the group that already holds every
  // reader of its result, or starts its own.
  std::vector<Group> groups;
  std::unordered_map<const ir::Node*, size_t> group_of;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    ir::Node* n = *it;
    const auto c = candidates.find(n);
    if (c == candidates.end()) continue;
    const ir::Value* out = n->output(0);
    std::optional<size_t> target;
    bool joinable = !out->is_graph_output() && !out->uses().empty();
    for (const ir::Use& u : out->uses()) {
      const auto reader = group_of.find(u.node);
      const bool data_use = reader != group_of.end() && u.index < candidates.at(u.node).operands;
      if (!data_use || (target && *target != reader->second)) {
        joinable = false;
        break;
      }
      target = reader->second;
    }
    if (joinable && groups[*target].dtype == c->second.dtype &&
        groups[*target].nodes.size() < kMaxNodes) {
      std::set<const ir::Value*> inputs = groups[*target].inputs;
      inputs.erase(out);
      for (size_t i = 0; i < c->second.operands; ++i) {
        if (!is_scalar_constant(n->input(i))) inputs.insert(n->input(i));
      }
      if (inputs.size() <= kMaxInputs) {
        groups[*target].inputs = std::move(inputs);
        groups[*target].nodes.push_back(n);
        group_of[n] = *target;
        continue;
      }
    }
    Group fresh;
    fresh.dtype = c->second.dtype;
    fresh.nodes = {n};
    for (size_t i = 0; i < c->second.operands; ++i) {
      if (!is_scalar_constant(n->input(i))) fresh.inputs.insert(n->input(i));
    }
    group_of[n] = groups.size();
    groups.push_back(std::move(fresh));
  }
  int fused = 0;
  for (const Group& group : groups) {
    const ir::Value* result = group.nodes.front()->output(0);
    if (group.nodes.size() < 2 || (result->uses().empty() && !result->is_graph_output())) continue;
    fused += fuse(g, group, candidates);
  }
  g.remove_dead();
  KS_RETURN_IF_ERROR(g.sort_topologically());
  return fused;
}

}  // namespace kestrel::optimize
