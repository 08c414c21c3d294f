// The channels-last rewrite: members, regions, trimming, boundaries and transpose cleanup, as the
// header lists them.
#include "kestrel/optimize/to_channels_last.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace kestrel::optimize {
namespace {

enum class Kind { kConv, kPool, kGlobalPool, kResize, kConcat, kSplit, kUnary, kBroadcast };

struct Member {
  Kind kind;
  size_t rank;  // of the activations it reads and writes
};
using Members = std::unordered_map<const ir::Node*, Member>;

std::optional<Kind> kind_of(const ir::Node& n) {
  static const std::set<std::string, std::less<>> kUnary = {
      "Abs",       "Cast", "Ceil", "Clip", "Exp",  "Floor", "HardSigmoid", "HardSwish", "Identity",
      "LeakyRelu", "Log",  "Neg",  "Not",  "Relu", "Round", "Sigmoid",     "Sqrt"};
  static const std::set<std::string, std::less<>> kBroadcast = {
      "Add",  "And",         "Div", "Equal", "Greater", "GreaterOrEqual",
      "Less", "LessOrEqual", "Max", "Mean",  "Min",     "Mul",
      "Or",   "Pow",         "Sub", "Sum",   "Where",   "Xor"};
  const std::string& op = n.op_type();
  if (op == "Conv" || op == "FusedConv") return Kind::kConv;
  if (op == "MaxPool" || op == "AveragePool") return Kind::kPool;
  if (op == "GlobalAveragePool" || op == "GlobalMaxPool") return Kind::kGlobalPool;
  if (op == "Resize") return Kind::kResize;
  if (op == "Concat") return Kind::kConcat;
  if (op == "Split") return Kind::kSplit;
  if (kUnary.count(op)) return Kind::kUnary;
  if (kBroadcast.count(op)) return Kind::kBroadcast;
  return std::nullopt;
}

bool is_anchor(Kind k) { return k == Kind::kConv || k == Kind::kPool; }

// Whether input i of a member carries an activation in the member's layout.
bool is_layout_input(Kind k, size_t i) {
  switch (k) {
    case Kind::kConv:
      return i == 0 || i == 3;
    case Kind::kConcat:
    case Kind::kBroadcast:
      return true;
    default:
      return i == 0;
  }
}

// P, channels-last from channels-first: [0, 2, ..., r-1, 1].
std::vector<int64_t> to_last_perm(size_t r) {
  std::vector<int64_t> p = {0};
  for (size_t d = 2; d < r; ++d) p.push_back(static_cast<int64_t>(d));
  p.push_back(1);
  return p;
}

// Q = P's inverse: [0, r-1, 1, ..., r-2]; Q[a] is where axis a of a channels-first tensor goes.
std::vector<int64_t> to_first_perm(size_t r) {
  std::vector<int64_t> q = {0, static_cast<int64_t>(r) - 1};
  for (size_t d = 1; d + 1 < r; ++d) q.push_back(static_cast<int64_t>(d));
  return q;
}

std::optional<size_t> rank_of(const ir::Value* v) {
  if (v->has_constant()) return v->constant().rank();
  if (v->shape().has_rank()) return v->shape().rank();
  return std::nullopt;
}

ir::TensorType permuted(ir::TensorType type, const std::vector<int64_t>& perm) {
  if (!type.shape.has_rank() || type.shape.rank() != perm.size()) return type;
  std::vector<ir::SymDim> dims;
  for (int64_t p : perm) dims.push_back(type.shape[static_cast<size_t>(p)]);
  type.shape = ir::SymShape(std::move(dims));
  return type;
}

// `t`, its shape padded with leading ones to perm.size() axes, transposed by `perm`.
StatusOr<Tensor> transpose_tensor(const Tensor& t, const std::vector<int64_t>& perm) {
  const size_t r = perm.size();
  std::vector<int64_t> in(r, 1);
  std::copy(t.shape().begin(), t.shape().end(), in.end() - static_cast<ptrdiff_t>(t.rank()));
  std::vector<int64_t> stride(r, 1), out(r), out_stride(r);
  for (size_t d = r - 1; d > 0; --d) stride[d - 1] = stride[d] * in[d];
  for (size_t d = 0; d < r; ++d) {
    out[d] = in[static_cast<size_t>(perm[d])];
    out_stride[d] = stride[static_cast<size_t>(perm[d])];
  }
  KS_ASSIGN_OR_RETURN(Tensor result, Tensor::allocate(t.dtype(), Shape(out)));
  const size_t size = dtype_size(t.dtype());
  const auto* src = static_cast<const std::byte*>(t.raw_data());
  auto* dst = static_cast<std::byte*>(result.raw_data());
  std::vector<int64_t> index(r, 0);
  for (int64_t i = 0; i < result.num_elements(); ++i) {
    int64_t at = 0;
    for (size_t d = 0; d < r; ++d) at += index[d] * out_stride[d];
    std::memcpy(dst + static_cast<size_t>(i) * size, src + static_cast<size_t>(at) * size, size);
    for (size_t d = r; d-- > 0;) {
      if (++index[d] < out[d]) break;
      index[d] = 0;
    }
  }
  return result;
}

// A 1-D tensor of the elements of `t` at `index`, in that order.
StatusOr<Tensor> gather_tensor(const Tensor& t, const std::vector<int64_t>& index) {
  KS_ASSIGN_OR_RETURN(Tensor result,
                      Tensor::allocate(t.dtype(), Shape{static_cast<int64_t>(index.size())}));
  const size_t size = dtype_size(t.dtype());
  for (size_t i = 0; i < index.size(); ++i) {
    std::memcpy(static_cast<std::byte*>(result.raw_data()) + i * size,
                static_cast<const std::byte*>(t.raw_data()) + static_cast<size_t>(index[i]) * size,
                size);
  }
  return result;
}

// Whether an axis attribute is valid for rank r.
bool valid_axis(int64_t axis, size_t r) {
  return normalize_axis(axis, static_cast<int64_t>(r)).ok();
}

// The node as a member, or nullopt when it cannot run channels-last.
std::optional<Member> as_member(const ir::Node& n) {
  const std::optional<Kind> kind = kind_of(n);
  if (!kind || n.num_outputs() == 0) return std::nullopt;
  const std::optional<size_t> r = rank_of(n.output(0));
  if (!r || *r < 3 || *r > 5) return std::nullopt;
  for (const ir::Value* out : n.outputs()) {
    if (rank_of(out) != r) return std::nullopt;
  }
  for (size_t i = 0; i < n.num_inputs(); ++i) {
    const ir::Value* v = n.input(i);
    if (v == nullptr || !is_layout_input(*kind, i)) continue;
    const std::optional<size_t> vr = rank_of(v);
    if (!vr || (v->has_constant() ? *vr > *r : *vr != *r)) return std::nullopt;
  }
  const Attributes& a = n.attrs();
  switch (*kind) {
    case Kind::kConv: {
      const ir::Value* w = n.input(1);
      if (w == nullptr || !w->has_constant() || w->constant().rank() != *r ||
          a.get_int("channels_last", 0) != 0) {
        return std::nullopt;
      }
      break;
    }
    case Kind::kPool:
      if (n.num_outputs() != 1 || a.get_int("kestrel_channels_last", 0) != 0) return std::nullopt;
      break;
    case Kind::kResize: {
      for (size_t i = 1; i < 4; ++i) {
        const ir::Value* v = n.input(i);
        if (v == nullptr) continue;
        if (!v->has_constant()) return std::nullopt;
        const int64_t count = v->constant().num_elements();
        // Without `axes`, non-empty roi, scales and sizes describe every axis.
        const int64_t want = static_cast<int64_t>(i == 1 ? 2 * *r : *r);
        if (!a.has("axes") && count != 0 && count != want) return std::nullopt;
      }
      for (int64_t axis : a.get_ints("axes")) {
        if (!valid_axis(axis, *r)) return std::nullopt;
      }
      break;
    }
    case Kind::kConcat:
    case Kind::kSplit:
      if (!valid_axis(a.get_int("axis", 0), *r)) return std::nullopt;
      break;
    default:
      break;
  }
  return Member{*kind, *r};
}

bool is_member(const Members& members, const ir::Node* n) {
  return n != nullptr && members.count(n) > 0;
}

// Whether `u` reads its value as an activation of a member.
bool reads_in_region(const Members& members, const ir::Use& u) {
  const auto it = members.find(u.node);
  return it != members.end() && is_layout_input(it->second.kind, u.index);
}

// Rules 2 and 3: drops the members of regions without an anchor, and trims the rest.
void select_regions(const std::vector<ir::Node*>& nodes, Members& members) {
  for (bool changed = true; changed;) {
    changed = false;
    std::unordered_set<const ir::Node*> seen;
    for (const ir::Node* start : nodes) {
      if (!is_member(members, start) || !seen.insert(start).second) continue;
      std::vector<const ir::Node*> region = {start};
      bool anchored = false;
      const auto visit = [&](const ir::Node* n) {
        if (is_member(members, n) && seen.insert(n).second) region.push_back(n);
      };
      for (size_t i = 0; i < region.size(); ++i) {
        const ir::Node* n = region[i];
        const Kind kind = members.at(n).kind;
        anchored = anchored || is_anchor(kind);
        for (size_t k = 0; k < n->num_inputs(); ++k) {
          if (n->has_input(k) && is_layout_input(kind, k)) visit(n->input(k)->producer());
        }
        for (const ir::Value* out : n->outputs()) {
          for (const ir::Use& u : out->uses()) {
            if (reads_in_region(members, u)) visit(u.node);
          }
        }
      }
      if (!anchored) {
        for (const ir::Node* n : region) members.erase(n);
        changed = true;
      }
    }
    for (const ir::Node* n : nodes) {
      const auto it = members.find(n);
      if (it == members.end() || is_anchor(it->second.kind)) continue;
      // Transposes around n if it stays, and if it leaves.
      int stay = 0, leave = 0;
      std::set<const ir::Value*> counted;
      for (size_t k = 0; k < n->num_inputs(); ++k) {
        const ir::Value* v = n->input(k);
        if (v == nullptr || !is_layout_input(it->second.kind, k) || v->has_constant() ||
            !counted.insert(v).second) {
          continue;
        }
        ++(is_member(members, v->producer()) ? leave : stay);
      }
      for (const ir::Value* out : n->outputs()) {
        bool inside = false, outside = out->is_graph_output();
        for (const ir::Use& u : out->uses())
          (reads_in_region(members, u) ? inside : outside) = true;
        stay += outside;
        leave += inside;
      }
      if (leave < stay) {
        members.erase(it);
        changed = true;
      }
    }
  }
}

// Rules 1 and 4 on the selected members.
class Rewriter {
 public:
  Rewriter(ir::Graph& g, const Members& members) : g_(g), members_(members) {}

