#include "kestrel/optimize/stem_space_to_depth.h"

#include <cstring>
#include <string>
#include <vector>

namespace kestrel::optimize {
namespace {

using ints = std::vector<int64_t>;

bool all_equal(const ints& v, int64_t value, size_t size) {
  if (v.empty()) return value == 1 || value == 0;  // the ONNX defaults (strides 1, pads 0)
  if (v.size() != size) return false;
  for (int64_t x : v) {
    if (x != value) return false;
  }
  return true;
}

// A static dimension, or -1.
int64_t static_dim(const ir::Value* v, size_t i) {
  const ir::SymShape& s = v->shape();
  if (!s.has_rank() || i >= s.rank() || !s[i].is_known()) return -1;
  return s[i].value();
}

// The channels-last 2-D convolution this pass rewrites: stride 2, even k x k kernel, equal even
// pads, ungrouped, undilated, constant KRSC weights over at most 4 channels, even H and W.
bool is_stem(const ir::Node* n) {
  if (n->op_type() != "FusedConv" || n->attrs().get_int("channels_last", 0) != 1) return false;
  if (!n->has_input(1) || !n->input(1)->has_constant()) return false;
  const Attributes& a = n->attrs();
  if (a.get_int("group", 1) != 1 || a.get_string("auto_pad", "NOTSET") != "NOTSET") return false;
  const Shape& w = n->input(1)->constant().shape();
  if (w.rank() != 4 || w[1] != w[2] || w[1] % 2 != 0 || w[1] < 4 || w[3] > 4) return false;
  const ints pads = a.get_ints("pads");
  if (pads.size() != 4 || pads[0] % 2 != 0 || !all_equal(pads, pads[0], 4)) return false;
  if (!all_equal(a.get_ints("strides"), 2, 2) || !all_equal(a.get_ints("dilations"), 1, 2)) {
    return false;
  }
  const ir::Value* x = n->input(0);
  const int64_t h = static_dim(x, 1), wd = static_dim(x, 2), c = static_dim(x, 3);
  return h > 0 && wd > 0 && h % 2 == 0 && wd % 2 == 0 && c == w[3];
}

// w'[o][ah][aw][(bh * 2 + bw) * C + c] = w[o][2 ah + bh][2 aw + bw][c], element by element.
Tensor rearrange_weights(const Tensor& w) {
  const int64_t k = w.shape()[0], r = w.shape()[1], c = w.shape()[3], half = r / 2;
  Tensor out = Tensor::allocate(w.dtype(), Shape{k, half, half, 4 * c}).value();
  const size_t e = dtype_size(w.dtype());
  const auto* src = static_cast<const std::byte*>(w.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  for (int64_t o = 0; o < k; ++o) {
    for (int64_t kh = 0; kh < r; ++kh) {
      for (int64_t kw = 0; kw < r; ++kw) {
        for (int64_t ch = 0; ch < c; ++ch) {
          const int64_t from = ((o * r + kh) * r + kw) * c + ch;
          const int64_t to =
              ((o * half + kh / 2) * half + kw / 2) * 4 * c + ((kh % 2) * 2 + kw % 2) * c + ch;
          std::memcpy(dst + to * e, src + from * e, e);
        }
      }
    }
  }
  return out;
}

}  // namespace

StatusOr<int> stem_space_to_depth(ir::Graph& g) {
  int rewritten = 0;
  for (ir::Node* conv : g.nodes()) {
    if (!is_stem(conv)) continue;
    ir::Value* x = conv->input(0);
    const int64_t h = static_dim(x, 1), w = static_dim(x, 2), c = static_dim(x, 3);
    const std::string base = conv->name() + "_space_to_depth";
    auto shape_constant = [&](const ints& dims) {
      return g.add_constant(
          g.unique_name(base + "_shape"),
          Tensor::from_vector<int64_t>(Shape{static_cast<int64_t>(dims.size())}, dims));
    };
    // From the NCHW tensor when x is only its channels-last Transpose; else from x (NHWC).
    ir::Node* to_nhwc = x->producer();
    const bool from_nchw = to_nhwc != nullptr && to_nhwc->op_type() == "Transpose" &&
                           to_nhwc->attrs().get_ints("perm") == ints{0, 2, 3, 1} &&
                           x->uses().size() == 1 && !x->is_graph_output();
    ir::Value* source = from_nchw ? to_nhwc->input(0) : x;
    const ints blocks = from_nchw ? ints{0, c, h / 2, 2, w / 2, 2} : ints{0, h / 2, 2, w / 2, 2, c};
    const ints perm = from_nchw ? ints{0, 2, 4, 3, 5, 1} : ints{0, 1, 3, 2, 4, 5};
    ir::Value* split =
        g.add_node("Reshape", {source, shape_constant(blocks)}, 1, {}, g.unique_name(base))
            ->output(0);
    Attributes transpose;
    transpose.set("perm", perm);
    ir::Value* moved =
        g.add_node("Transpose", {split}, 1, transpose, g.unique_name(base))->output(0);
    ir::Value* packed = g.add_node("Reshape", {moved, shape_constant({0, h / 2, w / 2, 4 * c})}, 1,
                                   {}, g.unique_name(base))
                            ->output(0);
    const Tensor& weights = conv->input(1)->constant();
    const int64_t half = weights.shape()[1] / 2;
    ir::Value* new_weights = g.add_constant(
        g.unique_name(conv->input(1)->name() + "_space_to_depth"), rearrange_weights(weights));
    conv->set_input(0, packed);
    conv->set_input(1, new_weights);
    Attributes& a = conv->attrs();
    const int64_t pad = a.get_ints("pads")[0] / 2;
    a.set("pads", ints{pad, pad, pad, pad});
    a.set("strides", ints{1, 1});
    if (a.has("kernel_shape")) a.set("kernel_shape", ints{half, half});
    ++rewritten;
  }
  g.remove_dead();
  return rewritten;
}

}  // namespace kestrel::optimize
