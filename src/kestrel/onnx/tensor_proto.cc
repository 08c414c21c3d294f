#include "kestrel/onnx/tensor_proto.h"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace kestrel::onnx {
namespace {

namespace fs = std::filesystem;
using onnxpb::TensorProto;

// Copies `count` elements of a repeated field into `t`, converting each with `convert`.
template <typename Dst, typename Field, typename Convert>
Status copy_field(const Field& field, Tensor& t, Convert convert) {
  if (static_cast<int64_t>(field.size()) != t.num_elements()) {
    return invalid_argument("holds {} values but its shape {} needs {}", field.size(), t.shape(),
                            t.num_elements());
  }
  Dst* out = static_cast<Dst*>(t.raw_data());
  for (int i = 0; i < field.size(); ++i) out[i] = convert(field.Get(i));
  return Status();
}

// Reads external data: `location` relative to `base_dir`, staying inside it.
StatusOr<std::string> read_external(const TensorProto& proto, const std::string& base_dir,
                                    size_t expected_bytes) {
  std::string location;
  uint64_t offset = 0;
  std::optional<uint64_t> length;
  for (const auto& entry : proto.external_data()) {
    try {
      if (entry.key() == "location") location = entry.value();
      if (entry.key() == "offset") offset = std::stoull(entry.value());
      if (entry.key() == "length") length = std::stoull(entry.value());
    } catch (const std::exception&) {
      return invalid_argument("external data {} '{}' is not a number", entry.key(), entry.value());
    }
  }
  if (location.empty()) return invalid_argument("external data has no location");
  if (base_dir.empty()) {
    return permission_denied(
        "external data '{}' cannot be read: the model was not loaded from a "
        "file",
        location);
  }
  const fs::path rel(location);
  if (rel.is_absolute()) {
    return permission_denied(
        "external data path '{}' is absolute; it must be relative to the "
        "model's folder",
        location);
  }
  for (const fs::path& part : rel) {
    if (part == "..") {
      return permission_denied("external data path '{}' leaves the model's folder", location);
    }
  }
  std::error_code ec;
  const fs::path base = fs::canonical(base_dir, ec);
  if (ec) return not_found("model folder '{}': {}", base_dir, ec.message());
  const fs::path full = fs::canonical(base / rel, ec);
  if (ec) return not_found("external data '{}': {}", location, ec.message());
  // Symbolic links are resolved by canonical(): the target must still be inside the folder.
  auto [b, f] = std::mismatch(base.begin(), base.end(), full.begin(), full.end());
  if (b != base.end()) {
    return permission_denied("external data '{}' resolves to '{}', outside the model's folder",
                             location, full.string());
  }
  if (!fs::is_regular_file(full, ec)) {
    return invalid_argument("external data '{}' is not a regular file", location);
  }
  const uint64_t file_size = fs::file_size(full, ec);
  if (ec) return not_found("external data '{}': {}", location, ec.message());
  const uint64_t size = length.value_or(file_size > offset ? file_size - offset : 0);
  if (size != expected_bytes) {
    return invalid_argument("external data '{}' holds {} bytes, the tensor needs {}", location,
                            size, expected_bytes);
  }
  if (offset > file_size || size > file_size - offset) {
    return invalid_argument(
        "external data '{}': range {}+{} is past the end of the file ({} bytes)", location, offset,
        size, file_size);
  }
  std::ifstream in(full, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string data(size, '\0');
  if (!in.read(data.data(), static_cast<std::streamsize>(size))) {
    return data_loss("error reading external data '{}'", location);
  }
  return data;
}

// Number of values the typed field for `dtype` holds (raw and external data are checked apart).
int64_t typed_field_size(const TensorProto& proto, DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return proto.float_data_size();
    case DType::kFloat64:
      return proto.double_data_size();
    case DType::kInt64:
      return proto.int64_data_size();
    case DType::kUInt32:
    case DType::kUInt64:
      return proto.uint64_data_size();
    default:
      return proto.int32_data_size();
  }
}

}  // namespace

StatusOr<DType> dtype_from_onnx(int32_t data_type) {
  if (data_type != 0 && is_valid_dtype(data_type)) return static_cast<DType>(data_type);
  const char* name =
      TensorProto::DataType_IsValid(data_type)
          ? TensorProto::DataType_Name(static_cast<TensorProto::DataType>(data_type)).c_str()
          : nullptr;
  if (name) return unimplemented("element type {} is not supported", name);
  return invalid_argument("element type {} does not exist", data_type);
}