  Status convert(ir::Node* n) {
    const Member m = members_.at(n);
    const size_t r = m.rank;
    const std::vector<int64_t> p = to_last_perm(r), q = to_first_perm(r);
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      ir::Value* v = n->input(i);
      if (v == nullptr || !is_layout_input(m.kind, i)) continue;
      if (v->has_constant()) {
        KS_ASSIGN_OR_RETURN(ir::Value * c, permuted_constant(v, r));
        n->set_input(i, c);
      } else if (!is_member(members_, v->producer())) {
        n->set_input(i, entering(v, r));
      }
    }
    Attributes& a = n->attrs();
    switch (m.kind) {
      case Kind::kConv: {
        if (n->op_type() == "Conv") {
          // A plain convolution, spelled as the fusions spell it (fuse_conv_activation.cc).
          n->set_op_type("FusedConv");
          a.set("activation", std::string());
          a.set("activation_alpha", 0.0f);
          a.set("activation_beta", 0.0f);
        }
        a.set("channels_last", int64_t{1});
        KS_ASSIGN_OR_RETURN(ir::Value * w, permuted_constant(n->input(1), r));
        n->set_input(1, w);
        break;
      }
      case Kind::kPool:
        a.set("kestrel_channels_last", int64_t{1});
        break;
      case Kind::kGlobalPool: {
        n->set_op_type(n->op_type() == "GlobalAveragePool" ? "ReduceMean" : "ReduceMax");
        a.set("keepdims", int64_t{1});
        std::vector<int64_t> axes;
        for (size_t d = 1; d + 1 < r; ++d) axes.push_back(static_cast<int64_t>(d));
        n->add_input(g_.add_constant(
            g_.unique_name(n->name() + "_axes"),
            Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(axes.size())}, axes)));
        break;
      }
      case Kind::kResize:
        if (a.has("axes")) {
          std::vector<int64_t> axes = a.get_ints("axes");
          for (int64_t& axis : axes) axis = q[static_cast<size_t>(normalized(axis, r))];
          a.set("axes", axes);
          break;
        }
        for (size_t i = 1; i < 4; ++i) {
          ir::Value* v = n->input(i);
          if (v == nullptr || v->constant().num_elements() == 0) continue;
          std::vector<int64_t> index = p;
          if (i == 1) {  // roi: the starts, then the ends
            for (int64_t d : p) index.push_back(d + static_cast<int64_t>(r));
          }
          KS_ASSIGN_OR_RETURN(Tensor t, gather_tensor(v->constant(), index));
          n->set_input(i, g_.add_constant(g_.unique_name(v->name() + "_nhwc"), std::move(t)));
        }
        break;
      case Kind::kConcat:
      case Kind::kSplit: {
        const int64_t axis = q[static_cast<size_t>(normalized(a.get_int("axis", 0), r))];
        a.set("axis", axis == static_cast<int64_t>(r) - 1 ? int64_t{-1} : axis);
        break;
      }
      default:
        break;
    }
    for (ir::Value* out : n->outputs()) out->set_type(permuted(out->type(), p));
    return Status();
  }

  // Routes the readers of n's outputs outside the region (and graph outputs) through Q.
  void leave(ir::Node* n) {
    const size_t r = members_.at(n).rank;
    for (ir::Value* v : n->outputs()) {
      std::vector<ir::Use> outside;
      for (const ir::Use& u : v->uses()) {
        if (!reads_in_region(members_, u)) outside.push_back(u);
      }
      if (outside.empty() && !v->is_graph_output()) continue;
      ir::Value* back = transpose(v, to_first_perm(r), "_nchw");
      for (const ir::Use& u : outside) u.node->set_input(u.index, back);
      if (v->is_graph_output()) g_.replace_output(v, back);
    }
  }

 private:
  static int64_t normalized(int64_t axis, size_t r) {
    return axis < 0 ? axis + static_cast<int64_t>(r) : axis;
  }

  ir::Value* transpose(ir::Value* v, const std::vector<int64_t>& perm, std::string_view suffix) {
    const std::string name = g_.unique_name(v->name() + std::string(suffix));
    ir::Node* t = g_.add_node("Transpose", {v}, {g_.add_value(name)}, {}, name);
    t->attrs().set("perm", perm);
    t->output(0)->set_type(permuted(v->type(), perm));
    return t->output(0);
  }

  // v (channels-first, from outside the region) through P, once per value.
  ir::Value* entering(ir::Value* v, size_t r) {
    ir::Value*& t = entering_[v];
    if (t == nullptr) t = transpose(v, to_last_perm(r), "_nhwc");
    return t;
  }

  // Constant c as a rank-r channels-last constant, once per value; one element needs no change.
  StatusOr<ir::Value*> permuted_constant(ir::Value* c, size_t r) {
    if (c->constant().num_elements() == 1 && c->constant().rank() <= r) return c;
    ir::Value*& v = constants_[{c, r}];
    if (v == nullptr) {
      KS_ASSIGN_OR_RETURN(Tensor t, transpose_tensor(c->constant(), to_last_perm(r)));
      v = g_.add_constant(g_.unique_name(c->name() + "_nhwc"), std::move(t));
    }
    return v;
  }

  ir::Graph& g_;
  const Members& members_;
  std::map<const ir::Value*, ir::Value*> entering_;
  std::map<std::pair<const ir::Value*, size_t>, ir::Value*> constants_;
};

