// Model configuration parsing, validation and completion (see model_config.h).
#include "kestrel/serve/core/model_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <charconv>
#include <cstdlib>

#include "kestrel/protocol/datatypes.h"

namespace kestrel::serve {
namespace {

// Collects the parser's first error with its position (the tokenizer counts from 0).
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!message_.empty()) return;
    message_ = fmt::format("{}:{}: {}", line + 1, column + 1, message);
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    AddError(line, column, message);
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

// -1 for a dimension that is not a fixed number.
int64_t dim_value(const ir::SymDim& d) { return d.is_known() ? d.value() : -1; }

StatusOr<double> parse_number(const std::string& key, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    return invalid_argument("parameter '{}': '{}' is not a number", key, text);
  return v;
}

}  // namespace

StatusOr<inference::ModelConfig> parse_model_config(std::string_view text, std::string_view path) {
  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  inference::ModelConfig config;
  if (!parser.ParseFromString(std::string(text), &config))
    return invalid_argument("{}:{}", path,
                            errors.message().empty() ? " cannot parse" : errors.message());
  Status valid = validate_model_config(config);
  if (!valid.ok()) return valid.with_context(path);
  return config;
}

Status validate_model_config(const inference::ModelConfig& config) {
  const int max_batch = config.max_batch_size();
  if (max_batch < 0) return invalid_argument("max_batch_size must be >= 0, got {}", max_batch);
  auto check_tensor = [](std::string_view kind, const std::string& name, inference::DataType type,
                         const auto& dims, bool has_reshape) -> Status {
    if (name.empty()) return invalid_argument("an {} has no name", kind);
    if (type != inference::TYPE_INVALID && protocol::dtype_from_config(type) == DType::kUndefined)
      return invalid_argument("{} '{}': data_type {} is not supported (numeric types only)", kind,
                              name, inference::DataType_Name(type));
    for (int64_t d : dims)
      if (d < -1)
        return invalid_argument("{} '{}': dimension {} must be -1 or >= 0", kind, name, d);
    if (has_reshape) return unimplemented("{} '{}': reshape is not supported", kind, name);
    return Status();
  };
  for (const auto& in : config.input())
    KS_RETURN_IF_ERROR(
        check_tensor("input", in.name(), in.data_type(), in.dims(), in.has_reshape()));
  for (const auto& out : config.output())
    KS_RETURN_IF_ERROR(
        check_tensor("output", out.name(), out.data_type(), out.dims(), out.has_reshape()));
  if (config.has_dynamic_batching()) {
    const auto& db = config.dynamic_batching();
    for (int size : db.preferred_batch_size())
      if (size < 1 || (max_batch > 0 && size > max_batch))
        return invalid_argument("dynamic_batching: preferred_batch_size {} is outside [1, {}]",
                                size, max_batch);
    if (db.priority_levels() > 0 &&
        (db.default_priority_level() < 1 || db.default_priority_level() > db.priority_levels()))
      return invalid_argument(
          "dynamic_batching: default_priority_level {} is outside [1, priority_levels = {}]",
          db.default_priority_level(), db.priority_levels());
    if (db.priority_levels() == 0 && db.default_priority_level() != 0)
      return invalid_argument("dynamic_batching: default_priority_level needs priority_levels");
  }
  for (const auto& group : config.instance_group()) {
    if (group.count() < 0)
      return invalid_argument("instance_group '{}': count must be >= 0, got {}", group.name(),
                              group.count());
    for (int gpu : group.gpus())
      if (gpu < 0)
        return invalid_argument("instance_group '{}': bad GPU index {}", group.name(), gpu);
    if (group.kind() == inference::ModelInstanceGroup::KIND_CPU && group.gpus_size() > 0)
      return invalid_argument("instance_group '{}': KIND_CPU cannot list gpus", group.name());
  }
  for (const auto& warmup : config.model_warmup()) {
    if (max_batch == 0 && warmup.batch_size() > 1)
      return invalid_argument("model_warmup '{}': batch_size must be 1 without batching",
                              warmup.name());
    if (max_batch > 0 && warmup.batch_size() > static_cast<uint32_t>(max_batch))
      return invalid_argument("model_warmup '{}': batch_size {} exceeds max_batch_size {}",
                              warmup.name(), warmup.batch_size(), max_batch);
  }
  return kestrel_parameters(config).status();
}

StatusOr<KestrelParameters> kestrel_parameters(const inference::ModelConfig& config) {
  KestrelParameters p;
  for (const auto& [key, param] : config.parameters()) {
    const std::string& v = param.string_value();
    if (key == "precision") {
      if (v != "fp32" && v != "tf32" && v != "fp16")
        return invalid_argument("parameter 'precision' must be fp32, tf32 or fp16, got '{}'", v);
      p.precision = v;
    } else if (key == "score_threshold" || key == "iou_threshold") {
      KS_ASSIGN_OR_RETURN(double x, parse_number(key, v));
      if (x < 0 || x > 1)
        return invalid_argument("parameter '{}' must be in [0, 1], got {}", key, x);
      (key == "score_threshold" ? p.detection.score_threshold : p.detection.iou_threshold) =
          static_cast<float>(x);
    } else if (key == "max_detections") {
      KS_ASSIGN_OR_RETURN(double x, parse_number(key, v));
      if (x < 1 || x > 10000 || x != static_cast<int64_t>(x))
        return invalid_argument("parameter 'max_detections' must be an integer in [1, 10000]");
      p.detection.max_detections = static_cast<int64_t>(x);
    } else if (key == "class_agnostic") {
      if (v != "true" && v != "false")
        return invalid_argument("parameter 'class_agnostic' must be true or false, got '{}'", v);
      p.detection.class_agnostic = v == "true";
    } else if (key == "nms") {
      if (v != "true" && v != "false")
        return invalid_argument("parameter 'nms' must be true or false, got '{}'", v);
      p.nms = v == "true";
    } else if (key == "cudnn_graph") {
      if (v != "true" && v != "false")
        return invalid_argument("parameter 'cudnn_graph' must be true or false, got '{}'", v);
      p.cudnn_graph = v == "true";
    } else {
      return invalid_argument(
          "unknown parameter '{}' (Kestrel knows precision, score_threshold, iou_threshold, "
          "max_detections, class_agnostic, nms, cudnn_graph)",
          key);
    }
  }
  return p;
}

