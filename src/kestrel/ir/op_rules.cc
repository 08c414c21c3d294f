#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {

Status require_same_dtype(const InferContext& ctx, size_t i, size_t j) {
  if (ctx.input_dtype(i) == ctx.input_dtype(j)) return Status();
  return ctx.error("inputs {} and {} must have the same element type, got {} and {}", i, j,
                   ctx.input_dtype(i), ctx.input_dtype(j));
}

Status require_rank(const InferContext& ctx, size_t i, size_t rank) {
  if (ctx.input_rank(i) == rank) return Status();
  return ctx.error("input {} must have rank {}, got shape {}", i, rank, ctx.input_shape(i));
}

StatusOr<int64_t> scalar_int_input(const InferContext& ctx, size_t i) {
  KS_ASSIGN_OR_RETURN(std::vector<int64_t> v, ctx.input_ints(i));
  if (v.size() != 1) return ctx.error("input {} must hold one value, got {}", i, v.size());
  return v[0];
}

}  // namespace kestrel::ir