// Transpose's permutation; nullopt when it is absent and the rank unknown.
std::optional<std::vector<int64_t>> perm_of(const ir::Node& t) {
  if (t.attrs().has("perm")) return t.attrs().get_ints("perm");
  const std::optional<size_t> r = rank_of(t.input(0));
  if (!r) return std::nullopt;
  std::vector<int64_t> p;
  for (size_t d = *r; d-- > 0;) p.push_back(static_cast<int64_t>(d));
  return p;
}

// The dims of `to` as consecutive groups whose products are the dims of `from` (a symbolic dim
// stands alone and must match); nullopt unless `to` only splits the axes of `from`.
std::optional<std::vector<std::vector<ir::SymDim>>> split_groups(const ir::SymShape& from,
                                                                 const ir::SymShape& to) {
  if (!from.has_rank() || !to.has_rank()) return std::nullopt;
  std::vector<std::vector<ir::SymDim>> groups;
  size_t j = 0;
  for (const ir::SymDim& f : from.dims()) {
    std::vector<ir::SymDim> group;
    if (!f.is_known()) {
      if (f.is_unknown() || j == to.rank() || !(to[j] == f)) return std::nullopt;
      group.push_back(to[j++]);
    } else {
      int64_t product = 1;
      while (j < to.rank() && (group.empty() || (product > 0 && product < f.value()))) {
        if (!to[j].is_known() || to[j].value() < 1) return std::nullopt;
        product *= to[j].value();
        group.push_back(to[j++]);
      }
      if (group.empty() || product != f.value()) return std::nullopt;
    }
    groups.push_back(std::move(group));
  }
  if (j != to.rank()) return std::nullopt;
  return groups;
}

