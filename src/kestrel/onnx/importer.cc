#include "kestrel/onnx/importer.h"

#include <filesystem>
#include <limits>
#include <unordered_set>

#include "kestrel/base/file.h"
#include "kestrel/onnx/op_upgrades.h"
#include "kestrel/onnx/tensor_proto.h"

namespace kestrel::onnx {
namespace {

using onnxpb::AttributeProto;
using onnxpb::GraphProto;
using onnxpb::ModelProto;
using onnxpb::NodeProto;
using onnxpb::ValueInfoProto;

constexpr int64_t kMinIrVersion = 3;
constexpr int64_t kMaxIrVersion = 10;
constexpr int64_t kMinOpset = 7;
constexpr int64_t kMaxOpset = 21;

bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

StatusOr<AttributeValue> convert_attribute(const AttributeProto& a, const std::string& base_dir) {
  if (!a.ref_attr_name().empty()) {
    return unimplemented(
        "attribute '{}' refers to a function attribute; functions are not "
        "supported",
        a.name());
  }
  switch (a.type()) {
    case AttributeProto::INT:
      return AttributeValue(a.i());
    case AttributeProto::FLOAT:
      return AttributeValue(a.f());
    case AttributeProto::STRING:
      return AttributeValue(a.s());
    case AttributeProto::INTS:
      return AttributeValue(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
    case AttributeProto::FLOATS:
      return AttributeValue(std::vector<float>(a.floats().begin(), a.floats().end()));
    case AttributeProto::STRINGS:
      return AttributeValue(std::vector<std::string>(a.strings().begin(), a.strings().end()));
    case AttributeProto::TENSOR: {
      StatusOr<Tensor> t = tensor_from_proto(a.t(), base_dir);
      if (!t.ok()) return t.status().with_context(fmt::format("attribute '{}'", a.name()));
      return AttributeValue(std::move(t).value());
    }
    case AttributeProto::GRAPH:
    case AttributeProto::GRAPHS:
      return unimplemented(
          "attribute '{}' is a subgraph: control flow (If, Loop, Scan) is not "
          "supported",
          a.name());
    case AttributeProto::SPARSE_TENSOR:
    case AttributeProto::SPARSE_TENSORS:
      return unimplemented("attribute '{}' is a sparse tensor: not supported", a.name());
    default:
      return unimplemented("attribute '{}' has type {}, which is not supported", a.name(),
                           AttributeProto::AttributeType_Name(a.type()));
  }
}

// A graph input's declared type. Unnamed unknown dimensions get a fresh symbol so that every input
// dimension is known or symbolic.
StatusOr<ir::TensorType> convert_value_type(const ValueInfoProto& info) {
  if (!info.has_type()) return invalid_argument("input '{}' has no type", info.name());
  const auto& type = info.type();
  if (!type.has_tensor_type()) {
    const char* kind = type.has_sequence_type()        ? "a sequence"
                       : type.has_map_type()           ? "a map"
                       : type.has_optional_type()      ? "an optional"
                       : type.has_sparse_tensor_type() ? "a sparse tensor"
                                                       : "not a tensor";
    return unimplemented("input '{}' is {}; only tensors are supported", info.name(), kind);
  }
  const auto& tt = type.tensor_type();
  StatusOr<DType> dtype = dtype_from_onnx(tt.elem_type());
  if (!dtype.ok()) return dtype.status().with_context(fmt::format("input '{}'", info.name()));
  if (!tt.has_shape()) return invalid_argument("input '{}' has no shape", info.name());
  std::vector<ir::SymDim> dims;
  for (int i = 0; i < tt.shape().dim_size(); ++i) {
    const auto& d = tt.shape().dim(i);
    if (d.has_dim_value()) {
      if (d.dim_value() < 0) {
        return invalid_argument("input '{}' has negative dimension {}", info.name(), d.dim_value());
      }
      dims.emplace_back(d.dim_value());
    } else if (d.has_dim_param() && !d.dim_param().empty()) {
      dims.push_back(ir::SymDim::symbol(d.dim_param()));
    } else {
      dims.push_back(ir::SymDim::symbol(fmt::format("{}_dim{}", info.name(), i)));
    }
  }
  return ir::TensorType{*dtype, ir::SymShape(std::move(dims))};
}

class GraphBuilder {
 public:
  GraphBuilder(const std::string& base_dir) : base_dir_(base_dir) {}

  StatusOr<std::unique_ptr<ir::Graph>> build(const ModelProto& model) {
    graph_ = std::make_unique<ir::Graph>();
    const GraphProto& g = model.graph();
    graph_->graph_name = g.name();
    graph_->producer_name = model.producer_name();
    for (const auto& prop : model.metadata_props()) graph_->metadata[prop.key()] = prop.value();

    if (g.sparse_initializer_size() > 0) {
      return unimplemented("sparse initializers are not supported");
    }
    for (const auto& init : g.initializer()) {
      if (init.name().empty()) return invalid_argument("an initializer has no name");
      if (graph_->find_value(init.name())) {
        return invalid_argument("initializer '{}' is defined twice", init.name());
      }
      KS_ASSIGN_OR_RETURN(Tensor t, tensor_from_proto(init, base_dir_));
      graph_->add_constant(init.name(), std::move(t));
    }
    for (const ValueInfoProto& in : g.input()) {
      // Before IR 4, initializers were also listed as inputs; they stay constants.
      if (ir::Value* v = graph_->find_value(in.name()); v && v->has_constant()) continue;
      if (in.name().empty()) return invalid_argument("a graph input has no name");
      if (graph_->find_value(in.name())) {
        return invalid_argument("graph input '{}' is declared twice", in.name());
      }
      KS_ASSIGN_OR_RETURN(ir::TensorType type, convert_value_type(in));
      graph_->add_input(in.name(), std::move(type));
    }
    // Create every node output first, so that inputs can be linked whatever the node order; the
    // topological sort then orders the nodes (and finds cycles).
    for (const NodeProto& n : g.node()) {
      for (const std::string& out : n.output()) {
        if (out.empty()) continue;
        if (graph_->find_value(out)) {
          return invalid_argument("value '{}' is defined more than once (node '{}')", out,
                                  n.name());
        }
        graph_->add_value(out);
      }
    }
    for (int i = 0; i < g.node_size(); ++i) KS_RETURN_IF_ERROR(add_node(g.node(i), i));
    for (const ValueInfoProto& out : g.output()) {
      ir::Value* v = graph_->find_value(out.name());
      if (v == nullptr) return invalid_argument("graph output '{}' is never computed", out.name());
      graph_->add_output(v);
    }
    if (graph_->outputs().empty()) return invalid_argument("the graph has no outputs");
    return std::move(graph_);
  }

 private:
  Status add_node(const NodeProto& n, int index) {
    const std::string name = n.name().empty() ? fmt::format("{}_{}", n.op_type(), index) : n.name();
    if (n.domain() == "ai.onnx.ml") {
      return unimplemented(
          "node '{}' uses {} from the ONNX-ML domain (ai.onnx.ml), which Kestrel "
          "does not support",
          name, n.op_type());
    }
    if (!is_default_domain(n.domain())) {
      return unimplemented("node '{}' uses {} from domain '{}': custom operators are not supported",
                           name, n.op_type(), n.domain());
    }
    if (functions_.count(n.op_type())) {
      return unimplemented(
          "node '{}' calls the model-local function '{}': functions are not "
          "supported",
          name, n.op_type());
    }
    std::vector<ir::Value*> inputs;
    for (const std::string& in : n.input()) {
      if (in.empty()) {
        inputs.push_back(nullptr);
        continue;
      }
      ir::Value* v = graph_->find_value(in);
      if (v == nullptr) {
        return invalid_argument("node '{}' ({}) reads '{}', which nothing defines", name,
                                n.op_type(), in);
      }
      inputs.push_back(v);
    }
    // Trailing omitted inputs carry no meaning.
    while (!inputs.empty() && inputs.back() == nullptr) inputs.pop_back();
    std::vector<ir::Value*> outputs;
    for (int i = 0; i < n.output_size(); ++i) {
      const std::string& out = n.output(i);
      outputs.push_back(out.empty() ? graph_->add_value(graph_->unique_name(
                                          fmt::format("{}_unused_output_{}", name, i)))
                                    : graph_->find_value(out));
    }
    Attributes attrs;
    for (const AttributeProto& a : n.attribute()) {
      if (attrs.has(a.name())) {
        return invalid_argument("node '{}' has attribute '{}' twice", name, a.name());
      }
      StatusOr<AttributeValue> v = convert_attribute(a, base_dir_);
      if (!v.ok()) return v.status().with_context(fmt::format("node '{}' ({})", name, n.op_type()));
      attrs.set(a.name(), std::move(v).value());
    }
    graph_->add_node(n.op_type(), std::move(inputs), std::move(outputs), std::move(attrs), name);
    return Status();
  }

 public:
  std::unordered_set<std::string> functions_;

 private:
  std::string base_dir_;
  std::unique_ptr<ir::Graph> graph_;
};

}  // namespace

StatusOr<std::unique_ptr<ir::Graph>> import_model(std::string_view bytes,
                                                  const std::string& base_dir) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return invalid_argument(
        "the model is {} bytes; protobuf models are limited to 2 GiB (use "
        "external data for the weights)",
        bytes.size());
  }
  ModelProto model;
  if (!model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return invalid_argument("not a valid ONNX model (protobuf parsing failed)");
  }
  if (!model.has_ir_version()) return invalid_argument("the model has no IR version");
  if (model.ir_version() < kMinIrVersion || model.ir_version() > kMaxIrVersion) {
    return unimplemented("ONNX IR version {} is not supported (Kestrel reads {}..{})",
                         model.ir_version(), kMinIrVersion, kMaxIrVersion);
  }
  if (!model.has_graph()) return invalid_argument("the model has no graph");
  int64_t opset = -1;
  for (const auto& op : model.opset_import()) {
    if (is_default_domain(op.domain())) opset = op.version();
  }
  if (opset < 0) {
    // IR < 3 had no opset_import; ONNX says the default is then opset 1.
    return unimplemented("the model does not import the default ONNX opset");
  }
  if (opset < kMinOpset || opset > kMaxOpset) {
    return unimplemented("ONNX opset {} is not supported (Kestrel reads {}..{})", opset, kMinOpset,
                         kMaxOpset);
  }
  GraphBuilder builder(base_dir);
  for (const auto& f : model.functions()) builder.functions_.insert(f.name());
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, builder.build(model));
  graph->opset_version = opset;
  KS_RETURN_IF_ERROR(upgrade_operators(*graph));
  KS_RETURN_IF_ERROR(graph->sort_topologically());
  return graph;
}

StatusOr<std::unique_ptr<ir::Graph>> import_model_file(const std::string& path) {
  KS_ASSIGN_OR_RETURN(std::string bytes, read_file(path, std::numeric_limits<int>::max()));
  const std::string dir = std::filesystem::path(path).parent_path().string();
  StatusOr<std::unique_ptr<ir::Graph>> graph = import_model(bytes, dir.empty() ? "." : dir);
  if (!graph.ok()) return graph.status().with_context(path);
  return graph;
}

StatusOr<Tensor> parse_tensor_proto(std::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return invalid_argument("tensor file too large");
  }
  onnxpb::TensorProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return invalid_argument("not a valid ONNX TensorProto");
  }
  return tensor_from_proto(proto, "");
}

}  // namespace kestrel::onnx
