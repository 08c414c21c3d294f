#include "kestrel/base/base64.h"

#include <gtest/gtest.h>

#include <random>

namespace kestrel {
namespace {

TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> cases[] = {{"", ""},
                                                                 {"f", "Zg=="},
                                                                 {"fo", "Zm8="},
                                                                 {"foo", "Zm9v"},
                                                                 {"foob", "Zm9vYg=="},
                                                                 {"fooba", "Zm9vYmE="},
                                                                 {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : cases) {
    EXPECT_EQ(base64_encode(plain), encoded);
    StatusOr<std::string> decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, plain);
  }
}

TEST(Base64Test, RandomBytesRoundTrip) {
  std::mt19937 rng(7);
  for (size_t n = 0; n < 200; ++n) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    StatusOr<std::string> back = base64_decode(base64_encode(bytes));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, bytes);
  }
}

TEST(Base64Test, MalformedTextIsRefused) {
  for (std::string_view bad : {"Zg=", "Zm9v!A==", "Zg==Zg==", "=Zg=", "Z===", "Zm 9"}) {
    StatusOr<std::string> decoded = base64_decode(bad);
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace kestrel
