// KServe v2 REST endpoints (see http_api.h).
#include "kestrel/serve/http/http_api.h"

#include <google/protobuf/util/json_util.h>
#include <simdjson.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <thread>

#include "kestrel/base/base64.h"
#include "kestrel/base/logging.h"
#include "kestrel/protocol/datatypes.h"
#include "kestrel/serve/http/json.h"

namespace kestrel::serve {
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kHeaderLength = "Inference-Header-Content-Length";
// Answers up to this size are built on the thread that finished the batch.
constexpr size_t kInlineResponseBytes = 64 << 10;

HttpResponse status_error(const Status& status) {
  return json_error(http_status(status.code()), status.message());
}

HttpResponse json_response(std::string body, int status = 200) {
  HttpResponse res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

std::vector<std::string> split_path(std::string_view target, std::string_view* query) {
  size_t q = target.find('?');
  *query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  std::string_view path = target.substr(0, q);
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// The value of `key` in a query string ("a=1&b=2"); empty when absent.
std::string query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key && eq != std::string_view::npos)
      return std::string(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return "";
}

std::string proto_to_json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) return "{}";
  return out;
}

std::string duration_json(const inference::StatisticDuration& d) {
  return fmt::format("{{\"count\":{},\"ns\":{}}}", d.count(), d.ns());
}

// Triton's statistics JSON (numbers, not the proto3 JSON mapping's strings).
std::string stats_json(const inference::ModelStatisticsResponse& r) {
  std::string out = "{\"model_stats\":[";
  for (int i = 0; i < r.model_stats_size(); ++i) {
    const auto& s = r.model_stats(i);
    const auto& is = s.inference_stats();
    out += fmt::format(
        "{}{{\"name\":{},\"version\":{},\"last_inference\":{},\"inference_count\":{},"
        "\"execution_count\":{},\"inference_stats\":{{\"success\":{},\"fail\":{},\"queue\":{},"
        "\"compute_input\":{},\"compute_infer\":{},\"compute_output\":{}}},\"batch_stats\":[",
        i ? "," : "", json_string(s.name()), json_string(s.version()), s.last_inference(),
        s.inference_count(), s.execution_count(), duration_json(is.success()),
        duration_json(is.fail()), duration_json(is.queue()), duration_json(is.compute_input()),
        duration_json(is.compute_infer()), duration_json(is.compute_output()));
    for (int b = 0; b < s.batch_stats_size(); ++b) {
      const auto& bs = s.batch_stats(b);
      out += fmt::format(
          "{}{{\"batch_size\":{},\"compute_input\":{},\"compute_infer\":{},\"compute_output\":{}}}",
          b ? "," : "", bs.batch_size(), duration_json(bs.compute_input()),
          duration_json(bs.compute_infer()), duration_json(bs.compute_output()));
    }
    out += "]}";
  }
  return out + "]}";
}

std::string metadata_json(const inference::ModelMetadataResponse& m) {
  auto tensors = [](const auto& list) {
    std::string out = "[";
    for (int i = 0; i < list.size(); ++i) {
      std::string shape;
      for (int d = 0; d < list[i].shape_size(); ++d)
        shape += fmt::format("{}{}", d ? "," : "", list[i].shape(d));
      out += fmt::format("{}{{\"name\":{},\"datatype\":{},\"shape\":[{}]}}", i ? "," : "",
                         json_string(list[i].name()), json_string(list[i].datatype()), shape);
    }
    return out + "]";
  };
  std::string versions;
  for (int i = 0; i < m.versions_size(); ++i)
    versions += fmt::format("{}{}", i ? "," : "", json_string(m.versions(i)));
  return fmt::format(
      "{{\"name\":{},\"versions\":[{}],\"platform\":{},\"inputs\":{},\"outputs\":{}}}",
      json_string(m.name()), versions, json_string(m.platform()), tensors(m.inputs()),
      tensors(m.outputs()));
}

// ---- infer: JSON tensors in, JSON or binary tensors out ----