// Rule 5's first half: Transpose(x) -> Reshape that only splits axes -> only Transposes becomes
// Reshape(x) -> Transpose, so that cancel_transposes can merge the two transposes into one (the
// detection heads of YOLO models: [N,H,W,3*85] -> [N,3,85,H,W] -> [N,3,H,W,85] becomes
// [N,H,W,3*85] -> [N,H,W,3,85] -> [N,3,H,W,85]). Returns whether it rewrote.
bool sink_through_reshape(ir::Graph& g, ir::Node* t) {
  ir::Value* y = t->output(0);
  if (y->is_graph_output() || y->uses().size() != 1 || y->uses()[0].index != 0) return false;
  ir::Node* r = y->uses()[0].node;
  if (r->op_type() != "Reshape") return false;
  ir::Value* out = r->output(0);
  if (out->is_graph_output() || out->uses().empty()) return false;
  for (const ir::Use& u : out->uses()) {
    if (u.node->op_type() != "Transpose") return false;
  }
  const std::optional<std::vector<int64_t>> p = perm_of(*t);
  const auto groups = split_groups(y->shape(), out->shape());
  if (!p || !groups || groups->size() != p->size()) return false;
  // Axis j of x is axis inv[j] of y; x's axes split as theirs do in y.
  std::vector<size_t> inv(p->size()), start(p->size());
  for (size_t d = 0; d < p->size(); ++d) inv[static_cast<size_t>((*p)[d])] = d;
  std::vector<ir::SymDim> dims;
  for (size_t j = 0; j < p->size(); ++j) {
    start[j] = dims.size();
    dims.insert(dims.end(), (*groups)[inv[j]].begin(), (*groups)[inv[j]].end());
  }
  std::vector<int64_t> perm, target;
  for (size_t d = 0; d < p->size(); ++d) {
    for (size_t o = 0; o < (*groups)[d].size(); ++o) {
      perm.push_back(static_cast<int64_t>(start[static_cast<size_t>((*p)[d])] + o));
    }
  }
  for (const ir::SymDim& dim : dims) target.push_back(dim.is_known() ? dim.value() : -1);
  if (std::count(target.begin(), target.end(), -1) > 1) return false;
  ir::Value* shape = g.add_constant(
      g.unique_name(r->name() + "_target"),
      Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(target.size())}, target));
  const std::string name = g.unique_name(out->name() + "_split");
  ir::Node* split = g.add_node("Reshape", {t->input(0), shape}, {g.add_value(name)}, {}, name);
  split->output(0)->set_type({out->dtype(), ir::SymShape(dims)});
  const std::string moved = g.unique_name(out->name() + "_moved");
  ir::Node* back = g.add_node("Transpose", {split->output(0)}, {g.add_value(moved)}, {}, moved);
  back->attrs().set("perm", perm);
  back->output(0)->set_type(out->type());
  g.replace_all_uses(out, back->output(0));
  return true;
}

