// DType: the element types Kestrel tensors can hold, and compile-time dispatch over them.
//
// The numeric values are ONNX's TensorProto.DataType numbers, so that conversion from ONNX is a
// check rather than a table and engine files stay readable; never renumber them.
//
// Kernels are written once as templates and dispatched over the types they accept:
//
//   return dispatch_dtype<FloatTypes>(x.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
//     ... T is float, double, Half or BFloat16 here ...
//   });
//
// An unlisted dtype yields an UNIMPLEMENTED status naming it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "kestrel/base/half.h"
#include "kestrel/base/status.h"

namespace kestrel {

enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
};

// "float32", "int64", ... ; "undefined" for anything else.
std::string_view dtype_name(DType dtype);
// Parses dtype_name()'s spelling; kUndefined when unknown.
DType dtype_from_name(std::string_view name);
// Bytes per element; 0 for kUndefined or an unknown value.
size_t dtype_size(DType dtype);
// True for a value that is one of the enumerators above (used to validate untrusted input).
bool is_valid_dtype(int32_t value);
bool is_floating(DType dtype);
bool is_integer(DType dtype);  // signed or unsigned, not bool
bool is_signed(DType dtype);

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::kFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::kFloat64;
  else if constexpr (std::is_same_v<T, Half>)
    return DType::kFloat16;
  else if constexpr (std::is_same_v<T, BFloat16>)
    return DType::kBFloat16;
  else if constexpr (std::is_same_v<T, int8_t>)
    return DType::kInt8;
  else if constexpr (std::is_same_v<T, int16_t>)
    return DType::kInt16;
  else if constexpr (std::is_same_v<T, int32_t>)
    return DType::kInt32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return DType::kInt64;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return DType::kUInt8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return DType::kUInt16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return DType::kUInt32;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return DType::kUInt64;
  else if constexpr (std::is_same_v<T, bool>)
    return DType::kBool;
  else
    static_assert(sizeof(T) == 0, "no DType for this C++ type");
}

template <typename... Ts>
struct TypeList {};

using FloatTypes = TypeList<float, double, Half, BFloat16>;
using SignedIntTypes = TypeList<int8_t, int16_t, int32_t, int64_t>;
using IntTypes = TypeList<int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t>;
using NumericTypes = TypeList<float, double, Half, BFloat16, int8_t, int16_t, int32_t, int64_t,
                              uint8_t, uint16_t, uint32_t, uint64_t>;
using AllTypes = TypeList<float, double, Half, BFloat16, int8_t, int16_t, int32_t, int64_t, uint8_t,
                          uint16_t, uint32_t, uint64_t, bool>;
// Signed numbers: what Neg, Abs and friends accept.
using SignedNumericTypes =
    TypeList<float, double, Half, BFloat16, int8_t, int16_t, int32_t, int64_t>;

template <typename... Ts, typename F>
Status dispatch_dtype_impl(TypeList<Ts...>, DType dtype, F&& f) {
  Status result = unimplemented("element type {} is not supported here", dtype_name(dtype));
  (void)((dtype == dtype_of<Ts>() ? (result = f(TypeTag<Ts>{}), true) : false) || ...);
  return result;
}

// Calls f(TypeTag<T>{}) for the T in `List` whose dtype is `dtype`; f returns Status.
template <typename List, typename F>
Status dispatch_dtype(DType dtype, F&& f) {
  return dispatch_dtype_impl(List{}, dtype, std::forward<F>(f));
}

template <typename... Ts>
constexpr bool dtype_in_impl(TypeList<Ts...>, DType dtype) {
  return ((dtype == dtype_of<Ts>()) || ...);
}
// True when `dtype` is one of `List`'s types.
template <typename List>
constexpr bool dtype_in(DType dtype) {
  return dtype_in_impl(List{}, dtype);
}

}  // namespace kestrel

template <>
struct fmt::formatter<kestrel::DType> : fmt::formatter<std::string_view> {
  auto format(kestrel::DType d, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(kestrel::dtype_name(d), ctx);
  }
};
