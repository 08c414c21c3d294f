// Shape rules of the data-movement operators: Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
// Concat (and Kestrel's FusedConcat), Split, Slice, Gather, GatherElements, Expand, Tile, Pad,
// SpaceToDepth and DepthToSpace.
//
// None of them computes anything, so each has a FLOPs rule of 0 (FusedConcat, whose epilogue
// does, counts one operation per output element). Sizes read from value inputs are
// untrusted: every sum and product of them is checked for overflow here, before infer_node's
// element count check and the allocator's size limit see the result.
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <set>

#include "kestrel/ir/op_families.h"
#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {
namespace {

using IndexTypes = TypeList<int32_t, int64_t>;

int64_t no_flops(const InferContext&) { return 0; }

// a * b, or nullopt when it overflows int64.
std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}
std::optional<int64_t> checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// The contents of a 1-D integer value input whose element type is in `List`. Axes lists may also
// be scalars, as onnxruntime accepts.
template <typename List>
StatusOr<std::vector<int64_t>> int_list_input(const InferContext& ctx, size_t i,
                                              std::string_view what, bool allow_scalar = false) {
  if (!dtype_in<List>(ctx.input_dtype(i))) {
    return ctx.error("input {} ({}) has element type {}, expected {}", i, what, ctx.input_dtype(i),
                     std::is_same_v<List, IndexTypes> ? "int32 or int64" : "int64");
  }
  if (ctx.input_rank(i) != 1 && !(allow_scalar && ctx.input_rank(i) == 0)) {
    return ctx.error("input {} ({}) must be 1-D, got shape {}", i, what, ctx.input_shape(i));
  }
  return ctx.input_ints(i);
}

// Normalizes `axes` (each in [-rank, rank)) to [0, rank), rejecting duplicates.
StatusOr<std::vector<int64_t>> normalize_axes(const InferContext& ctx, std::vector<int64_t> axes,
                                              int64_t rank) {
  std::set<int64_t> seen;
  for (int64_t& a : axes) {
    StatusOr<int64_t> n = normalize_axis(a, rank);
    if (!n.ok()) return ctx.error("{}", n.status().message());
    if (!seen.insert(*n).second) return ctx.error("axis {} is given twice", a);
    a = *n;
  }
  return axes;
}

// The `axis` attribute normalized against `rank`.
StatusOr<int64_t> axis_attribute(const InferContext& ctx, int64_t fallback, int64_t rank) {
  const int64_t axis = ctx.attrs().get_int("axis", fallback);
  StatusOr<int64_t> n = normalize_axis(axis, rank);
  if (!n.ok()) return ctx.error("{}", n.status().message());
  return n;
}

Status reshape_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> dims,
                      int_list_input<TypeList<int64_t>>(ctx, 1, "shape"));
  const bool allow_zero = ctx.attrs().get_int("allowzero", 0) != 0;
  const Shape& in = ctx.input_shape(0);
  int64_t inferred = -1;  // index of the -1 entry
  int64_t known = 1;      // product of the other entries
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0 && !allow_zero) {
      if (i >= in.rank()) {
        return ctx.error(
            "shape entry {} is 0 (copy the input dimension), but the input {} has "
            "only {} dimensions",
            i, in, in.rank());
      }
      dims[i] = in[i];
    }
    if (dims[i] == -1) {
      if (inferred >= 0) return ctx.error("shape {} has more than one -1", Shape(dims));
      inferred = static_cast<int64_t>(i);
      continue;
    }
    if (dims[i] < 0) return ctx.error("shape entry {} is {}, which is invalid", i, dims[i]);
    std::optional<int64_t> p = checked_mul(known, dims[i]);
    if (!p) return ctx.error("shape {} has more elements than fit in 64 bits", Shape(dims));
    known = *p;
  }
  const int64_t count = in.num_elements();
  if (inferred >= 0) {
    if (allow_zero && known == 0) {
      return ctx.error("shape {} has both 0 and -1, which allowzero=1 forbids", Shape(dims));
    }
    if (known == 0 || count % known != 0) {
      return ctx.error("cannot reshape {} ({} elements) to {}: the -1 has no integer size", in,
                       count, Shape(dims));
    }
    dims[static_cast<size_t>(inferred)] = count / known;
  } else if (known != count) {
    return ctx.error("cannot reshape {} ({} elements) to {} ({} elements)", in, count, Shape(dims),
                     known);
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

Status flatten_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  const auto rank = static_cast<int64_t>(in.rank());
  int64_t axis = ctx.attrs().get_int("axis", 1);
  // Unlike most axes, Flatten's may equal the rank (everything goes to the outer dimension).
  if (axis < -rank || axis > rank) {
    return ctx.error("axis {} is out of range for rank {}", axis, rank);
  }
  if (axis < 0) axis += rank;
  const auto split = static_cast<size_t>(axis);
  ctx.set_output(0, ctx.input_dtype(0),
                 Shape{in.num_elements(0, split), in.num_elements(split, in.rank())});
  return Status();
}

