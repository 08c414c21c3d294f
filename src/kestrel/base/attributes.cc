#include "kestrel/base/attributes.h"

namespace kestrel {

std::string_view attribute_type_name(AttributeType type) {
  switch (type) {
    case AttributeType::kInt:
      return "int";
    case AttributeType::kFloat:
      return "float";
    case AttributeType::kString:
      return "string";
    case AttributeType::kTensor:
      return "tensor";
    case AttributeType::kInts:
      return "ints";
    case AttributeType::kFloats:
      return "floats";
    case AttributeType::kStrings:
      return "strings";
  }
  return "unknown";
}

AttributeType attribute_type_of(const AttributeValue& value) {
  return static_cast<AttributeType>(value.index());
}

void Attributes::erase(std::string_view name) {
  auto it = values_.find(name);
  if (it != values_.end()) values_.erase(it);
}

const AttributeValue* Attributes::find(std::string_view name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

namespace {
template <typename T>
T get_or(const Attributes& attrs, std::string_view name, T fallback) {
  const AttributeValue* v = attrs.find(name);
  if (v == nullptr) return fallback;
  const T* p = std::get_if<T>(v);
  return p ? *p : fallback;
}
}  // namespace

int64_t Attributes::get_int(std::string_view name, int64_t fallback) const {
  return get_or<int64_t>(*this, name, fallback);
}
float Attributes::get_float(std::string_view name, float fallback) const {
  return get_or<float>(*this, name, fallback);
}
std::string Attributes::get_string(std::string_view name, std::string fallback) const {
  return get_or<std::string>(*this, name, std::move(fallback));
}
std::vector<int64_t> Attributes::get_ints(std::string_view name,
                                          std::vector<int64_t> fallback) const {
  return get_or<std::vector<int64_t>>(*this, name, std::move(fallback));
}
std::vector<float> Attributes::get_floats(std::string_view name,
                                          std::vector<float> fallback) const {
  return get_or<std::vector<float>>(*this, name, std::move(fallback));
}
std::vector<std::string> Attributes::get_strings(std::string_view name,
                                                 std::vector<std::string> fallback) const {
  return get_or<std::vector<std::string>>(*this, name, std::move(fallback));
}
const Tensor* Attributes::get_tensor(std::string_view name) const {
  const AttributeValue* v = find(name);
  return v ? std::get_if<Tensor>(v) : nullptr;
}

}  // namespace kestrel
