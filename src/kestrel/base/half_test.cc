#include "kestrel/base/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace kestrel {
namespace {

TEST(HalfTest, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float f = half_bits_to_float(static_cast<uint16_t>(bits));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_bits_to_float(float_to_half_bits(f))));
      continue;
    }
    EXPECT_EQ(float_to_half_bits(f), bits) << "bits " << bits;
  }
}

TEST(HalfTest, RoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties go to even (1).
  EXPECT_EQ(float_to_half_bits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even).
  EXPECT_EQ(float_to_half_bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half_bits(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half_bits(65520.0f), 0x7c00);               // rounds to infinity
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: zero
  EXPECT_EQ(float_to_half_bits(-0.0f), 0x8000);
}

TEST(HalfTest, MatchesTheFloatConversionOfTheCpu) {
  // F16C hardware is not assumed; compare against a double-rounding-free reference instead:
  // for random floats, the chosen half must be the nearest representable one.
  uint32_t state = 12345;
  for (int i = 0; i < 100000; ++i) {
    state = state * 1664525u + 1013904223u;
    float f;
    uint32_t bits = (state & 0x8fffffffu) | 0x30000000u;  // magnitudes around [2^-31, 2^2]
    std::memcpy(&f, &bits, 4);
    const uint16_t h = float_to_half_bits(f);
    const double chosen = half_bits_to_float(h);
    const double up = half_bits_to_float(static_cast<uint16_t>(h + 1));
    const double down = (h & 0x7fff) ? half_bits_to_float(static_cast<uint16_t>(h - 1)) : chosen;
    EXPECT_LE(std::abs(chosen - f), std::abs(up - f));
    EXPECT_LE(std::abs(chosen - f), std::abs(down - f));
  }
}

TEST(BFloat16Test, RoundsToNearestEvenAndKeepsNan) {
  EXPECT_EQ(float_to_bfloat16_bits(1.0f), 0x3f80);
  EXPECT_EQ(bfloat16_bits_to_float(0x3f80), 1.0f);
  EXPECT_TRUE(std::isnan(
      bfloat16_bits_to_float(float_to_bfloat16_bits(std::numeric_limits<float>::quiet_NaN()))));
}

}  // namespace
}  // namespace kestrel
