#include "kestrel/base/shape.h"

#include <fmt/ranges.h>

namespace kestrel {

int64_t Shape::num_elements() const { return num_elements(0, dims_.size()); }

int64_t Shape::num_elements(size_t begin, size_t end) const {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= dims_[i];
  return n;
}

std::string Shape::to_string() const { return fmt::format("[{}]", fmt::join(dims_, ",")); }

StatusOr<int64_t> checked_num_elements(std::span<const int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0)
      return invalid_argument("negative dimension {} in shape [{}]", d, fmt::join(dims, ","));
    if (d != 0 && n > INT64_MAX / d) {
      return invalid_argument("shape [{}] has more elements than fit in 64 bits",
                              fmt::join(dims, ","));
    }
    n *= d;
  }
  return n;
}

StatusOr<int64_t> normalize_axis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) {
    return invalid_argument("axis {} is out of range for rank {}", axis, rank);
  }
  return axis < 0 ? axis + rank : axis;
}

StatusOr<Shape> broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.rank(), b.rank());
  std::vector<int64_t> dims(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.rank() ? 1 : a[i - (rank - a.rank())];
    const int64_t db = i < rank - b.rank() ? 1 : b[i - (rank - b.rank())];
    if (da != db && da != 1 && db != 1) {
      return invalid_argument("shapes {} and {} do not broadcast", a, b);
    }
    dims[i] = da == 1 ? db : da;
  }
  return Shape(std::move(dims));
}

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.rank());
  int64_t s = 1;
  for (size_t i = shape.rank(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

}  // namespace kestrel