Status fill_from_json(simdjson::dom::element data, Tensor& t, int64_t* index, int depth) {
  if (depth > 32) return invalid_argument("tensor data is nested too deeply");
  if (data.is_array()) {
    simdjson::dom::array items;
    if (data.get(items)) return invalid_argument("bad tensor data");
    for (simdjson::dom::element e : items)
      KS_RETURN_IF_ERROR(fill_from_json(e, t, index, depth + 1));
    return Status();
  }
  if (*index >= t.num_elements())
    return invalid_argument("tensor data has more elements than its shape {}",
                            t.shape().to_string());
  int64_t i = (*index)++;
  return dispatch_dtype<AllTypes>(t.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
    if constexpr (std::is_same_v<T, bool>) {
      auto v = data.get_bool();
      if (v.error()) return invalid_argument("expected a boolean in tensor data");
      t.data<bool>()[i] = v.value_unsafe();
    } else if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, Half> ||
                         std::is_same_v<T, BFloat16>) {
      auto v = data.get_double();
      if (v.error()) return invalid_argument("expected a number in tensor data");
      if constexpr (std::is_same_v<T, double>)
        t.data<double>()[i] = v.value_unsafe();
      else
        t.data<T>()[i] = T(static_cast<float>(v.value_unsafe()));
    } else if constexpr (std::is_unsigned_v<T>) {
      auto v = data.get_uint64();
      if (v.error() || v.value_unsafe() > std::numeric_limits<T>::max())
        return invalid_argument("expected an unsigned integer in range in tensor data");
      t.data<T>()[i] = static_cast<T>(v.value_unsafe());
    } else {
      auto v = data.get_int64();
      if (v.error() || v.value_unsafe() > std::numeric_limits<T>::max() ||
          v.value_unsafe() < std::numeric_limits<T>::min())
        return invalid_argument("expected an integer in range in tensor data");
      t.data<T>()[i] = static_cast<T>(v.value_unsafe());
    }
    return Status();
  });
}

struct ParsedInfer {
  InferRequest request;
  std::vector<bool> binary_outputs;  // per requested output, or one entry for "all"
  bool binary_all = false;
  std::map<std::string, SharedMemoryRef> shm_outputs;  // outputs wanted in shared memory
};

// The shared-memory reference in a tensor's "parameters" object, if any.
StatusOr<std::optional<SharedMemoryRef>> json_shared_memory(simdjson::dom::object params,
                                                            std::string_view what) {
  SharedMemoryParams p;
  auto region = params["shared_memory_region"];
  if (region.error() != simdjson::NO_SUCH_FIELD) {
    std::string_view v;
    if (region.get(v)) return invalid_argument("{}: shared_memory_region must be a string", what);
    p.region = std::string(v);
  }
  auto integer = [&](const char* key, std::optional<int64_t>* out) -> Status {
    auto field = params[key];
    if (field.error() == simdjson::NO_SUCH_FIELD) return Status();
    int64_t v = 0;
    if (field.get(v)) return invalid_argument("{}: {} must be an integer", what, key);
    *out = v;
    return Status();
  };
  KS_RETURN_IF_ERROR(integer("shared_memory_byte_size", &p.byte_size));
  KS_RETURN_IF_ERROR(integer("shared_memory_offset", &p.offset));
  return shared_memory_ref(p, what);
}