StatusOr<Tensor> tensor_from_proto(const TensorProto& proto, const std::string& base_dir) {
  const std::string what = proto.name().empty() ? "tensor" : "tensor '" + proto.name() + "'";
  auto fail = [&](const Status& s) { return s.with_context(what); };
  if (proto.has_segment()) return fail(unimplemented("segmented tensors are not supported"));
  StatusOr<DType> dtype = dtype_from_onnx(proto.data_type());
  if (!dtype.ok()) return fail(dtype.status());
  const Shape shape(std::vector<int64_t>(proto.dims().begin(), proto.dims().end()));
  StatusOr<int64_t> count = checked_num_elements(shape.dims());
  if (!count.ok()) return fail(count.status());
  const uint64_t element_size = dtype_size(*dtype);
  if (static_cast<uint64_t>(*count) > max_tensor_bytes() / element_size) {
    return fail(resource_exhausted("shape {} of {} is over the tensor size limit of {} bytes",
                                   shape, *dtype, max_tensor_bytes()));
  }
  const size_t nbytes = static_cast<size_t>(*count) * element_size;

  // The data must be there, in the declared amount, before anything is allocated for it.
  const bool external = proto.data_location() == TensorProto::EXTERNAL;
  std::string external_bytes;
  if (external) {
    StatusOr<std::string> bytes = read_external(proto, base_dir, nbytes);
    if (!bytes.ok()) return fail(bytes.status());
    external_bytes = std::move(bytes).value();
  }
  const bool raw = external || proto.has_raw_data();
  const std::string& raw_bytes = external ? external_bytes : proto.raw_data();
  if (raw && raw_bytes.size() != nbytes) {
    return fail(invalid_argument("raw data is {} bytes; shape {} of {} needs {}", raw_bytes.size(),
                                 shape, *dtype, nbytes));
  }
  if (!raw && typed_field_size(proto, *dtype) != *count) {
    return fail(invalid_argument("holds {} values but its shape {} needs {}",
                                 typed_field_size(proto, *dtype), shape, *count));
  }
  StatusOr<Tensor> allocated = Tensor::allocate(*dtype, shape);
  if (!allocated.ok()) return fail(allocated.status());
  Tensor t = std::move(allocated).value();
  if (raw) {
    if (t.dtype() == DType::kBool) {
      for (size_t i = 0; i < raw_bytes.size(); ++i) t.data<bool>()[i] = raw_bytes[i] != 0;
    } else if (!raw_bytes.empty()) {
      std::memcpy(t.raw_data(), raw_bytes.data(), raw_bytes.size());
    }
    return t;
  }

  Status s;
  switch (t.dtype()) {
    case DType::kFloat32:
      s = copy_field<float>(proto.float_data(), t, [](float v) { return v; });
      break;
    case DType::kFloat64:
      s = copy_field<double>(proto.double_data(), t, [](double v) { return v; });
      break;
    case DType::kInt64:
      s = copy_field<int64_t>(proto.int64_data(), t, [](int64_t v) { return v; });
      break;
    case DType::kUInt32:
      s = copy_field<uint32_t>(proto.uint64_data(), t,
                               [](uint64_t v) { return static_cast<uint32_t>(v); });
      break;
    case DType::kUInt64:
      s = copy_field<uint64_t>(proto.uint64_data(), t, [](uint64_t v) { return v; });
      break;
    case DType::kInt32:
      s = copy_field<int32_t>(proto.int32_data(), t, [](int32_t v) { return v; });
      break;
    case DType::kInt16:
      s = copy_field<int16_t>(proto.int32_data(), t,
                              [](int32_t v) { return static_cast<int16_t>(v); });
      break;
    case DType::kInt8:
      s = copy_field<int8_t>(proto.int32_data(), t,
                             [](int32_t v) { return static_cast<int8_t>(v); });
      break;
    case DType::kUInt16:
    case DType::kFloat16:
    case DType::kBFloat16:  // 16-bit floats travel as their bit patterns
      s = copy_field<uint16_t>(proto.int32_data(), t,
                               [](int32_t v) { return static_cast<uint16_t>(v); });
      break;
    case DType::kUInt8:
      s = copy_field<uint8_t>(proto.int32_data(), t,
                              [](int32_t v) { return static_cast<uint8_t>(v); });
      break;
    case DType::kBool:
      s = copy_field<bool>(proto.int32_data(), t, [](int32_t v) { return v != 0; });
      break;
    case DType::kUndefined:
      s = invalid_argument("undefined element type");
      break;
  }
  if (!s.ok()) return fail(s);
  return t;
}

}  // namespace kestrel::onnx
