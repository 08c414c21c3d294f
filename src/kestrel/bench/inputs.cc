// Building the bench's samples (see inputs.h).
#include "kestrel/bench/inputs.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <random>

#include "kestrel/base/file.h"
#include "kestrel/base/half.h"
#include "kestrel/base/npy.h"

namespace kestrel::bench {
namespace {

namespace fs = std::filesystem;

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

template <typename T>
void put(std::string& bytes, size_t i, T v) {
  std::memcpy(bytes.data() + i * sizeof(T), &v, sizeof(T));
}

// Writes `value` as element `i` of a tensor of KServe type `datatype`.
Status store(std::string& bytes, const std::string& datatype, size_t i, double value) {
  const std::string& d = datatype;
  if (d == "FP32")
    put(bytes, i, static_cast<float>(value));
  else if (d == "FP64")
    put(bytes, i, value);
  else if (d == "FP16")
    put(bytes, i, Half(static_cast<float>(value)));
  else if (d == "INT8")
    put(bytes, i, static_cast<int8_t>(value));
  else if (d == "INT16")
    put(bytes, i, static_cast<int16_t>(value));
  else if (d == "INT32")
    put(bytes, i, static_cast<int32_t>(value));
  else if (d == "INT64")
    put(bytes, i, static_cast<int64_t>(value));
  else if (d == "UINT8")
    put(bytes, i, static_cast<uint8_t>(value));
  else if (d == "UINT16")
    put(bytes, i, static_cast<uint16_t>(value));
  else if (d == "UINT32")
    put(bytes, i, static_cast<uint32_t>(value));
  else if (d == "UINT64")
    put(bytes, i, static_cast<uint64_t>(value));
  else if (d == "BOOL")
    put(bytes, i, static_cast<uint8_t>(value != 0));
  else
    return unimplemented("datatype {} is not supported by the bench", d);
  return Status();
}

StatusOr<InputTensor> empty_tensor(const TensorSpec& spec, std::vector<int64_t> shape) {
  const int64_t size = datatype_size(spec.datatype);
  if (size == 0)
    return unimplemented("input '{}': datatype {} is not supported", spec.name, spec.datatype);
  InputTensor t{spec.name, spec.datatype, std::move(shape), {}};
  t.data.resize(static_cast<size_t>(element_count(t.shape) * size));
  return t;
}

StatusOr<Sample> random_sample(const ModelMetadata& metadata, const InputOptions& options) {
  std::mt19937_64 rng(options.seed);
  Sample s;
  for (const TensorSpec& spec : metadata.inputs) {
    KS_ASSIGN_OR_RETURN(std::vector<int64_t> shape, resolve_shape(spec, options));
    KS_ASSIGN_OR_RETURN(InputTensor t, empty_tensor(spec, shape));
    const bool is_float = spec.datatype.starts_with("FP");
    const size_t n = static_cast<size_t>(element_count(t.shape));
    for (size_t i = 0; i < n; ++i) {
      const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
      KS_RETURN_IF_ERROR(store(t.data, t.datatype, i, is_float ? u : std::floor(u * 256)));
    }
    s.inputs.push_back(std::move(t));
  }
  return s;
}

StatusOr<Sample> directory_sample(const ModelMetadata& metadata, const InputOptions& options) {
  Sample s;
  for (const TensorSpec& spec : metadata.inputs) {
    const fs::path raw = fs::path(options.input_data) / spec.name;
    const fs::path npy = fs::path(options.input_data) / (spec.name + ".npy");
    if (fs::exists(npy)) {
      KS_ASSIGN_OR_RETURN(Tensor tensor, read_npy(npy.string()));
      InputTensor t{spec.name, spec.datatype, {}, {}};
      for (size_t d = 0; d < tensor.rank(); ++d) t.shape.push_back(tensor.shape()[d]);
      t.data.assign(static_cast<const char*>(tensor.raw_data()), tensor.nbytes());
      if (static_cast<int64_t>(t.data.size()) !=
          element_count(t.shape) * datatype_size(spec.datatype)) {
        return invalid_argument("{}: element type does not match the input's {}", npy.string(),
                                spec.datatype);
      }
      s.inputs.push_back(std::move(t));
      continue;
    }
    KS_ASSIGN_OR_RETURN(std::vector<int64_t> shape, resolve_shape(spec, options));
    KS_ASSIGN_OR_RETURN(InputTensor t, empty_tensor(spec, shape));
    KS_ASSIGN_OR_RETURN(std::string bytes, read_file(raw.string()));
    if (bytes.size() != t.data.size()) {
      return invalid_argument("{} holds {} bytes; input '{}' of shape [{}] needs {}", raw.string(),
                              bytes.size(), spec.name, fmt::join(shape, ","), t.data.size());
    }
    t.data = std::move(bytes);
    s.inputs.push_back(std::move(t));
  }
  return s;
}

StatusOr<std::vector<Sample>> json_samples(const ModelMetadata& metadata,
                                           const InputOptions& options) {
  KS_ASSIGN_OR_RETURN(std::string text, read_file(options.input_data));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto error = parser.parse(text).get(doc); error) {
    return invalid_argument("{} is not JSON: {}", options.input_data,
                            simdjson::error_message(error));
  }
  simdjson::dom::array entries;
  if (doc["data"].get(entries))
    return invalid_argument("{} has no 'data' list", options.input_data);
  std::vector<Sample> samples;
  for (simdjson::dom::element entry : entries) {
    Sample s;
    for (const TensorSpec& spec : metadata.inputs) {
      simdjson::dom::element value;
      if (entry[spec.name].get(value)) {
        return invalid_argument("{}: entry {} lacks input '{}'", options.input_data, samples.size(),
                                spec.name);
      }
      simdjson::dom::array content;
      std::vector<int64_t> shape;
      if (value.is_object()) {
        simdjson::dom::array dims;
        if (value["content"].get(content)) {
          return invalid_argument("{}: input '{}' has no 'content'", options.input_data, spec.name);
        }
        if (!value["shape"].get(dims)) {
          for (simdjson::dom::element d : dims) {
            int64_t v = 0;
            if (d.get(v)) return invalid_argument("{}: bad shape", options.input_data);
            shape.push_back(v);
          }
        }
      } else if (value.get(content)) {
        return invalid_argument("{}: input '{}' is neither a list nor an object",
                                options.input_data, spec.name);
      }
      if (shape.empty()) {
        KS_ASSIGN_OR_RETURN(shape, resolve_shape(spec, options));
      }
      KS_ASSIGN_OR_RETURN(InputTensor t, empty_tensor(spec, shape));
      const size_t n = static_cast<size_t>(element_count(shape));
      size_t i = 0;
      for (simdjson::dom::element v : content) {
        double x = 0;
        bool b = false;
        if (!v.get(b)) {
          x = b ? 1 : 0;
        } else if (v.get(x)) {
          return invalid_argument("{}: input '{}' holds a non-number", options.input_data,
                                  spec.name);
        }
        if (i >= n) break;
        KS_RETURN_IF_ERROR(store(t.data, t.datatype, i++, x));
      }
      if (i != n || content.size() != n) {
        return invalid_argument("{}: input '{}' has {} values, its shape [{}] needs {}",
                                options.input_data, spec.name, content.size(),
                                fmt::join(shape, ","), n);
      }
      s.inputs.push_back(std::move(t));
    }
    samples.push_back(std::move(s));
  }
  if (samples.empty()) return invalid_argument("{}: 'data' is empty", options.input_data);
  return samples;
}

}  // namespace