// Rule 5's second half. REQUIRES: nodes in topological order.
void cancel_transposes(ir::Graph& g) {
  for (ir::Node* t2 : g.nodes()) {
    if (t2->op_type() != "Transpose" || !t2->has_input(0)) continue;
    ir::Node* t1 = t2->input(0)->producer();
    if (t1 == nullptr || t1->op_type() != "Transpose") continue;
    const std::optional<std::vector<int64_t>> p1 = perm_of(*t1), p2 = perm_of(*t2);
    if (!p1 || !p2 || p1->size() != p2->size()) continue;
    // t2(t1(x)) reads axis p1[p2[d]] of x into axis d.
    std::vector<int64_t> composed;
    bool identity = true;
    for (size_t d = 0; d < p2->size(); ++d) {
      composed.push_back((*p1)[static_cast<size_t>((*p2)[d])]);
      identity = identity && composed.back() == static_cast<int64_t>(d);
    }
    ir::Value* x = t1->input(0);
    ir::Value* y = t2->output(0);
    if (!identity) {
      t2->set_input(0, x);
      t2->attrs().set("perm", composed);
    } else if (!y->is_graph_output() || (!x->is_graph_input() && !x->is_graph_output())) {
      // (A graph output keeps its name by taking it over from x, which must not have one.)
      g.replace_all_uses(y, x);
    }
  }
}

}  // namespace

StatusOr<int> to_channels_last(ir::Graph& g) {
  KS_RETURN_IF_ERROR(g.sort_topologically());
  const std::vector<ir::Node*> nodes = g.nodes();
  Members members;
  for (const ir::Node* n : nodes) {
    if (std::optional<Member> m = as_member(*n)) members.emplace(n, *m);
  }
  select_regions(nodes, members);
  if (members.empty()) return 0;
  Rewriter rewriter(g, members);
  for (ir::Node* n : nodes) {
    if (is_member(members, n)) KS_RETURN_IF_ERROR(rewriter.convert(n));
  }
  for (ir::Node* n : nodes) {
    if (is_member(members, n)) rewriter.leave(n);
  }
  for (ir::Node* n : g.nodes()) {
    if (n->op_type() == "Transpose") sink_through_reshape(g, n);
  }
  KS_RETURN_IF_ERROR(g.sort_topologically());
  cancel_transposes(g);
  g.remove_dead();
  return static_cast<int>(members.size());
}

}  // namespace kestrel::optimize
