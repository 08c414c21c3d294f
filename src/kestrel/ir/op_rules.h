// Building blocks shared by the shape rules under ir/ops/. Internal to ir/.
#pragma once

#include <string_view>

#include "kestrel/ir/op_schema.h"

namespace kestrel::ir {

// INVALID_ARGUMENT unless input i's element type is one of `List`.
template <typename List>
Status require_dtype(const InferContext& ctx, size_t i) {
  if (dtype_in<List>(ctx.input_dtype(i))) return Status();
  return ctx.error("input {} has element type {}, which this operator does not accept", i,
                   ctx.input_dtype(i));
}

// INVALID_ARGUMENT unless inputs i and j have the same element type.
Status require_same_dtype(const InferContext& ctx, size_t i, size_t j);

// INVALID_ARGUMENT unless input i has rank `rank`.
Status require_rank(const InferContext& ctx, size_t i, size_t rank);

// Output 0 has input 0's type and shape, once input 0's element type is checked against `List`.
template <typename List>
Status same_as_input_rule(InferContext& ctx) {
  KS_RETURN_IF_ERROR(require_dtype<List>(ctx, 0));
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
  return Status();
}

// A scalar or one-element input's integer value (e.g. TopK's k); INVALID_ARGUMENT otherwise.
StatusOr<int64_t> scalar_int_input(const InferContext& ctx, size_t i);

}  // namespace kestrel::ir
