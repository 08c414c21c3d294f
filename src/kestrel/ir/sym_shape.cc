#include "kestrel/ir/sym_shape.h"

#include <fmt/format.h>

namespace kestrel::ir {

SymDim SymDim::symbol(std::string name, int64_t coef, int64_t offset) {
  SymDim d;
  if (coef == 0) return SymDim(offset);
  d.known_ = true;
  d.symbol_ = std::move(name);
  d.coef_ = coef;
  d.offset_ = offset;
  return d;
}

std::optional<int64_t> SymDim::evaluate(const std::map<std::string, int64_t>& bindings) const {
  if (!known_) return std::nullopt;
  if (symbol_.empty()) return coef_;
  auto it = bindings.find(symbol_);
  if (it == bindings.end()) return std::nullopt;
  return coef_ * it->second + offset_;
}

std::string SymDim::to_string() const {
  if (!known_) return "?";
  if (symbol_.empty()) return std::to_string(coef_);
  std::string s = coef_ == 1 ? symbol_ : fmt::format("{}*{}", coef_, symbol_);
  if (offset_ > 0) s += fmt::format("+{}", offset_);
  if (offset_ < 0) s += fmt::format("{}", offset_);
  return s;
}

SymShape SymShape::from(const Shape& shape) {
  std::vector<SymDim> dims(shape.begin(), shape.end());
  return SymShape(std::move(dims));
}

bool SymShape::is_concrete() const {
  if (!dims_) return false;
  for (const SymDim& d : *dims_) {
    if (!d.is_known()) return false;
  }
  return true;
}

Shape SymShape::concrete() const {
  std::vector<int64_t> dims;
  for (const SymDim& d : *dims_) dims.push_back(d.value());
  return Shape(std::move(dims));
}

std::optional<Shape> SymShape::evaluate(const std::map<std::string, int64_t>& bindings) const {
  if (!dims_) return std::nullopt;
  std::vector<int64_t> dims;
  for (const SymDim& d : *dims_) {
    std::optional<int64_t> v = d.evaluate(bindings);
    if (!v || *v < 0) return std::nullopt;
    dims.push_back(*v);
  }
  return Shape(std::move(dims));
}

std::string SymShape::to_string() const {
  if (!dims_) return "[*]";
  std::string s = "[";
  for (size_t i = 0; i < dims_->size(); ++i) s += (i ? "," : "") + (*dims_)[i].to_string();
  return s + "]";
}

std::string TensorType::to_string() const {
  return fmt::format("{}{}", dtype_name(dtype), shape.to_string());
}

}  // namespace kestrel::ir
