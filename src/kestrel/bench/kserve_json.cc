// KServe v2 JSON documents (see kserve_json.h). Parsing uses simdjson's DOM API with error codes.
#include "kestrel/bench/kserve_json.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <cstring>

#include "kestrel/base/half.h"

namespace kestrel::bench {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

StatusOr<element> parse_document(simdjson::dom::parser& parser, std::string_view json,
                                 std::string_view what) {
  element doc;
  if (auto error = parser.parse(json.data(), json.size()).get(doc); error) {
    return invalid_argument("{} is not JSON: {}", what, simdjson::error_message(error));
  }
  return doc;
}

Status read_tensor_specs(element parent, const char* key, std::vector<TensorSpec>& out) {
  array list;
  if (parent[key].get(list)) return Status();  // absent: no tensors
  for (element item : list) {
    TensorSpec spec;
    std::string_view name, datatype;
    if (item["name"].get(name) || item["datatype"].get(datatype)) {
      return invalid_argument("model metadata: an entry of '{}' lacks name or datatype", key);
    }
    spec.name = std::string(name);
    spec.datatype = std::string(datatype);
    array shape;
    if (!item["shape"].get(shape)) {
      for (element d : shape) {
        int64_t v = 0;
        if (d.get(v)) return invalid_argument("model metadata: '{}' has a non-integer dim", name);
        spec.shape.push_back(v);
      }
    }
    out.push_back(std::move(spec));
  }
  return Status();
}

// {"count": N, "ns": T}, added to the two counters; an absent member adds nothing.
void add_duration(element stats, const char* key, int64_t& count, int64_t& ns) {
  element d;
  if (stats[key].get(d)) return;
  uint64_t c = 0, n = 0;
  if (!d["count"].get(c)) count += static_cast<int64_t>(c);
  if (!d["ns"].get(n)) ns += static_cast<int64_t>(n);
}

template <typename T>
void append_values(std::string& out, const std::string& bytes) {
  const size_t n = bytes.size() / sizeof(T);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
    if (i) out += ',';
    if constexpr (std::is_same_v<T, Half>) {
      fmt::format_to(std::back_inserter(out), "{}", static_cast<float>(v));
    } else if constexpr (std::is_same_v<T, bool>) {
      out += v ? "true" : "false";
    } else {
      fmt::format_to(std::back_inserter(out), "{}", v);
    }
  }
}

Status append_data(std::string& out, const InputTensor& t) {
  const std::string& d = t.datatype;
  if (d == "FP32")
    append_values<float>(out, t.data);
  else if (d == "FP64")
    append_values<double>(out, t.data);
  else if (d == "FP16")
    append_values<Half>(out, t.data);
  else if (d == "INT8")
    append_values<int8_t>(out, t.data);
  else if (d == "INT16")
    append_values<int16_t>(out, t.data);
  else if (d == "INT32")
    append_values<int32_t>(out, t.data);
  else if (d == "INT64")
    append_values<int64_t>(out, t.data);
  else if (d == "UINT8")
    append_values<uint8_t>(out, t.data);
  else if (d == "UINT16")
    append_values<uint16_t>(out, t.data);
  else if (d == "UINT32")
    append_values<uint32_t>(out, t.data);
  else if (d == "UINT64")
    append_values<uint64_t>(out, t.data);
  else if (d == "BOOL")
    append_values<bool>(out, t.data);
  else
    return unimplemented("input '{}': datatype {} cannot be sent as JSON", t.name, d);
  return Status();
}

}  // namespace

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

StatusOr<ModelMetadata> parse_model_metadata(std::string_view json) {
  simdjson::dom::parser parser;
  KS_ASSIGN_OR_RETURN(element doc, parse_document(parser, json, "model metadata"));
  ModelMetadata m;
  std::string_view name;
  if (doc["name"].get(name)) return invalid_argument("model metadata has no name");
  m.name = std::string(name);
  array versions;
  if (!doc["versions"].get(versions)) {
    for (element v : versions) {
      std::string_view s;
      if (!v.get(s)) m.versions.emplace_back(s);
    }
  }
  KS_RETURN_IF_ERROR(read_tensor_specs(doc, "inputs", m.inputs));
  KS_RETURN_IF_ERROR(read_tensor_specs(doc, "outputs", m.outputs));
  return m;
}

