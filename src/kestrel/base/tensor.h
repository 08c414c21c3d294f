// Tensor: a typed, shaped, dense row-major array in host or device memory.
//
// A Tensor is a handle: copying one shares its storage (like a shared_ptr), clone() copies the
// data. Storage is reference-counted and freed with the last handle, whoever allocated it (host
// malloc, a CUDA allocator, or an arena that a backend owns). Host tensors allocated here are
// 64-byte aligned.
//
// Thread safety: handles may be copied across threads; concurrent writes to the same data are the
// caller's business, as with any buffer.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kestrel/base/dtype.h"
#include "kestrel/base/shape.h"
#include "kestrel/base/status.h"

namespace kestrel {

enum class DeviceType { kCpu, kCuda };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int index) { return {DeviceType::kCuda, index}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  friend bool operator==(const Device&, const Device&) = default;
};

// The largest single host tensor Kestrel allocates (default 4 GiB). Declared sizes above it are
// refused with RESOURCE_EXHAUSTED before any memory is touched, so a hostile model cannot make the
// process allocate its way into the OOM killer.
size_t max_tensor_bytes();
void set_max_tensor_bytes(size_t bytes);

class Tensor {
 public:
  // An undefined tensor (no dtype, no storage).
  Tensor() = default;

  // Allocates uninitialized host memory; fails on a bad shape or a size over max_tensor_bytes().
  static StatusOr<Tensor> allocate(DType dtype, Shape shape);
  // Same, with every byte zero.
  static StatusOr<Tensor> zeros(DType dtype, Shape shape);
  // A view of memory owned by `storage` (which keeps it alive). REQUIRES: a valid shape.
  static Tensor wrap(DType dtype, Shape shape, std::shared_ptr<void> storage, void* data,
                     Device device = Device::cpu());

  // Small host tensors for tests and constants. REQUIRES: values.size() == shape.num_elements().
  template <typename T>
  static Tensor from_vector(Shape shape, const std::vector<T>& values);
  template <typename T>
  static Tensor scalar(T value) {
    return from_vector<T>(Shape{}, {value});
  }

  bool defined() const { return dtype_ != DType::kUndefined; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  size_t rank() const { return shape_.rank(); }
  int64_t num_elements() const { return shape_.num_elements(); }
  size_t nbytes() const { return static_cast<size_t>(num_elements()) * dtype_size(dtype_); }
  Device device() const { return device_; }
  bool is_cpu() const { return device_.is_cpu(); }

  void* raw_data() { return data_; }
  const void* raw_data() const { return data_; }

  // Typed access. REQUIRES: dtype() == dtype_of<T>().
  template <typename T>
  T* data() {
    assert(dtype_ == dtype_of<T>());
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data() const {
    assert(dtype_ == dtype_of<T>());
    return static_cast<const T*>(data_);
  }
  // REQUIRES: is_cpu() and dtype() == dtype_of<T>().
  template <typename T>
  std::span<T> values() {
    return {data<T>(), static_cast<size_t>(num_elements())};
  }
  template <typename T>
  std::span<const T> values() const {
    return {data<T>(), static_cast<size_t>(num_elements())};
  }
  std::span<std::byte> bytes() { return {static_cast<std::byte*>(data_), nbytes()}; }
  std::span<const std::byte> bytes() const {
    return {static_cast<const std::byte*>(data_), nbytes()};
  }

  // A tensor of `dtype` and `shape` inside this one's storage, `byte_offset` bytes in (sharing
  // ownership). REQUIRES: it fits.
  Tensor view(DType dtype, Shape shape, size_t byte_offset) const;
  // The same storage seen with another shape. REQUIRES: same element count.
  Tensor reshaped(Shape shape) const;
  // The same bytes seen as another element type of the same size. REQUIRES: equal dtype sizes.
  Tensor bitcast(DType dtype) const;
  // A deep host copy. REQUIRES: is_cpu().
  StatusOr<Tensor> clone() const;
  // Integer tensor elements widened to int64 (for shape-like inputs). REQUIRES: is_cpu().
  StatusOr<std::vector<int64_t>> to_int64_vector() const;
  // Elements of a floating or integer host tensor as double (for tests and printing).
  std::vector<double> to_double_vector() const;

  // "float32[1,3] {0.5, 1, 2}" with at most `max_values` values.
  std::string debug_string(size_t max_values = 8) const;

 private:
  DType dtype_ = DType::kUndefined;
  Shape shape_;
  Device device_;
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
};

template <typename T>
Tensor Tensor::from_vector(Shape shape, const std::vector<T>& values) {
  assert(static_cast<int64_t>(values.size()) == shape.num_elements());
  StatusOr<Tensor> t = allocate(dtype_of<T>(), std::move(shape));
  assert(t.ok());
  if constexpr (std::is_same_v<T, bool>) {
    for (size_t i = 0; i < values.size(); ++i) t->data<bool>()[i] = values[i];
  } else {
    if (!values.empty()) std::memcpy(t->raw_data(), values.data(), values.size() * sizeof(T));
  }
  return std::move(t).value();
}

}  // namespace kestrel