Status squeeze_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  std::vector<bool> drop(in.rank(), false);
  // An empty axes list squeezes every 1, like no axes at all (as onnxruntime does).
  if (ctx.has_input(1) && ctx.input_shape(1).num_elements() > 0) {
    KS_ASSIGN_OR_RETURN(std::vector<int64_t> axes,
                        int_list_input<TypeList<int64_t>>(ctx, 1, "axes", true));
    KS_ASSIGN_OR_RETURN(axes, normalize_axes(ctx, std::move(axes), in.rank()));
    for (int64_t a : axes) {
      if (in[a] != 1) {
        return ctx.error("cannot squeeze axis {} of shape {}: its size is not 1", a, in);
      }
      drop[a] = true;
    }
  } else {
    for (size_t d = 0; d < in.rank(); ++d) drop[d] = in[d] == 1;
  }
  std::vector<int64_t> dims;
  for (size_t d = 0; d < in.rank(); ++d) {
    if (!drop[d]) dims.push_back(in[d]);
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

Status unsqueeze_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> axes,
                      int_list_input<TypeList<int64_t>>(ctx, 1, "axes", true));
  // Axes refer to the output, whose rank counts the new dimensions.
  const auto out_rank = static_cast<int64_t>(in.rank() + axes.size());
  KS_ASSIGN_OR_RETURN(axes, normalize_axes(ctx, std::move(axes), out_rank));
  std::vector<bool> is_new(static_cast<size_t>(out_rank), false);
  for (int64_t a : axes) is_new[a] = true;
  std::vector<int64_t> dims;
  size_t next = 0;
  for (int64_t d = 0; d < out_rank; ++d) dims.push_back(is_new[d] ? 1 : in[next++]);
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

Status transpose_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  const size_t rank = in.rank();
  std::vector<int64_t> perm = ctx.attrs().get_ints("perm");
  if (!ctx.attrs().has("perm")) {
    for (size_t d = rank; d-- > 0;) perm.push_back(static_cast<int64_t>(d));
  }
  if (perm.size() != rank) {
    return ctx.error("perm has {} entries for an input of rank {}", perm.size(), rank);
  }
  std::vector<bool> used(rank, false);
  std::vector<int64_t> dims(rank);
  for (size_t d = 0; d < rank; ++d) {
    const int64_t p = perm[d];
    if (p < 0 || p >= static_cast<int64_t>(rank) || used[p]) {
      return ctx.error("perm [{}] is not a permutation of 0..{}", fmt::join(perm, ","),
                       static_cast<int64_t>(rank) - 1);
    }
    used[p] = true;
    dims[d] = in[p];
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

// Concat of inputs 0..parts-1 (all of Concat's inputs; FusedConcat's first num_parts).
Status concat_parts(InferContext& ctx, size_t parts) {
  const Shape& first = ctx.input_shape(0);
  if (first.rank() == 0) return ctx.error("cannot concatenate scalars");
  KS_ASSIGN_OR_RETURN(const int64_t axis,
                      axis_attribute(ctx, 0, static_cast<int64_t>(first.rank())));
  std::vector<int64_t> dims = first.vec();
  for (size_t i = 1; i < parts; ++i) {
    if (!ctx.has_input(i)) return ctx.error("input {} is missing", i);
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, i));
    const Shape& s = ctx.input_shape(i);
    bool match = s.rank() == first.rank();
    for (size_t d = 0; match && d < s.rank(); ++d) {
      match = static_cast<int64_t>(d) == axis || s[d] == first[d];
    }
    if (!match) {
      return ctx.error(
          "input {} has shape {}, which does not match input 0's {} except along "
          "axis {}",
          i, s, first, axis);
    }
    std::optional<int64_t> sum = checked_add(dims[axis], s[axis]);
    if (!sum) return ctx.error("the concatenated axis {} overflows 64 bits", axis);
    dims[axis] = *sum;
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

Status concat_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  return concat_parts(ctx, ctx.num_inputs());
}