StatusOr<ServerStats> parse_model_stats(std::string_view json, std::string_view model) {
  simdjson::dom::parser parser;
  KS_ASSIGN_OR_RETURN(element doc, parse_document(parser, json, "model statistics"));
  array entries;
  if (doc["model_stats"].get(entries)) {
    return invalid_argument("model statistics lack 'model_stats'");
  }
  ServerStats s;
  bool found = false;
  for (element e : entries) {
    std::string_view name;
    if (e["name"].get(name) || name != model) continue;
    found = true;
    uint64_t v = 0;
    if (!e["inference_count"].get(v)) s.inference_count += static_cast<int64_t>(v);
    if (!e["execution_count"].get(v)) s.execution_count += static_cast<int64_t>(v);
    element st;
    if (e["inference_stats"].get(st)) continue;
    add_duration(st, "success", s.success_count, s.success_ns);
    add_duration(st, "fail", s.fail_count, s.fail_ns);
    add_duration(st, "queue", s.queue_count, s.queue_ns);
    add_duration(st, "compute_input", s.compute_input_count, s.compute_input_ns);
    add_duration(st, "compute_infer", s.compute_infer_count, s.compute_infer_ns);
    add_duration(st, "compute_output", s.compute_output_count, s.compute_output_ns);
  }
  if (!found) return not_found("model statistics have no entry for '{}'", model);
  return s;
}

std::string error_message_of(std::string_view body) {
  simdjson::dom::parser parser;
  element doc;
  std::string_view message;
  if (!parser.parse(body.data(), body.size()).get(doc) && !doc["error"].get(message)) {
    return std::string(message);
  }
  std::string s(body.substr(0, 200));
  if (body.size() > 200) s += "...";
  return s;
}

StatusOr<std::string> infer_request_json(const Sample& sample, bool binary) {
  std::string out = "{\"inputs\":[";
  for (size_t i = 0; i < sample.inputs.size(); ++i) {
    const InputTensor& t = sample.inputs[i];
    if (i) out += ',';
    out += fmt::format("{{\"name\":{},\"datatype\":{},\"shape\":[{}]", json_quote(t.name),
                       json_quote(t.datatype), fmt::join(t.shape, ","));
    if (binary) {
      out += fmt::format(",\"parameters\":{{\"binary_data_size\":{}}}}}", t.data.size());
    } else {
      out += ",\"data\":[";
      KS_RETURN_IF_ERROR(append_data(out, t));
      out += "]}";
    }
  }
  out += "],\"parameters\":{\"binary_data_output\":true}}";
  return out;
}

namespace {
std::string shm_parameters(const ShmTensorRef& ref) {
  return fmt::format(
      "\"parameters\":{{\"shared_memory_region\":{},\"shared_memory_offset\":{},"
      "\"shared_memory_byte_size\":{}}}",
      json_quote(ref.region), ref.offset, ref.byte_size);
}
}  // namespace

std::string shm_infer_request_json(const Sample& sample, std::span<const ShmTensorRef> inputs,
                                   std::span<const std::pair<std::string, ShmTensorRef>> outputs) {
  std::string out = "{\"inputs\":[";
  for (size_t i = 0; i < sample.inputs.size() && i < inputs.size(); ++i) {
    const InputTensor& t = sample.inputs[i];
    out += fmt::format("{}{{\"name\":{},\"datatype\":{},\"shape\":[{}],{}}}", i ? "," : "",
                       json_quote(t.name), json_quote(t.datatype), fmt::join(t.shape, ","),
                       shm_parameters(inputs[i]));
  }
  out += "],\"outputs\":[";
  for (size_t k = 0; k < outputs.size(); ++k) {
    out += fmt::format("{}{{\"name\":{},{}}}", k ? "," : "", json_quote(outputs[k].first),
                       shm_parameters(outputs[k].second));
  }
  return out + "]}";
}

}  // namespace kestrel::bench
