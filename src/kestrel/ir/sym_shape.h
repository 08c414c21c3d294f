// Symbolic shapes: how the IR describes tensor shapes that are only partly known before run time.
//
// A dimension is a constant (640), an affine function of one named symbol (`batch`, `2*batch`,
// `batch+1`), or unknown (`?`, e.g. the row count of NonMaxSuppression's output). A shape may also
// have unknown rank. Concrete shapes for one run come from binding the symbols
// (ir/shape_inference.h); symbolic shapes are for display and for passes that must know which
// dimension is the batch.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kestrel/base/dtype.h"
#include "kestrel/base/shape.h"

namespace kestrel::ir {

class SymDim {
 public:
  SymDim() = default;                                    // unknown
  SymDim(int64_t value) : known_(true), coef_(value) {}  // NOLINT: a known size converts implicitly
  static SymDim symbol(std::string name, int64_t coef = 1, int64_t offset = 0);
  static SymDim unknown() { return SymDim(); }

  bool is_known() const { return known_ && symbol_.empty(); }
  bool is_symbolic() const { return known_ && !symbol_.empty(); }
  bool is_unknown() const { return !known_; }
  // REQUIRES: is_known().
  int64_t value() const { return coef_; }
  const std::string& symbol_name() const { return symbol_; }
  int64_t coef() const { return coef_; }
  int64_t offset() const { return offset_; }

  // The concrete size under `bindings`; nullopt when unknown or the symbol is unbound.
  std::optional<int64_t> evaluate(const std::map<std::string, int64_t>& bindings) const;
  // "640", "batch", "3*batch", "batch+1", "?".
  std::string to_string() const;

  friend bool operator==(const SymDim& a, const SymDim& b) {
    return a.known_ == b.known_ && a.symbol_ == b.symbol_ && a.coef_ == b.coef_ &&
           a.offset_ == b.offset_;
  }

 private:
  bool known_ = false;
  std::string symbol_;  // empty for a constant
  int64_t coef_ = 0;    // the constant itself, or the symbol's coefficient
  int64_t offset_ = 0;
};

class SymShape {
 public:
  SymShape() = default;  // unknown rank
  explicit SymShape(std::vector<SymDim> dims) : dims_(std::move(dims)) {}
  static SymShape from(const Shape& shape);

  bool has_rank() const { return dims_.has_value(); }
  // REQUIRES: has_rank().
  size_t rank() const { return dims_->size(); }
  const std::vector<SymDim>& dims() const { return *dims_; }
  std::vector<SymDim>& mutable_dims() { return *dims_; }
  const SymDim& operator[](size_t i) const { return (*dims_)[i]; }
  bool is_concrete() const;
  // REQUIRES: is_concrete().
  Shape concrete() const;
  // Concrete shape under `bindings`, or nullopt when something stays unknown.
  std::optional<Shape> evaluate(const std::map<std::string, int64_t>& bindings) const;
  // "[batch,3,640,640]"; "[*]" for unknown rank.
  std::string to_string() const;

  friend bool operator==(const SymShape& a, const SymShape& b) { return a.dims_ == b.dims_; }

 private:
  std::optional<std::vector<SymDim>> dims_;
};

struct TensorType {
  DType dtype = DType::kUndefined;
  SymShape shape;

  std::string to_string() const;  // "float32[batch,3,640,640]"
};

}  // namespace kestrel::ir