// Kestrel's FusedConcat (written by optimize/fuse_concat.h): Concat of the first `num_parts`
// inputs, each part first put through the epilogue of the convolution that produced it:
//   part_k = activation_k(X_k + B_k) + R_k
// B_k is input bias_inputs[k] (1-D, one value per index along `axis`) and R_k input
// residual_inputs[k] (X_k's shape), each -1 when absent; activation_k is activations[k] in
// FusedConv's spelling ("" for none) with activation_alpha[k] and activation_beta[k]. Biases and
// residuals are the inputs after the parts, each used by one part.
Status fused_concat_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<FloatTypes>(ctx, 0));
  const Attributes& a = ctx.attrs();
  const int64_t parts = a.get_int("num_parts", 0);
  const auto inputs = static_cast<int64_t>(ctx.num_inputs());
  if (parts < 1 || parts > inputs) {
    return ctx.error("num_parts is {}, expected 1..{} (the number of inputs)", parts, inputs);
  }
  const auto n = static_cast<size_t>(parts);
  const std::vector<std::string> activations = a.get_strings("activations");
  const std::vector<int64_t> biases = a.get_ints("bias_inputs");
  const std::vector<int64_t> residuals = a.get_ints("residual_inputs");
  const std::vector<float> alphas = a.get_floats("activation_alpha", std::vector<float>(n, 0.f));
  const std::vector<float> betas = a.get_floats("activation_beta", std::vector<float>(n, 0.f));
  if (activations.size() != n || biases.size() != n || residuals.size() != n ||
      alphas.size() != n || betas.size() != n) {
    return ctx.error(
        "activations, bias_inputs, residual_inputs, activation_alpha and activation_beta need one "
        "entry per part ({})",
        n);
  }
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.error("input {} is missing", i);
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, i));
  }
  KS_RETURN_IF_ERROR(concat_parts(ctx, n));
  const int64_t axis =
      normalize_axis(a.get_int("axis", 0), static_cast<int64_t>(ctx.input_rank(0))).value();
  static const std::set<std::string, std::less<>> kActivations = {
      "", "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Silu"};
  std::vector<int> used(static_cast<size_t>(inputs), 0);
  for (size_t k = 0; k < n; ++k) {
    if (!kActivations.count(activations[k])) {
      return ctx.error("part {}: unknown activation '{}'", k, activations[k]);
    }
    for (const auto& [index, what] : {std::pair{biases[k], "bias"}, {residuals[k], "residual"}}) {
      if (index == -1) continue;
      if (index < parts || index >= inputs || used[static_cast<size_t>(index)]++) {
        return ctx.error("part {}: {} input {} is not one of the unused extra inputs {}..{}", k,
                         what, index, parts, inputs - 1);
      }
    }
    const Shape& x = ctx.input_shape(k);
    if (biases[k] != -1 && ctx.input_shape(static_cast<size_t>(biases[k])) != Shape{x[axis]}) {
      return ctx.error("part {}: bias has shape {}, expected [{}]", k,
                       ctx.input_shape(static_cast<size_t>(biases[k])), x[axis]);
    }
    if (residuals[k] != -1 && ctx.input_shape(static_cast<size_t>(residuals[k])) != x) {
      return ctx.error("part {}: residual has shape {}, expected the part's {}", k,
                       ctx.input_shape(static_cast<size_t>(residuals[k])), x);
    }
  }
  for (int64_t i = parts; i < inputs; ++i) {
    if (!used[static_cast<size_t>(i)]) return ctx.error("input {} is not used by any part", i);
  }
  return Status();
}

