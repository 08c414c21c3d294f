// Attributes: the named, typed parameters of an operator (Conv's strides, Cast's `to`, ...).
//
// Values are checked against the operator's schema when a graph is verified (ir/op_schema.h), so
// kernels read them with plain getters that take the default the operator specifies; a getter
// called with the wrong type returns that default and is a programming error caught by the verifier
// tests.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kestrel/base/tensor.h"

namespace kestrel {

enum class AttributeType { kInt, kFloat, kString, kTensor, kInts, kFloats, kStrings };
std::string_view attribute_type_name(AttributeType type);

using AttributeValue = std::variant<int64_t, float, std::string, Tensor, std::vector<int64_t>,
                                    std::vector<float>, std::vector<std::string>>;

AttributeType attribute_type_of(const AttributeValue& value);

class Attributes {
 public:
  void set(std::string name, AttributeValue value) { values_[std::move(name)] = std::move(value); }
  void erase(std::string_view name);
  bool has(std::string_view name) const { return find(name) != nullptr; }
  // Null when absent.
  const AttributeValue* find(std::string_view name) const;

  int64_t get_int(std::string_view name, int64_t fallback) const;
  float get_float(std::string_view name, float fallback) const;
  std::string get_string(std::string_view name, std::string fallback) const;
  std::vector<int64_t> get_ints(std::string_view name, std::vector<int64_t> fallback = {}) const;
  std::vector<float> get_floats(std::string_view name, std::vector<float> fallback = {}) const;
  std::vector<std::string> get_strings(std::string_view name,
                                       std::vector<std::string> fallback = {}) const;
  // Null when absent.
  const Tensor* get_tensor(std::string_view name) const;

  const std::map<std::string, AttributeValue, std::less<>>& all() const { return values_; }
  bool empty() const { return values_.empty(); }

 private:
  std::map<std::string, AttributeValue, std::less<>> values_;
};

}  // namespace kestrel