StatusOr<ParsedInfer> parse_infer(const HttpRequest& req, int max_depth,
                                  const SharedMemoryManager& shm) {
  std::string_view body = req.body();
  std::string_view json = body, binary;
  auto header = req.find(kHeaderLength);
  if (header != req.end()) {
    std::string_view v = header->value();
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n > body.size())
      return invalid_argument("bad {} header '{}' for a body of {} bytes", kHeaderLength, v,
                              body.size());
    json = body.substr(0, n);
    binary = body.substr(n);
  }
  thread_local simdjson::dom::parser parser;
  thread_local bool allocated = false;
  if (!allocated) {
    if (parser.allocate(1 << 16, static_cast<size_t>(max_depth)) != simdjson::SUCCESS)
      return internal_error("cannot allocate the JSON parser");
    allocated = true;
  }
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  if (auto error = parser.parse(padded).get(root))
    return invalid_argument("failed to parse the request JSON: {}", simdjson::error_message(error));
  if (!root.is_object()) return invalid_argument("the request JSON must be an object");

  ParsedInfer parsed;
  InferRequest& r = parsed.request;
  std::string_view id;
  if (!root["id"].get(id)) r.id = std::string(id);
  simdjson::dom::object params;
  if (!root["parameters"].get(params)) {
    bool b = false;
    if (!params["binary_data_output"].get(b)) parsed.binary_all = b;
    uint64_t u = 0;
    if (!params["priority"].get(u)) r.priority = u;
    if (!params["timeout"].get(u)) r.timeout_us = u;
  }
  simdjson::dom::array inputs;
  if (root["inputs"].get(inputs)) return invalid_argument("the request has no 'inputs' array");
  size_t binary_offset = 0;
  for (simdjson::dom::element in : inputs) {
    std::string_view name, datatype;
    if (in["name"].get(name)) return invalid_argument("an input has no 'name'");
    if (in["datatype"].get(datatype)) return invalid_argument("input '{}' has no 'datatype'", name);
    simdjson::dom::array shape_json;
    if (in["shape"].get(shape_json)) return invalid_argument("input '{}' has no 'shape'", name);
    std::vector<int64_t> shape;
    for (simdjson::dom::element d : shape_json) {
      int64_t v = 0;
      if (d.get(v) || v < 0) return invalid_argument("input '{}': bad shape", name);
      shape.push_back(v);
    }
    DType dtype = protocol::dtype_from_kserve(datatype);
    if (dtype == DType::kUndefined)
      return invalid_argument("input '{}': unsupported datatype '{}'", name, datatype);
    KS_ASSIGN_OR_RETURN(int64_t count, checked_num_elements(shape));
    if (static_cast<uint64_t>(count) > (uint64_t{1} << 32) / dtype_size(dtype))
      return invalid_argument("input '{}': shape {} is too large", name, Shape(shape).to_string());
    size_t bytes = static_cast<size_t>(count) * dtype_size(dtype);
    uint64_t binary_size = 0;
    simdjson::dom::object in_params;
    const bool has_params = !in["parameters"].get(in_params);
    bool is_binary = has_params && !in_params["binary_data_size"].get(binary_size);
    if (has_params) {
      const std::string what = fmt::format("input '{}'", name);
      KS_ASSIGN_OR_RETURN(std::optional<SharedMemoryRef> ref, json_shared_memory(in_params, what));
      if (ref) {
        if (is_binary || in["data"].error() != simdjson::NO_SUCH_FIELD)
          return invalid_argument("{} is in shared memory and has data too", what);
        KS_ASSIGN_OR_RETURN(Tensor t, shm.input(*ref, dtype, Shape(shape), name));
        r.inputs.push_back({std::string(name), std::move(t)});
        continue;
      }
    }
    KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(dtype, Shape(shape)));
    if (is_binary) {
      if (binary_size != bytes)
        return invalid_argument(
            "input '{}': binary_data_size {} does not match shape {} of {} ({} bytes)", name,
            binary_size, Shape(shape).to_string(), datatype, bytes);
      if (binary_offset + bytes > binary.size())
        return invalid_argument("input '{}': the body holds {} bytes of binary data, {} needed",
                                name, binary.size() - binary_offset, bytes);
      std::memcpy(t.raw_data(), binary.data() + binary_offset, bytes);
      binary_offset += bytes;
    } else {
      simdjson::dom::element data;
      if (in["data"].get(data)) return invalid_argument("input '{}' has no 'data'", name);
      int64_t index = 0;
      KS_RETURN_IF_ERROR(fill_from_json(data, t, &index, 0));
      if (index != count)
        return invalid_argument("input '{}': {} values for shape {}", name, index,
                                Shape(shape).to_string());
    }
    r.inputs.push_back({std::string(name), std::move(t)});
  }
  if (binary_offset != binary.size())
    return invalid_argument("{} bytes of binary data are not used by any input",
                            binary.size() - binary_offset);
  simdjson::dom::array outputs;
  if (!root["outputs"].get(outputs)) {
    for (simdjson::dom::element out : outputs) {
      std::string_view name;
      if (out["name"].get(name)) return invalid_argument("an output has no 'name'");
      r.outputs.emplace_back(name);
      bool b = parsed.binary_all;
      simdjson::dom::object op;
      if (!out["parameters"].get(op)) {
        bool v = false;
        if (!op["binary_data"].get(v)) b = v;
        KS_ASSIGN_OR_RETURN(std::optional<SharedMemoryRef> ref,
                            json_shared_memory(op, fmt::format("output '{}'", name)));
        if (ref) parsed.shm_outputs[std::string(name)] = std::move(*ref);
      }
      parsed.binary_outputs.push_back(b);
    }
  }
  return parsed;
}