Status split_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  if (in.rank() == 0) return ctx.error("cannot split a scalar");
  KS_ASSIGN_OR_RETURN(const int64_t axis, axis_attribute(ctx, 0, static_cast<int64_t>(in.rank())));
  const int64_t dim = in[axis];
  const auto outputs = static_cast<int64_t>(ctx.num_outputs());
  const bool has_num_outputs = ctx.attrs().has("num_outputs");
  std::vector<int64_t> sizes;
  if (ctx.has_input(1)) {
    if (has_num_outputs) return ctx.error("'split' and num_outputs cannot both be given");
    KS_ASSIGN_OR_RETURN(sizes, int_list_input<TypeList<int64_t>>(ctx, 1, "split"));
    if (static_cast<int64_t>(sizes.size()) != outputs) {
      return ctx.error("'split' has {} entries for {} outputs", sizes.size(), outputs);
    }
    int64_t total = 0;
    for (int64_t s : sizes) {
      std::optional<int64_t> t = s < 0 ? std::nullopt : checked_add(total, s);
      if (!t) return ctx.error("'split' [{}] has a negative or huge entry", fmt::join(sizes, ","));
      total = *t;
    }
    if (total != dim) {
      return ctx.error("'split' [{}] sums to {}, but axis {} has size {}", fmt::join(sizes, ","),
                       total, axis, dim);
    }
  } else if (has_num_outputs) {
    // Opset 18: chunks of ceil(dim / n); the last one gets what is left.
    const int64_t n = ctx.attrs().get_int("num_outputs", 0);
    if (n != outputs)
      return ctx.error("num_outputs is {}, but the node has {} outputs", n, outputs);
    const int64_t chunk = dim / n + (dim % n != 0);
    const int64_t last = dim - chunk * (n - 1);  // chunk * (n - 1) < dim + n: no overflow
    if (last < 0) {
      return ctx.error("axis {} of size {} cannot be split into {} chunks of {}", axis, dim, n,
                       chunk);
    }
    sizes.assign(static_cast<size_t>(n), chunk);
    sizes.back() = last;
  } else {
    if (dim % outputs != 0) {
      return ctx.error("axis {} of size {} does not split evenly into {} outputs", axis, dim,
                       outputs);
    }
    sizes.assign(static_cast<size_t>(outputs), dim / outputs);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<int64_t> dims = in.vec();
    dims[axis] = sizes[i];
    ctx.set_output(i, ctx.input_dtype(0), Shape(std::move(dims)));
  }
  return Status();
}

// One axis of a Slice after ONNX's clamping: the first element taken, the step, and the count.
struct SliceAxis {
  int64_t start = 0;
  int64_t step = 1;
  int64_t count = 0;
};

// ONNX's rules: negative starts and ends count from the end; then both are clamped to [0, dim]
// for a positive step and to [0, dim-1] / [-1, dim-1] for a negative one. Written so that no
// value (INT64_MIN or INT64_MAX included) overflows.
SliceAxis slice_axis(int64_t start, int64_t end, int64_t step, int64_t dim) {
  SliceAxis s;
  s.step = step;
  if (dim == 0) return s;
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    const auto span = static_cast<uint64_t>(end > start ? end - start : 0);
    const auto stride = static_cast<uint64_t>(step);
    s.count = static_cast<int64_t>(span / stride + (span % stride != 0));
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    const auto span = static_cast<uint64_t>(start > end ? start - end : 0);
    const uint64_t stride = uint64_t{0} - static_cast<uint64_t>(step);  // |step|, INT64_MIN too
    s.count = static_cast<int64_t>(span / stride + (span % stride != 0));
  }
  s.start = s.count > 0 ? start : 0;
  return s;
}

