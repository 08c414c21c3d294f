// Half (IEEE 754 binary16) and BFloat16 storage types with exact, round-to-nearest-even
// conversions.
//
// These are storage types: arithmetic happens in float. They convert to float implicitly and from
// float explicitly, so templated kernels read `float x = in[i];` and write `out[i] = T(x);`.
// Header-only and constexpr, so the same conversions serve host code and CUDA device code.
#pragma once

#include <bit>
#include <cstdint>

namespace kestrel {

constexpr uint16_t float_to_half_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN; NaN keeps a quiet bit so it stays NaN.
    return sign | 0x7c00u | (abs > 0x7f800000u ? (0x200u | ((abs >> 13) & 0x3ffu)) : 0u);
  }
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to Inf.
  if (abs < 0x38800000u) {                        // Below 2^-14: a half subnormal or zero.
    if (abs < 0x33000000u) return sign;           // Below 2^-25 (a tie at 2^-25 rounds to 0).
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exponent;  // value = mantissa * 2^(exponent-150); unit 2^-24.
    uint32_t r = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = (abs - 0x38000000u) >> 13;  // Rebias the exponent from 127 to 15.
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) ++r;  // May carry into the exponent: fine.
  return static_cast<uint16_t>(sign | r);
}

constexpr float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits = 0;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // Subnormal: normalize it.
      uint32_t e = 0;
      while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        ++e;
      }
      bits = sign | ((113u - e) << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

constexpr uint16_t float_to_bfloat16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

constexpr float bfloat16_bits_to_float(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

struct Half {
  uint16_t bits = 0;

  constexpr Half() = default;
  constexpr explicit Half(float f) : bits(float_to_half_bits(f)) {}
  static constexpr Half from_bits(uint16_t b) {
    Half h;
    h.bits = b;
    return h;
  }
  constexpr operator float() const { return half_bits_to_float(bits); }  // NOLINT: implicit
};

struct BFloat16 {
  uint16_t bits = 0;

  constexpr BFloat16() = default;
  constexpr explicit BFloat16(float f) : bits(float_to_bfloat16_bits(f)) {}
  static constexpr BFloat16 from_bits(uint16_t b) {
    BFloat16 h;
    h.bits = b;
    return h;
  }
  constexpr operator float() const { return bfloat16_bits_to_float(bits); }  // NOLINT: implicit
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2);

}  // namespace kestrel