std::string tensor_json_data(const Tensor& t) {
  std::string out = "[";
  out.reserve(static_cast<size_t>(t.num_elements()) * 8 + 2);
  dispatch_dtype<AllTypes>(t.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      if (i) out += ',';
      if constexpr (std::is_same_v<T, bool>)
        out += p[i] ? "true" : "false";
      else if constexpr (std::is_integral_v<T>)
        out += fmt::format("{}", p[i]);
      else if constexpr (std::is_same_v<T, double>)
        out += json_number(p[i]);
      else
        out += json_number(static_cast<double>(static_cast<float>(p[i])));
    }
    return Status();
  }).ignore_error();
  return out + "]";
}

StatusOr<HttpResponse> infer_response(const InferResponse& r, const ParsedInfer& parsed,
                                      const SharedMemoryManager& shm) {
  std::string json = fmt::format("{{\"model_name\":{},\"model_version\":{}",
                                 json_string(r.model_name), json_string(r.model_version));
  if (!r.id.empty()) json += ",\"id\":" + json_string(r.id);
  json += ",\"outputs\":[";
  std::vector<const NamedTensor*> binary;  // the outputs that follow the header, in order
  size_t binary_bytes = 0;
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const NamedTensor& out = r.outputs[i];
    bool as_binary = parsed.binary_all;
    const auto& names = parsed.request.outputs;
    for (size_t k = 0; k < names.size(); ++k)
      if (names[k] == out.name) as_binary = parsed.binary_outputs[k];
    std::string shape;
    for (size_t d = 0; d < out.tensor.rank(); ++d)
      shape += fmt::format("{}{}", d ? "," : "", out.tensor.shape()[d]);
    json +=
        fmt::format("{}{{\"name\":{},\"datatype\":\"{}\",\"shape\":[{}]", i ? "," : "",
                    json_string(out.name), protocol::kserve_datatype(out.tensor.dtype()), shape);
    if (auto ref = parsed.shm_outputs.find(out.name); ref != parsed.shm_outputs.end()) {
      KS_RETURN_IF_ERROR(shm.write_output(ref->second, out.tensor, out.name));
      json += "}";
    } else if (as_binary) {
      json += fmt::format(",\"parameters\":{{\"binary_data_size\":{}}}}}", out.tensor.nbytes());
      binary.push_back(&out);
      binary_bytes += out.tensor.nbytes();
    } else {
      json += ",\"data\":" + tensor_json_data(out.tensor) + "}";
    }
  }
  json += "]}";
  HttpResponse res{http::status::ok, 11};
  if (binary.empty()) {
    res.set(http::field::content_type, "application/json");
    res.body() = std::move(json);
    return res;
  }
  // The body is the header then each binary output: one buffer, each output copied once (a copy
  // per output and another of the whole took 11 ms per 8.6 MB answer on the H100 machine).
  res.set(http::field::content_type, "application/octet-stream");
  res.set(kHeaderLength, std::to_string(json.size()));
  std::string& body = res.body();
  body.reserve(json.size() + binary_bytes);
  body = std::move(json);
  for (const NamedTensor* out : binary) {
    body.append(static_cast<const char*>(out->tensor.raw_data()), out->tensor.nbytes());
  }
  return res;
}