Status slice_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  const auto rank = static_cast<int64_t>(in.rank());
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> starts, int_list_input<IndexTypes>(ctx, 1, "starts"));
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> ends, int_list_input<IndexTypes>(ctx, 2, "ends"));
  if (ends.size() != starts.size()) {
    return ctx.error("starts has {} entries but ends has {}", starts.size(), ends.size());
  }
  std::vector<int64_t> axes;
  if (ctx.has_input(3)) {
    KS_ASSIGN_OR_RETURN(axes, int_list_input<IndexTypes>(ctx, 3, "axes"));
    if (axes.size() != starts.size()) {
      return ctx.error("axes has {} entries but starts has {}", axes.size(), starts.size());
    }
    KS_ASSIGN_OR_RETURN(axes, normalize_axes(ctx, std::move(axes), rank));
  } else {
    if (static_cast<int64_t>(starts.size()) > rank) {
      return ctx.error("starts has {} entries for an input of rank {}", starts.size(), rank);
    }
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  std::vector<int64_t> steps(starts.size(), 1);
  if (ctx.has_input(4)) {
    KS_ASSIGN_OR_RETURN(steps, int_list_input<IndexTypes>(ctx, 4, "steps"));
    if (steps.size() != starts.size()) {
      return ctx.error("steps has {} entries but starts has {}", steps.size(), starts.size());
    }
  }
  std::vector<int64_t> dims = in.vec();
  for (size_t i = 0; i < axes.size(); ++i) {
    if (steps[i] == 0) return ctx.error("steps[{}] is 0", i);
    dims[axes[i]] = slice_axis(starts[i], ends[i], steps[i], in[axes[i]]).count;
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

Status gather_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_dtype<IndexTypes>(ctx, 1));
  const Shape& data = ctx.input_shape(0);
  if (data.rank() == 0) return ctx.error("cannot gather from a scalar");
  KS_ASSIGN_OR_RETURN(const int64_t axis,
                      axis_attribute(ctx, 0, static_cast<int64_t>(data.rank())));
  std::vector<int64_t> dims(data.begin(), data.begin() + axis);
  for (int64_t d : ctx.input_shape(1)) dims.push_back(d);
  for (size_t d = static_cast<size_t>(axis) + 1; d < data.rank(); ++d) dims.push_back(data[d]);
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

Status gather_elements_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_dtype<IndexTypes>(ctx, 1));
  const Shape& data = ctx.input_shape(0);
  const Shape& indices = ctx.input_shape(1);
  if (data.rank() == 0) return ctx.error("cannot gather from a scalar");
  KS_ASSIGN_OR_RETURN(const int64_t axis,
                      axis_attribute(ctx, 0, static_cast<int64_t>(data.rank())));
  if (indices.rank() != data.rank()) {
    return ctx.error("indices {} must have the rank of data {}", indices, data);
  }
  // Along the other axes the output position is also the data position, so it must exist.
  for (size_t d = 0; d < data.rank(); ++d) {
    if (static_cast<int64_t>(d) != axis && indices[d] > data[d]) {
      return ctx.error("indices {} is larger than data {} along axis {}", indices, data, d);
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), indices);
  return Status();
}

Status expand_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> dims,
                      int_list_input<TypeList<int64_t>>(ctx, 1, "shape"));
  for (int64_t d : dims) {
    if (d < 0) return ctx.error("shape {} has a negative dimension", Shape(dims));
  }
  StatusOr<Shape> out = broadcast_shapes(ctx.input_shape(0), Shape(std::move(dims)));
  if (!out.ok()) return ctx.error("{}", out.status().message());
  ctx.set_output(0, ctx.input_dtype(0), *out);
  return Status();
}