Status parse_shape_option(std::string_view text, std::map<std::string, std::vector<int64_t>>& out) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return invalid_argument("--shape '{}': expected NAME:d0,d1,...", text);
  }
  std::vector<int64_t> dims;
  std::string_view rest = text.substr(colon + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || end != item.data() + item.size() || v <= 0) {
      return invalid_argument("--shape '{}': '{}' is not a positive dimension", text, item);
    }
    dims.push_back(v);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  if (dims.empty()) return invalid_argument("--shape '{}': no dimensions", text);
  out[std::string(text.substr(0, colon))] = std::move(dims);
  return Status();
}

StatusOr<std::vector<int64_t>> resolve_shape(const TensorSpec& spec, const InputOptions& options) {
  if (auto it = options.shapes.find(spec.name); it != options.shapes.end()) return it->second;
  std::vector<int64_t> shape = spec.shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] >= 0) continue;
    if (i == 0) {
      shape[i] = options.batch_size;
    } else {
      return invalid_argument(
          "input '{}' has a variable dimension {} (shape [{}]): give it with "
          "--shape {}:...",
          spec.name, i, fmt::join(spec.shape, ","), spec.name);
    }
  }
  return shape;
}

StatusOr<std::vector<Sample>> make_tensor_samples(const ModelMetadata& metadata,
                                                  const InputOptions& options) {
  if (metadata.inputs.empty()) return invalid_argument("model '{}' has no inputs", metadata.name);
  if (options.input_data.empty() || options.input_data == "random") {
    KS_ASSIGN_OR_RETURN(Sample s, random_sample(metadata, options));
    return std::vector<Sample>{std::move(s)};
  }
  if (fs::is_directory(options.input_data)) {
    KS_ASSIGN_OR_RETURN(Sample s, directory_sample(metadata, options));
    return std::vector<Sample>{std::move(s)};
  }
  return json_samples(metadata, options);
}

StatusOr<std::vector<Sample>> make_image_samples(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp"))
      files.push_back(e.path());
  }
  if (ec) return not_found("cannot read the folder {}: {}", dir, ec.message());
  if (files.empty()) return invalid_argument("no images (.jpg, .jpeg, .png, .bmp) in {}", dir);
  std::sort(files.begin(), files.end());
  std::vector<Sample> samples;
  for (const fs::path& f : files) {
    Sample s;
    KS_ASSIGN_OR_RETURN(s.image, read_file(f.string()));
    s.id = f.stem().string();
    samples.push_back(std::move(s));
  }
  return samples;
}

}  // namespace kestrel::bench
