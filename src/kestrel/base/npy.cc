#include "kestrel/base/npy.h"

#include <charconv>
#include <cstring>
#include <vector>

#include "kestrel/base/file.h"

namespace kestrel {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

struct NpyType {
  std::string_view descr;
  DType dtype;
};
constexpr NpyType kNpyTypes[] = {
    {"<f4", DType::kFloat32}, {"<f8", DType::kFloat64}, {"<f2", DType::kFloat16},
    {"|i1", DType::kInt8},    {"<i1", DType::kInt8},    {"|u1", DType::kUInt8},
    {"<u1", DType::kUInt8},   {"<i2", DType::kInt16},   {"<u2", DType::kUInt16},
    {"<i4", DType::kInt32},   {"<u4", DType::kUInt32},  {"<i8", DType::kInt64},
    {"<u8", DType::kUInt64},  {"|b1", DType::kBool},
};

// Returns the text after `'key':` in the header dictionary, with leading spaces removed.
StatusOr<std::string_view> header_value(std::string_view header, std::string_view key) {
  const std::string quoted = "'" + std::string(key) + "'";
  size_t pos = header.find(quoted);
  if (pos == std::string_view::npos) return invalid_argument("npy header has no '{}'", key);
  pos = header.find(':', pos + quoted.size());
  if (pos == std::string_view::npos) return invalid_argument("npy header: no value for '{}'", key);
  std::string_view rest = header.substr(pos + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return rest;
}

StatusOr<Shape> parse_shape(std::string_view v) {
  if (v.empty() || v.front() != '(') return invalid_argument("npy header: shape is not a tuple");
  const size_t close = v.find(')');
  if (close == std::string_view::npos) return invalid_argument("npy header: unterminated shape");
  std::string_view body = v.substr(1, close - 1);
  std::vector<int64_t> dims;
  while (!body.empty()) {
    while (!body.empty() && (body.front() == ' ' || body.front() == ',')) body.remove_prefix(1);
    if (body.empty()) break;
    int64_t d = 0;
    auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), d);
    if (ec != std::errc() || d < 0) return invalid_argument("npy header: bad dimension in shape");
    dims.push_back(d);
    if (dims.size() > 32) return invalid_argument("npy header: more than 32 dimensions");
    body.remove_prefix(static_cast<size_t>(end - body.data()));
  }
  return Shape(std::move(dims));
}

}  // namespace

StatusOr<Tensor> parse_npy(std::string_view bytes) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != kMagic) {
    return invalid_argument("not a .npy file (bad magic bytes)");
  }
  const auto major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return invalid_argument("truncated .npy header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= size_t{static_cast<uint8_t>(bytes[8 + i])} << (8 * i);
    header_start = 12;
  } else {
    return invalid_argument(".npy format version {} is not supported", major);
  }
  if (header_len > bytes.size() - header_start) return invalid_argument("truncated .npy header");
  const std::string_view header = bytes.substr(header_start, header_len);

  KS_ASSIGN_OR_RETURN(std::string_view descr_v, header_value(header, "descr"));
  if (descr_v.size() < 5 || descr_v[0] != '\'') return invalid_argument("npy header: bad descr");
  const std::string_view descr = descr_v.substr(1, 3);
  DType dtype = DType::kUndefined;
  for (const NpyType& t : kNpyTypes) {
    if (t.descr == descr) dtype = t.dtype;
  }
  if (dtype == DType::kUndefined) {
    return invalid_argument(".npy element type '{}' is not supported (little-endian numbers only)",
                            descr);
  }
  KS_ASSIGN_OR_RETURN(std::string_view fortran, header_value(header, "fortran_order"));
  if (fortran.substr(0, 4) == "True")
    return invalid_argument("Fortran-order .npy is not supported");
  if (fortran.substr(0, 5) != "False") return invalid_argument("npy header: bad fortran_order");
  KS_ASSIGN_OR_RETURN(std::string_view shape_v, header_value(header, "shape"));
  KS_ASSIGN_OR_RETURN(Shape shape, parse_shape(shape_v));
  KS_ASSIGN_OR_RETURN(int64_t n, checked_num_elements(shape.dims()));

  const std::string_view payload = bytes.substr(header_start + header_len);
  if (static_cast<uint64_t>(n) > payload.size() / dtype_size(dtype) ||
      static_cast<uint64_t>(n) * dtype_size(dtype) != payload.size()) {
    return invalid_argument(".npy data is {} bytes, shape {} of {} needs {}", payload.size(), shape,
                            dtype, static_cast<double>(n) * dtype_size(dtype));
  }
  KS_ASSIGN_OR_RETURN(Tensor t, Tensor::allocate(dtype, shape));
  if (dtype == DType::kBool) {  // Any non-zero byte is true; never load a bool that is not 0/1.
    bool* out = t.data<bool>();
    for (size_t i = 0; i < payload.size(); ++i) out[i] = payload[i] != 0;
  } else if (!payload.empty()) {
    std::memcpy(t.raw_data(), payload.data(), payload.size());
  }
  return t;
}

StatusOr<Tensor> read_npy(const std::string& path) {
  KS_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  StatusOr<Tensor> t = parse_npy(bytes);
  if (!t.ok()) return t.status().with_context(path);
  return t;
}

StatusOr<std::string> encode_npy(const Tensor& t) {
  std::string_view descr;
  for (const NpyType& n : kNpyTypes) {
    if (n.dtype == t.dtype() && descr.empty()) descr = n.descr;
  }
  if (descr.empty()) return invalid_argument("{} has no .npy representation", t.dtype());
  std::string shape = "(";
  for (size_t i = 0; i < t.rank(); ++i) shape += std::to_string(t.shape()[i]) + ", ";
  if (t.rank() > 1) shape.resize(shape.size() - 2);
  if (t.rank() == 1) shape.resize(shape.size() - 1);
  shape += ")";
  std::string header =
      "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts on a 64-byte boundary, ending the header with '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out(kMagic);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  return out;
}

Status write_npy(const std::string& path, const Tensor& t) {
  KS_ASSIGN_OR_RETURN(std::string bytes, encode_npy(t));
  return write_file(path, bytes);
}

}  // namespace kestrel