Status tile_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> repeats,
                      int_list_input<TypeList<int64_t>>(ctx, 1, "repeats"));
  if (repeats.size() != in.rank()) {
    return ctx.error("repeats has {} entries for an input of rank {}", repeats.size(), in.rank());
  }
  std::vector<int64_t> dims(in.rank());
  for (size_t d = 0; d < in.rank(); ++d) {
    if (repeats[d] < 0)
      return ctx.error("repeats [{}] has a negative entry", fmt::join(repeats, ","));
    std::optional<int64_t> n = checked_mul(in[d], repeats[d]);
    if (!n) {
      return ctx.error("repeating {} by [{}] overflows 64 bits", in, fmt::join(repeats, ","));
    }
    dims[d] = *n;
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

Status pad_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  const Shape& in = ctx.input_shape(0);
  const auto rank = static_cast<int64_t>(in.rank());
  const std::string mode = ctx.attrs().get_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap") {
    return ctx.error("mode '{}' is not one of constant, reflect, edge, wrap", mode);
  }
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> pads, int_list_input<TypeList<int64_t>>(ctx, 1, "pads"));
  if (ctx.has_input(2)) {
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, 2));
    if (ctx.input_shape(2).num_elements() != 1) {
      return ctx.error("constant_value must hold one value, got shape {}", ctx.input_shape(2));
    }
  }
  std::vector<int64_t> axes;
  if (ctx.has_input(3)) {
    KS_ASSIGN_OR_RETURN(axes, int_list_input<IndexTypes>(ctx, 3, "axes"));
    KS_ASSIGN_OR_RETURN(axes, normalize_axes(ctx, std::move(axes), rank));
  } else {
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  }
  if (pads.size() != 2 * axes.size()) {
    return ctx.error("pads has {} entries, expected {} (two per padded axis)", pads.size(),
                     2 * axes.size());
  }
  std::vector<int64_t> dims = in.vec();
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = axes[i], begin = pads[i], end = pads[i + axes.size()];
    std::optional<int64_t> n = checked_add(in[a], begin);
    if (n) n = checked_add(*n, end);
    if (!n || *n < 0) {
      return ctx.error("pads [{}] give axis {} of size {} an invalid size", fmt::join(pads, ","), a,
                       in[a]);
    }
    // Negative pads crop first; the other modes then need something left to copy from.
    const int64_t kept = in[a] + std::min<int64_t>(begin, 0) + std::min<int64_t>(end, 0);
    if (mode != "constant" && *n > 0 && kept <= 0) {
      return ctx.error("mode '{}' cannot pad axis {}: no input element is left to copy", mode, a);
    }
    dims[a] = *n;
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape(std::move(dims)));
  return Status();
}

// SpaceToDepth and DepthToSpace: 4-D NCHW input and a positive blocksize.
StatusOr<int64_t> blocksize(const InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<AllTypes>(ctx, 0));
  KS_RETURN_IF_ERROR(require_rank(ctx, 0, 4));
  const int64_t b = ctx.attrs().get_int("blocksize", 0);
  if (b <= 0) return ctx.error("blocksize must be positive, got {}", b);
  return b;
}

Status space_to_depth_rule(InferContext& ctx) {
  KS_ASSIGN_OR_RETURN(const int64_t b, blocksize(ctx));
  const Shape& in = ctx.input_shape(0);
  if (in[2] % b != 0 || in[3] % b != 0) {
    return ctx.error("height and width of {} must be multiples of blocksize {}", in, b);
  }
  std::optional<int64_t> c = checked_mul(b, b);
  if (c) c = checked_mul(*c, in[1]);
  if (!c) return ctx.error("channels of {} times blocksize {} squared overflow 64 bits", in, b);
  ctx.set_output(0, ctx.input_dtype(0), Shape{in[0], *c, in[2] / b, in[3] / b});
  return Status();
}

