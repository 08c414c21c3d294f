// Shape: the concrete dimensions of a tensor, outermost first.
//
// A Shape holds known, non-negative sizes. Symbolic and unknown dimensions are an IR concept
// (ir/sym_shape.h); by the time a tensor exists, its shape is concrete.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "kestrel/base/status.h"

namespace kestrel {

class Shape {
 public:
  Shape() = default;  // A scalar: rank 0, one element.
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}
  explicit Shape(std::span<const int64_t> dims) : dims_(dims.begin(), dims.end()) {}

  size_t rank() const { return dims_.size(); }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  std::span<const int64_t> dims() const { return dims_; }
  const std::vector<int64_t>& vec() const { return dims_; }
  auto begin() const { return dims_.begin(); }
  auto end() const { return dims_.end(); }

  // Product of the dimensions. REQUIRES: the shape passed validate_shape() (no overflow).
  int64_t num_elements() const;
  // Product of dims [begin, end).
  int64_t num_elements(size_t begin, size_t end) const;

  // "[1,3,640,640]"; "[]" for a scalar.
  std::string to_string() const;

  friend bool operator==(const Shape& a, const Shape& b) { return a.dims_ == b.dims_; }

 private:
  std::vector<int64_t> dims_;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.to_string(); }

// Element count of `dims`, or INVALID_ARGUMENT when a dimension is negative or the product does not
// fit in int64. Every shape taken from untrusted input passes through here before anything is
// allocated.
StatusOr<int64_t> checked_num_elements(std::span<const int64_t> dims);

// Normalizes an axis in [-rank, rank) to [0, rank), or INVALID_ARGUMENT.
StatusOr<int64_t> normalize_axis(int64_t axis, int64_t rank);

// Numpy-style multidirectional broadcast of two shapes, or INVALID_ARGUMENT.
StatusOr<Shape> broadcast_shapes(const Shape& a, const Shape& b);

// Row-major strides (in elements) of `shape`.
std::vector<int64_t> contiguous_strides(const Shape& shape);

}  // namespace kestrel

template <>
struct fmt::formatter<kestrel::Shape> : fmt::formatter<std::string> {
  auto format(const kestrel::Shape& s, format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.to_string(), ctx);
  }
};
