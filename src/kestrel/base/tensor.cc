#include "kestrel/base/tensor.h"

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>

namespace kestrel {
namespace {

std::atomic<size_t> g_max_tensor_bytes{size_t{4} << 30};
constexpr size_t kHostAlignment = 64;

}  // namespace

size_t max_tensor_bytes() { return g_max_tensor_bytes.load(std::memory_order_relaxed); }
void set_max_tensor_bytes(size_t bytes) {
  g_max_tensor_bytes.store(bytes, std::memory_order_relaxed);
}

StatusOr<Tensor> Tensor::allocate(DType dtype, Shape shape) {
  if (dtype_size(dtype) == 0) return invalid_argument("cannot allocate a tensor of type {}", dtype);
  KS_ASSIGN_OR_RETURN(int64_t n, checked_num_elements(shape.dims()));
  const size_t element_size = dtype_size(dtype);
  if (static_cast<uint64_t>(n) > max_tensor_bytes() / element_size) {
    return resource_exhausted("tensor {}{} needs {} bytes, over the limit of {} bytes", dtype,
                              shape, static_cast<double>(n) * element_size, max_tensor_bytes());
  }
  // Round up so aligned_alloc's size requirement holds; never ask for 0 bytes.
  const size_t bytes = (static_cast<size_t>(n) * element_size + kHostAlignment - 1) /
                       kHostAlignment * kHostAlignment;
  void* p = std::aligned_alloc(kHostAlignment, bytes == 0 ? kHostAlignment : bytes);
  if (p == nullptr) {
    return resource_exhausted("out of host memory allocating {} bytes for {}{}", bytes, dtype,
                              shape);
  }
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.storage_ = std::shared_ptr<void>(p, std::free);
  t.data_ = p;
  return t;
}

StatusOr<Tensor> Tensor::zeros(DType dtype, Shape shape) {
  KS_ASSIGN_OR_RETURN(Tensor t, allocate(dtype, std::move(shape)));
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::wrap(DType dtype, Shape shape, std::shared_ptr<void> storage, void* data,
                    Device device) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.device_ = device;
  t.storage_ = std::move(storage);
  t.data_ = data;
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, size_t byte_offset) const {
  Tensor t = *this;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = static_cast<std::byte*>(data_) + byte_offset;
  assert(byte_offset + t.nbytes() <= nbytes());
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  assert(shape.num_elements() == num_elements());
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::bitcast(DType dtype) const {
  assert(dtype_size(dtype) == dtype_size(dtype_));
  Tensor t = *this;
  t.dtype_ = dtype;
  return t;
}

StatusOr<Tensor> Tensor::clone() const {
  assert(is_cpu());
  KS_ASSIGN_OR_RETURN(Tensor t, allocate(dtype_, shape_));
  if (nbytes() > 0) std::memcpy(t.raw_data(), data_, nbytes());
  return t;
}

StatusOr<std::vector<int64_t>> Tensor::to_int64_vector() const {
  assert(is_cpu());
  std::vector<int64_t> out(static_cast<size_t>(num_elements()));
  Status s = dispatch_dtype<IntTypes>(dtype_, [&]<typename T>(TypeTag<T>) -> Status {
    const T* p = data<T>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int64_t>(p[i]);
    return Status();
  });
  if (!s.ok()) return invalid_argument("expected an integer tensor, got {}", dtype_);
  return out;
}

std::vector<double> Tensor::to_double_vector() const {
  assert(is_cpu());
  std::vector<double> out(static_cast<size_t>(num_elements()));
  dispatch_dtype<AllTypes>(dtype_, [&]<typename T>(TypeTag<T>) -> Status {
    const T* p = data<T>();
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
        out[i] = static_cast<float>(p[i]);
      } else {
        out[i] = static_cast<double>(p[i]);
      }
    }
    return Status();
  }).ignore_error();
  return out;
}

std::string Tensor::debug_string(size_t max_values) const {
  if (!defined()) return "undefined";
  std::string s = fmt::format("{}{}", dtype_, shape_);
  if (!is_cpu()) return s + " (on device)";
  std::vector<double> v = to_double_vector();
  s += " {";
  for (size_t i = 0; i < v.size() && i < max_values; ++i)
    s += fmt::format("{}{:g}", i ? ", " : "", v[i]);
  if (v.size() > max_values) s += ", ...";
  return s + "}";
}

}  // namespace kestrel