Status depth_to_space_rule(InferContext& ctx) {
  KS_ASSIGN_OR_RETURN(const int64_t b, blocksize(ctx));
  const Shape& in = ctx.input_shape(0);
  const std::string mode = ctx.attrs().get_string("mode", "DCR");
  if (mode != "DCR" && mode != "CRD") return ctx.error("mode '{}' is not DCR or CRD", mode);
  std::optional<int64_t> bb = checked_mul(b, b);
  if (!bb || in[1] % *bb != 0) {
    return ctx.error("channels of {} must be a multiple of blocksize {} squared", in, b);
  }
  std::optional<int64_t> h = checked_mul(in[2], b), w = checked_mul(in[3], b);
  if (!h || !w) return ctx.error("{} times blocksize {} overflows 64 bits", in, b);
  ctx.set_output(0, ctx.input_dtype(0), Shape{in[0], in[1] / *bb, *h, *w});
  return Status();
}

OpSchema movement(std::string_view name, InferFn infer, int min_inputs, int max_inputs,
                  std::vector<AttrSpec> attrs = {}, std::vector<int> value_inputs = {}) {
  OpSchema s;
  s.op_type = name;
  s.min_inputs = min_inputs;
  s.max_inputs = max_inputs;
  s.attributes = std::move(attrs);
  s.value_inputs = std::move(value_inputs);
  s.infer = infer;
  s.flops = no_flops;
  return s;
}

}  // namespace

std::vector<OpSchema> movement_op_schemas() {
  using AT = AttributeType;
  OpSchema concat = movement("Concat", concat_rule, 1, kVariadic, {{"axis", AT::kInt, true}});
  OpSchema split =
      movement("Split", split_rule, 1, 2, {{"axis", AT::kInt}, {"num_outputs", AT::kInt}}, {1});
  split.max_outputs = kVariadic;
  std::vector<OpSchema> s;
  s.push_back(movement("Reshape", reshape_rule, 2, 2, {{"allowzero", AT::kInt}}, {1}));
  s.push_back(movement("Flatten", flatten_rule, 1, 1, {{"axis", AT::kInt}}));
  s.push_back(movement("Squeeze", squeeze_rule, 1, 2, {}, {1}));
  s.push_back(movement("Unsqueeze", unsqueeze_rule, 2, 2, {}, {1}));
  s.push_back(movement("Transpose", transpose_rule, 1, 1, {{"perm", AT::kInts}}));
  s.push_back(std::move(concat));
  OpSchema fused_concat = movement("FusedConcat", fused_concat_rule, 1, kVariadic,
                                   {{"axis", AT::kInt, true},
                                    {"num_parts", AT::kInt, true},
                                    {"activations", AT::kStrings, true},
                                    {"activation_alpha", AT::kFloats},
                                    {"activation_beta", AT::kFloats},
                                    {"bias_inputs", AT::kInts, true},
                                    {"residual_inputs", AT::kInts, true}});
  fused_concat.flops = nullptr;  // one operation per output element
  s.push_back(std::move(fused_concat));
  s.push_back(std::move(split));
  s.push_back(movement("Slice", slice_rule, 3, 5, {}, {1, 2, 3, 4}));
  s.push_back(movement("Gather", gather_rule, 2, 2, {{"axis", AT::kInt}}));
  s.push_back(movement("GatherElements", gather_elements_rule, 2, 2, {{"axis", AT::kInt}}));
  s.push_back(movement("Expand", expand_rule, 2, 2, {}, {1}));
  s.push_back(movement("Tile", tile_rule, 2, 2, {}, {1}));
  s.push_back(movement("Pad", pad_rule, 2, 4, {{"mode", AT::kString}}, {1, 3}));
  s.push_back(movement("SpaceToDepth", space_to_depth_rule, 1, 1, {{"blocksize", AT::kInt, true}}));
  s.push_back(movement("DepthToSpace", depth_to_space_rule, 1, 1,
                       {{"blocksize", AT::kInt, true}, {"mode", AT::kString}}));
  return s;
}

}  // namespace kestrel::ir