Status complete_model_config(const engine::Engine& engine, inference::ModelConfig* config) {
  const size_t offset = config->max_batch_size() > 0 ? 1 : 0;
  if (config->platform().empty() && config->backend().empty()) config->set_platform("kestrel_onnx");
  if (config->backend().empty()) config->set_backend("kestrel");

  auto complete = [&](std::string_view kind, const std::vector<engine::TensorInfo>& infos,
                      auto* entries) -> Status {
    bool fill = entries->empty();
    for (const engine::TensorInfo& info : infos) {
      auto it = std::find_if(entries->begin(), entries->end(),
                             [&](const auto& e) { return e.name() == info.name; });
      if (it == entries->end() && !fill)
        return invalid_argument("model {} '{}' is missing from the configuration", kind, info.name);
      auto* entry = it == entries->end() ? entries->Add() : &*it;
      entry->set_name(info.name);
      inference::DataType type = protocol::config_datatype(info.type.dtype);
      if (type == inference::TYPE_INVALID)
        return unimplemented("model {} '{}' has type {}, which the protocol cannot carry", kind,
                             info.name, dtype_name(info.type.dtype));
      if (entry->data_type() == inference::TYPE_INVALID) entry->set_data_type(type);
      if (entry->data_type() != type)
        return invalid_argument("{} '{}': configured data_type {} but the model has {}", kind,
                                info.name, inference::DataType_Name(entry->data_type()),
                                inference::DataType_Name(type));
      const ir::SymShape& shape = info.type.shape;
      if (!shape.has_rank()) {
        if (entry->dims_size() == 0)
          return invalid_argument("{} '{}': the model does not declare its rank; give dims", kind,
                                  info.name);
        continue;
      }
      if (shape.rank() < offset)
        return invalid_argument("{} '{}' has no batch axis but max_batch_size is {}", kind,
                                info.name, config->max_batch_size());
      if (offset == 1 && shape[0].is_known() && shape[0].value() != -1 &&
          shape[0].value() < config->max_batch_size() && kind == "input")
        return invalid_argument("input '{}': the model's batch axis is fixed to {}", info.name,
                                shape[0].value());
      if (entry->dims_size() == 0) {
        for (size_t d = offset; d < shape.rank(); ++d) entry->add_dims(dim_value(shape[d]));
        continue;
      }
      if (static_cast<size_t>(entry->dims_size()) != shape.rank() - offset)
        return invalid_argument("{} '{}': configured {} dims, the model has {} (batch axis {})",
                                kind, info.name, entry->dims_size(), shape.rank() - offset,
                                offset ? "excluded" : "none");
      for (size_t d = offset; d < shape.rank(); ++d) {
        int64_t want = entry->dims(static_cast<int>(d - offset));
        int64_t have = dim_value(shape[d]);
        if (want != -1 && have != -1 && want != have)
          return invalid_argument("{} '{}': configured dim {} is {}, the model has {}", kind,
                                  info.name, d - offset, want, have);
        if (want == -1 && have != -1) entry->set_dims(static_cast<int>(d - offset), have);
      }
    }
    if (!fill && static_cast<size_t>(entries->size()) != infos.size())
      for (const auto& e : *entries)
        if (std::none_of(infos.begin(), infos.end(),
                         [&](const engine::TensorInfo& i) { return i.name == e.name(); }))
          return invalid_argument("configured {} '{}' is not a model {}", kind, e.name(), kind);
    return Status();
  };
  KS_RETURN_IF_ERROR(complete("input", engine.inputs(), config->mutable_input()));
  KS_RETURN_IF_ERROR(complete("output", engine.outputs(), config->mutable_output()));
  for (const auto& warmup : config->model_warmup())
    for (const auto& entry : warmup.inputs()) {
      const std::string& name = entry.first;
      if (std::none_of(config->input().begin(), config->input().end(),
                       [&](const auto& in) { return in.name() == name; }))
        return invalid_argument("model_warmup '{}': '{}' is not a model input", warmup.name(),
                                name);
    }
  return Status();
}

inference::ModelConfig default_model_config(std::string name, int max_batch) {
  inference::ModelConfig config;
  config.set_name(std::move(name));
  config.set_max_batch_size(max_batch);
  config.mutable_dynamic_batching();
  auto* group = config.add_instance_group();
  group->set_count(1);
  group->set_kind(inference::ModelInstanceGroup::KIND_AUTO);
  return config;
}

}  // namespace kestrel::serve
