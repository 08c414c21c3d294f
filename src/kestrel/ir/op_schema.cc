#include "kestrel/ir/op_schema.h"

#include <algorithm>

#include "kestrel/ir/op_families.h"

namespace kestrel::ir {

InferContext::InferContext(const Node& node, std::span<const DType> input_dtypes,
                           std::span<const Shape> input_shapes,
                           std::span<const Tensor* const> input_values)
    : node_(node),
      dtypes_(input_dtypes),
      shapes_(input_shapes),
      values_(input_values),
      outputs_(node.num_outputs()) {}

StatusOr<std::vector<int64_t>> InferContext::input_ints(size_t i) const {
  StatusOr<std::vector<int64_t>> v = input_value(i).to_int64_vector();
  if (!v.ok()) return error("input {}: {}", i, v.status().message());
  return v;
}

void InferContext::set_output(size_t i, DType dtype, Shape shape) {
  outputs_[i] = Output{dtype, shape.vec(), true};
}

void InferContext::set_output_dynamic(size_t i, DType dtype, std::vector<int64_t> dims) {
  outputs_[i] = Output{dtype, std::move(dims), true};
}

bool OpSchema::is_value_input(size_t i) const {
  return std::find(value_inputs.begin(), value_inputs.end(), static_cast<int>(i)) !=
         value_inputs.end();
}

bool OpSchema::is_shape_only_input(size_t i) const {
  return std::find(shape_only_inputs.begin(), shape_only_inputs.end(), static_cast<int>(i)) !=
         shape_only_inputs.end();
}

namespace {

std::vector<OpSchema> build_registry() {
  std::vector<OpSchema> all;
  for (auto family : {unary_op_schemas, binary_op_schemas, movement_op_schemas,
                      generator_op_schemas, nn_op_schemas, reduce_op_schemas, fused_op_schemas}) {
    for (OpSchema& s : family()) all.push_back(std::move(s));
  }
  std::sort(all.begin(), all.end(),
            [](const OpSchema& a, const OpSchema& b) { return a.op_type < b.op_type; });
  return all;
}

const std::vector<OpSchema>& registry() {
  static const std::vector<OpSchema> schemas = build_registry();
  return schemas;
}

}  // namespace

const OpSchema* find_op_schema(std::string_view op_type) {
  const auto& r = registry();
  auto it = std::lower_bound(r.begin(), r.end(), op_type,
                             [](const OpSchema& s, std::string_view t) { return s.op_type < t; });
  return it != r.end() && it->op_type == op_type ? &*it : nullptr;
}

std::span<const OpSchema> all_op_schemas() { return registry(); }

Status check_node_against_schema(const Node& node) {
  if (!node.domain().empty() && node.domain() != "ai.onnx") {
    return unimplemented("{}: operator domain '{}' is not supported", node.describe(),
                         node.domain());
  }
  const OpSchema* schema = find_op_schema(node.op_type());
  if (schema == nullptr) {
    return unimplemented("unsupported operator '{}' (node '{}')", node.op_type(), node.name());
  }
  const auto inputs = static_cast<int>(node.num_inputs());
  if (inputs < schema->min_inputs || inputs > schema->max_inputs) {
    return invalid_argument(
        "{}: has {} inputs, expected {}..{}", node.describe(), inputs, schema->min_inputs,
        schema->max_inputs == kVariadic ? std::string("n") : std::to_string(schema->max_inputs));
  }
  for (int i = 0; i < std::min(inputs, schema->min_inputs); ++i) {
    if (!node.has_input(i)) {
      return invalid_argument("{}: required input {} is missing", node.describe(), i);
    }
  }
  const auto outputs = static_cast<int>(node.num_outputs());
  if (outputs < schema->min_outputs || outputs > schema->max_outputs) {
    return invalid_argument("{}: has {} outputs, expected {}..{}", node.describe(), outputs,
                            schema->min_outputs, schema->max_outputs);
  }
  for (const auto& entry : node.attrs().all()) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture those in lambdas.
    const std::string& name = entry.first;
    const AttributeValue& value = entry.second;
    auto spec = std::find_if(schema->attributes.begin(), schema->attributes.end(),
                             [&](const AttrSpec& a) { return a.name == name; });
    if (spec == schema->attributes.end()) {
      return unimplemented("{}: attribute '{}' is not supported", node.describe(), name);
    }
    if (attribute_type_of(value) != spec->type) {
      return invalid_argument("{}: attribute '{}' must be {}, got {}", node.describe(), name,
                              attribute_type_name(spec->type),
                              attribute_type_name(attribute_type_of(value)));
    }
  }
  for (const AttrSpec& spec : schema->attributes) {
    if (spec.required && !node.attrs().has(spec.name)) {
      return invalid_argument("{}: required attribute '{}' is missing", node.describe(), spec.name);
    }
  }
  return Status();
}

}  // namespace kestrel::ir
