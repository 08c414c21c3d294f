// Operator schemas: for every operator Kestrel supports, its arity, its attributes, and its shape
// rule (how output types follow from input types).
//
// A shape rule sees concrete shapes only: the graph-level driver (ir/shape_inference.h) binds every
// symbol before calling it, and skips it when an input's shape is not known yet. Inputs whose
// *contents* decide output shapes (Reshape's `shape`, Slice's `starts`, ...) are listed in
// `value_inputs`; the rule only runs when their values are known, so it may rely on them.
//
// Attributes are checked against `attributes` by the verifier (names, types, required ones), so a
// rule or kernel reads them with Attributes' plain getters. Operators are in the default ONNX
// domain and follow the semantics of the newest opset; the importer rewrites older forms
// (attributes that later became inputs, and so on) before anything here sees them.
//
// Adding an operator: a schema entry in the family file under ir/ops/, its CPU kernel in
// runtime/cpu/, and tests of both.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/attributes.h"
#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/ir/graph.h"

namespace kestrel::ir {

class InferContext {
 public:
  struct Output {
    DType dtype = DType::kUndefined;
    std::vector<int64_t> dims;  // -1 marks a size only the kernel knows (data-dependent)
    bool set = false;
  };

  // Spans are indexed like the node's inputs; an omitted input has dtype kUndefined.
  InferContext(const Node& node, std::span<const DType> input_dtypes,
               std::span<const Shape> input_shapes, std::span<const Tensor* const> input_values);

  const Node& node() const { return node_; }
  const Attributes& attrs() const { return node_.attrs(); }

  size_t num_inputs() const { return dtypes_.size(); }
  bool has_input(size_t i) const { return i < dtypes_.size() && dtypes_[i] != DType::kUndefined; }
  // REQUIRES: has_input(i).
  DType input_dtype(size_t i) const { return dtypes_[i]; }
  const Shape& input_shape(size_t i) const { return shapes_[i]; }
  size_t input_rank(size_t i) const { return shapes_[i].rank(); }
  // REQUIRES: has_input(i) and i is one of the schema's value_inputs.
  const Tensor& input_value(size_t i) const { return *values_[i]; }
  // Integer contents of a value input, widened to int64.
  StatusOr<std::vector<int64_t>> input_ints(size_t i) const;

  size_t num_outputs() const { return outputs_.size(); }
  void set_output(size_t i, DType dtype, Shape shape);
  void set_output_dynamic(size_t i, DType dtype, std::vector<int64_t> dims);
  const std::vector<Output>& outputs() const { return outputs_; }

  // INVALID_ARGUMENT prefixed with the node: "Conv '/model.0/conv': kernel has 3 channels, ...".
  template <typename... Args>
  Status error(fmt::format_string<Args...> format, Args&&... args) const {
    return invalid_argument("{}: {}", node_.describe(),
                            fmt::format(format, std::forward<Args>(args)...));
  }
  // UNIMPLEMENTED prefixed with the node, for valid models using something Kestrel lacks.
  template <typename... Args>
  Status unsupported(fmt::format_string<Args...> format, Args&&... args) const {
    return unimplemented("{}: {}", node_.describe(),
                         fmt::format(format, std::forward<Args>(args)...));
  }

 private:
  const Node& node_;
  std::span<const DType> dtypes_;
  std::span<const Shape> shapes_;
  std::span<const Tensor* const> values_;
  std::vector<Output> outputs_;
};

using InferFn = Status (*)(InferContext& ctx);
// Floating-point operations of one run of the node, called after a successful infer.
using FlopsFn = int64_t (*)(const InferContext& ctx);

struct AttrSpec {
  std::string_view name;
  AttributeType type;
  bool required = false;
};

inline constexpr int kVariadic = 1 << 20;

struct OpSchema {
  std::string_view op_type;
  int min_inputs = 1;
  int max_inputs = 1;
  int min_outputs = 1;
  int max_outputs = 1;
  std::vector<AttrSpec> attributes;
  std::vector<int> value_inputs;
  // Inputs whose contents the operator never reads, only their shape (Shape, Size): constant
  // propagation can evaluate the node as soon as their shapes are known.
  std::vector<int> shape_only_inputs;
  InferFn infer = nullptr;
  // Null: counted as one operation per output element.
  FlopsFn flops = nullptr;

  bool is_value_input(size_t i) const;
  bool is_shape_only_input(size_t i) const;
};

// Null when Kestrel does not know the operator.
const OpSchema* find_op_schema(std::string_view op_type);
// Every schema, sorted by op_type.
std::span<const OpSchema> all_op_schemas();

// Checks a node against its schema: known operator in the default domain, input and output counts,
// attribute names and types, required attributes. Messages name the node.
Status check_node_against_schema(const Node& node);

}  // namespace kestrel::ir