// ---- detect: images in, detections out ----

// The parts of a multipart/form-data body (their contents only).
StatusOr<std::vector<std::string_view>> multipart_parts(std::string_view body,
                                                        std::string_view content_type) {
  size_t b = content_type.find("boundary=");
  if (b == std::string_view::npos) return invalid_argument("multipart body without a boundary");
  std::string_view boundary = content_type.substr(b + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  if (boundary.size() >= 2 && boundary.front() == '"')
    boundary = boundary.substr(1, boundary.size() - 2);
  if (boundary.empty() || boundary.size() > 70) return invalid_argument("bad multipart boundary");
  std::string delimiter = "--" + std::string(boundary);
  std::vector<std::string_view> parts;
  size_t pos = body.find(delimiter);
  if (pos == std::string_view::npos) return invalid_argument("multipart body without parts");
  while (true) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") break;  // closing delimiter
    size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos) return invalid_argument("truncated multipart part");
    size_t start = headers_end + 4;
    size_t next = body.find("\r\n" + delimiter, start);
    if (next == std::string_view::npos) return invalid_argument("unterminated multipart part");
    parts.push_back(body.substr(start, next - start));
    pos = next + 2;
  }
  return parts;
}

StatusOr<float> query_float(std::string_view query, std::string_view key, float fallback) {
  std::string v = query_value(query, key);
  if (v.empty()) return fallback;
  char* end = nullptr;
  float f = std::strtof(v.c_str(), &end);
  if (end != v.c_str() + v.size() || !(f >= 0 && f <= 1))
    return invalid_argument("query parameter '{}' must be a number in [0, 1]", key);
  return f;
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

void HttpApi::handle_metrics(HttpRequest&& request, Responder respond) {
  std::string_view query;
  auto path = split_path(request.target(), &query);
  if (path != std::vector<std::string>{"metrics"}) return respond(json_error(404, "not found"));
  if (request.method() != http::verb::get) return respond(json_error(405, "use GET"));
  HttpResponse res{http::status::ok, 11};
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.body() = server_.metrics_text();
  respond(std::move(res));
}

HttpApi::HttpApi(InferenceServer& server, HttpApiOptions options)
    : server_(server),
      options_(std::move(options)),
      responders_(std::clamp(std::thread::hardware_concurrency() / 2, 2u, 16u)) {}

HttpApi::~HttpApi() { responders_.join(); }

void HttpApi::finish_responses() { responders_.join(); }

void HttpApi::handle(HttpRequest&& request, Responder respond,
                     std::shared_ptr<CancelToken> cancel) {
  std::string_view query;
  std::vector<std::string> path = split_path(request.target(), &query);
  if (path.empty() || path[0] != "v2") return respond(json_error(404, "not found"));
  bool health = path.size() >= 2 && path[1] == "health";
  if (!options_.auth_token.empty() && !health) {
    std::string_view auth = request[http::field::authorization];
    if (!constant_time_equal(auth, "Bearer " + options_.auth_token)) {
      HttpResponse res = json_error(401, "missing or wrong bearer token");
      res.set(http::field::www_authenticate, "Bearer");
      return respond(std::move(res));
    }
  }
  const bool get = request.method() == http::verb::get;
  const bool post = request.method() == http::verb::post;
  if (path.size() == 1) {
    if (!get) return respond(json_error(405, "use GET"));
    auto m = server_.metadata();
    std::string ext;
    for (int i = 0; i < m.extensions_size(); ++i)
      ext += fmt::format("{}{}", i ? "," : "", json_string(m.extensions(i)));
    return respond(
        json_response(fmt::format("{{\"name\":{},\"version\":{},\"extensions\":[{}]}}",
                                  json_string(m.name()), json_string(m.version()), ext)));
  }
  if (health && path.size() == 3) {
    if (!get) return respond(json_error(405, "use GET"));
    bool ok = path[2] == "live" ? server_.live() : path[2] == "ready" ? server_.ready() : false;
    if (path[2] != "live" && path[2] != "ready") return respond(json_error(404, "not found"));
    HttpResponse res{ok ? http::status::ok : http::status::service_unavailable, 11};
    return respond(std::move(res));
  }
  if (path[1] == "repository") {
    if (!post && !get) return respond(json_error(405, "use POST"));
    if (path.size() == 3 && path[2] == "index") {
      auto index = server_.index(false);
      std::string out = "[";
      for (int i = 0; i < index.models_size(); ++i) {
        const auto& e = index.models(i);
        out += fmt::format("{}{{\"name\":{},\"version\":{},\"state\":{},\"reason\":{}}}",
                           i ? "," : "", json_string(e.name()), json_string(e.version()),
                           json_string(e.state()), json_string(e.reason()));
      }
      return respond(json_response(out + "]"));
    }
    if (path.size() == 5 && path[2] == "models" && (path[4] == "load" || path[4] == "unload")) {
      if (!post) return respond(json_error(405, "use POST"));
      if (!valid_model_name(path[3])) return respond(json_error(400, "invalid model name"));
      Status s = path[4] == "load" ? server_.load(path[3]) : server_.unload(path[3]);
      if (!s.ok()) return respond(status_error(s));
      return respond(json_response(""));
    }
    return respond(json_error(404, "not found"));
  }
  if (path[1] == "systemsharedmemory")
    return shared_memory_endpoint(request, path, SharedMemoryManager::Kind::kSystem,
                                  std::move(respond));
  if (path[1] == "cudasharedmemory")
    return shared_memory_endpoint(request, path, SharedMemoryManager::Kind::kCuda,
                                  std::move(respond));
  if (path[1] == "models")
    return model_endpoint(std::move(request), path, std::move(respond), std::move(cancel));
  respond(json_error(404, "not found"));
}

void HttpApi::shared_memory_endpoint(const HttpRequest& request,
                                     const std::vector<std::string>& path,
                                     SharedMemoryManager::Kind kind, Responder respond) {
  // v2/{systemsharedmemory|cudasharedmemory}[/region/{name}]/{status|register|unregister}
  const bool cuda = kind == SharedMemoryManager::Kind::kCuda;
  std::string region;
  if (path.size() == 5 && path[2] == "region") {
    region = path[3];
  } else if (path.size() != 3) {
    return respond(json_error(404, "not found"));
  }
  const std::string& action = path.back();
  SharedMemoryManager& shm = server_.shared_memory();
  if (action == "status") {
    if (request.method() != http::verb::get) return respond(json_error(405, "use GET"));
    std::string out = "[";
    if (cuda) {
      auto regions = shm.cuda_status(region);
      if (!regions.ok()) return respond(status_error(regions.status()));
      for (const CudaSharedMemoryRegion& r : *regions)
        out +=
            fmt::format("{}{{\"name\":{},\"device_id\":{},\"byte_size\":{}}}",
                        out.size() > 1 ? "," : "", json_string(r.name), r.device_id, r.byte_size);
    } else {
      auto regions = shm.status(region);
      if (!regions.ok()) return respond(status_error(regions.status()));
      for (const SharedMemoryRegion& r : *regions)
        out += fmt::format("{}{{\"name\":{},\"key\":{},\"offset\":{},\"byte_size\":{}}}",
                           out.size() > 1 ? "," : "", json_string(r.name), json_string(r.key),
                           r.offset, r.byte_size);
    }
    return respond(json_response(out + "]"));
  }
  if (request.method() != http::verb::post) return respond(json_error(405, "use POST"));
  if (action == "unregister") {
    Status s = shm.unregister(region, kind);
    return respond(s.ok() ? json_response("") : status_error(s));
  }
  if (action != "register" || region.empty()) return respond(json_error(404, "not found"));
  simdjson::dom::parser parser;
  simdjson::padded_string body(request.body());
  simdjson::dom::object o;
  if (auto error = parser.parse(body).get(o))
    return respond(json_error(400, fmt::format("the register request must be a JSON object: {}",
                                               simdjson::error_message(error))));
  if (cuda) {
    CudaSharedMemoryRegion r;
    r.name = region;
    std::string_view b64;
    if (o["raw_handle"]["b64"].get(b64))
      return respond(json_error(
          400, "the register request has no 'raw_handle' object with a base64 'b64' string"));
    StatusOr<std::string> handle = base64_decode(b64);
    if (!handle.ok()) return respond(status_error(handle.status().with_context("raw_handle")));
    r.raw_handle = std::move(handle).value();
    if (o["device_id"].get(r.device_id))
      return respond(json_error(400, "the register request has no integer 'device_id'"));
    if (o["byte_size"].get(r.byte_size))
      return respond(json_error(400, "the register request has no unsigned 'byte_size'"));
    Status s = shm.register_cuda_region(r);
    return respond(s.ok() ? json_response("") : status_error(s));
  }
  SharedMemoryRegion r;
  r.name = region;
  std::string_view key;
  if (o["key"].get(key))
    return respond(json_error(400, "the register request has no 'key' string"));
  r.key = std::string(key);
  if (o["byte_size"].get(r.byte_size))
    return respond(json_error(400, "the register request has no unsigned 'byte_size'"));
  auto offset = o["offset"];
  if (offset.error() != simdjson::NO_SUCH_FIELD && offset.get(r.offset))
    return respond(json_error(400, "the register request's 'offset' must be unsigned"));
  Status s = shm.register_region(r);
  respond(s.ok() ? json_response("") : status_error(s));
}

void HttpApi::model_endpoint(HttpRequest&& request, const std::vector<std::string>& path,
                             Responder respond, std::shared_ptr<CancelToken> cancel) {
  const bool get = request.method() == http::verb::get;
  const bool post = request.method() == http::verb::post;
  if (path.size() == 3 && path[2] == "stats") {
    auto stats = server_.statistics("", "");
    if (!stats.ok()) return respond(status_error(stats.status()));
    return respond(json_response(stats_json(*stats)));
  }
  if (path.size() < 3) return respond(json_error(404, "not found"));
  const std::string& name = path[2];
  if (!valid_model_name(name)) return respond(json_error(400, "invalid model name"));
  std::string version;
  size_t next = 3;
  if (path.size() >= 5 && path[3] == "versions") {
    version = path[4];
    next = 5;
  }
  if (path.size() > next + 1) return respond(json_error(404, "not found"));
  std::string action = path.size() == next + 1 ? path[next] : "";
  if (action == "ready") {
    if (!get) return respond(json_error(405, "use GET"));
    bool ready = server_.model(name, version).ok() && server_.ready();
    return respond(HttpResponse{ready ? http::status::ok : http::status::service_unavailable, 11});
  }
  if (action == "stats") {
    auto stats = server_.statistics(name, version);
    if (!stats.ok()) return respond(status_error(stats.status()));
    return respond(json_response(stats_json(*stats)));
  }
  StatusOr<std::shared_ptr<ServedModel>> model = server_.model(name, version);
  if (!model.ok()) return respond(status_error(model.status()));
  if (action.empty()) {
    if (!get) return respond(json_error(405, "use GET"));
    return respond(json_response(metadata_json((*model)->metadata())));
  }
  if (action == "config") {
    if (!get) return respond(json_error(405, "use GET"));
    return respond(json_response(proto_to_json((*model)->config())));
  }
  if (action == "infer") {
    if (!post) return respond(json_error(405, "use POST"));
    return infer(std::move(request), std::move(*model), std::move(respond), std::move(cancel));
  }
  if (action == "detect") {
    if (!post) return respond(json_error(405, "use POST"));
    return detect(std::move(request), std::move(*model), std::move(respond), std::move(cancel));
  }
  respond(json_error(404, "not found"));
}

void HttpApi::infer(HttpRequest&& request, std::shared_ptr<ServedModel> model, Responder respond,
                    std::shared_ptr<CancelToken> cancel) {
  StatusOr<ParsedInfer> parsed =
      parse_infer(request, options_.max_json_depth, server_.shared_memory());
  if (!parsed.ok()) return respond(status_error(parsed.status()));
  auto shared = std::make_shared<ParsedInfer>(std::move(*parsed));
  InferRequest r = shared->request;  // tensors share storage
  r.cancel = std::move(cancel);
  model->infer(std::move(r), [this, shared, respond](StatusOr<InferResponse> result) {
    if (!result.ok()) return respond(status_error(result.status()));
    size_t bytes = 0;
    for (const NamedTensor& t : result->outputs) bytes += t.tensor.nbytes();
    auto answer = [this, shared, respond, result = std::move(*result)] {
      StatusOr<HttpResponse> res = infer_response(result, *shared, server_.shared_memory());
      if (!res.ok()) return respond(status_error(res.status()));
      respond(std::move(*res));
    };
    if (bytes <= kInlineResponseBytes && shared->shm_outputs.empty()) return answer();
    boost::asio::post(responders_, std::move(answer));
  });
}

void HttpApi::detect(HttpRequest&& request, std::shared_ptr<ServedModel> model, Responder respond,
                     std::shared_ptr<CancelToken> cancel) {
  std::string_view query;
  split_path(request.target(), &query);
  vision::DetectionOptions options = model->detection_defaults();
  auto score = query_float(query, "score_threshold", options.score_threshold);
  auto iou = query_float(query, "iou_threshold", options.iou_threshold);
  if (!score.ok()) return respond(status_error(score.status()));
  if (!iou.ok()) return respond(status_error(iou.status()));
  options.score_threshold = *score;
  options.iou_threshold = *iou;
  auto body = std::make_shared<std::string>(std::move(request.body()));
  std::vector<std::string_view> images;
  std::string_view content_type = request[http::field::content_type];
  if (content_type.substr(0, 19) == "multipart/form-data") {
    auto parts = multipart_parts(*body, content_type);
    if (!parts.ok()) return respond(status_error(parts.status()));
    images = std::move(*parts);
  } else {
    images.push_back(*body);
  }
  std::string name = model->name();
  std::string version = std::to_string(model->version());
  std::vector<std::string> classes;
  if (model->detector()) classes = model->detector()->class_names();
  model->detect(
      images, options, std::move(cancel),
      [body, respond, name, version, classes](StatusOr<std::vector<DetectResult>> result) {
        if (!result.ok()) return respond(status_error(result.status()));
        std::string out = fmt::format("{{\"model_name\":{},\"model_version\":{},\"results\":[",
                                      json_string(name), json_string(version));
        for (size_t i = 0; i < result->size(); ++i) {
          const DetectResult& r = (*result)[i];
          out += fmt::format("{}{{\"width\":{},\"height\":{},\"detections\":[", i ? "," : "",
                             r.width, r.height);
          for (size_t k = 0; k < r.detections.size(); ++k) {
            const vision::Detection& d = r.detections[k];
            std::string cls = d.class_id >= 0 && static_cast<size_t>(d.class_id) < classes.size()
                                  ? classes[static_cast<size_t>(d.class_id)]
                                  : fmt::format("class{}", d.class_id);
            out += fmt::format(
                "{}{{\"class_id\":{},\"class_name\":{},\"score\":{},\"box\":[{},{},{},{}]}}",
                k ? "," : "", d.class_id, json_string(cls), json_number(d.score), json_number(d.x1),
                json_number(d.y1), json_number(d.x2), json_number(d.y2));
          }
          out += "]}";
        }
        respond(json_response(out + "]}"));
      });
}

}  // namespace kestrel::serve
