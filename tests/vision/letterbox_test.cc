// Letterbox: placement arithmetic, OpenCV-exact bilinear resize, and the model-input layout. The
// reference letterboxes of bus.jpg and zidane.jpg (PyTorch/OpenCV, ../shared/reference) must be
// reproduced, and every reference image's ratio and padding.
#include "kestrel/vision/letterbox.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <iostream>

#include "kestrel/base/npy.h"
#include "kestrel/vision/image.h"
#include "vision_test_util.h"

namespace kestrel::vision {
namespace {

using testing::pattern_image;

TEST(LetterboxParamsTest, YoloV5Placement) {
  // bus.jpg: 810x1080 -> 480x640, 80 px left and right.
  LetterboxParams p = compute_letterbox(810, 1080).value();
  EXPECT_DOUBLE_EQ(p.ratio, 640.0 / 1080.0);
  EXPECT_EQ(p.resized_width, 480);
  EXPECT_EQ(p.resized_height, 640);
  EXPECT_EQ(p.pad_left, 80);
  EXPECT_EQ(p.pad_right, 80);
  EXPECT_EQ(p.pad_top, 0);
  // horses.jpg: 773x512 -> 640x424 (423.9 rounds up), 108 top and bottom.
  p = compute_letterbox(773, 512).value();
  EXPECT_EQ(p.resized_height, 424);
  EXPECT_EQ(p.pad_top, 108);
  EXPECT_EQ(p.pad_bottom, 108);
  // An odd padding puts the extra pixel right / bottom: 640x427 -> 213 total, 106 + 107.
  p = compute_letterbox(640, 427).value();
  EXPECT_EQ(p.ratio, 1.0);
  EXPECT_EQ(p.pad_top, 106);
  EXPECT_EQ(p.pad_bottom, 107);
  // Small images are scaled up.
  p = compute_letterbox(320, 240).value();
  EXPECT_EQ(p.ratio, 2.0);
  EXPECT_EQ(p.resized_height, 480);
  // Degenerate sizes keep at least one pixel.
  p = compute_letterbox(20000, 1).value();
  EXPECT_EQ(p.resized_width, 640);
  EXPECT_EQ(p.resized_height, 1);
  EXPECT_EQ(p.pad_top + p.pad_bottom, 639);
  // Rectangular targets.
  p = compute_letterbox(1280, 720, 640, 384).value();
  EXPECT_EQ(p.resized_width, 640);
  EXPECT_EQ(p.resized_height, 360);
  EXPECT_EQ(p.pad_top, 12);
  EXPECT_EQ(compute_letterbox(0, 10).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(compute_letterbox(10, 10, 640, -1).status().code(), StatusCode::kInvalidArgument);
}

TEST(LetterboxParamsTest, MatchesEveryReferenceImage) {
  REQUIRE_SHARED();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(
      parser.load((testing::shared_dir() / "reference/yolov5n_reference.json").string()).get(doc),
      simdjson::SUCCESS);
  int checked = 0;
  for (auto [name, entry] : doc["images"].get_object()) {
    const std::string set{std::string_view(entry["set"])};
    const std::string path = (testing::shared_dir() / set / std::string(name)).string();
    StatusOr<Tensor> image = read_image(path);
    ASSERT_TRUE(image.ok()) << image.status();
    const int64_t w = image->shape()[1], h = image->shape()[0];
    EXPECT_EQ(w, int64_t(entry["width"])) << name;
    EXPECT_EQ(h, int64_t(entry["height"])) << name;
    const LetterboxParams p = compute_letterbox(w, h).value();
    EXPECT_DOUBLE_EQ(p.ratio, double(entry["ratio"])) << name;
    simdjson::dom::array pad = entry["pad"];
    EXPECT_EQ(p.pad_left, int64_t(pad.at(0))) << name;
    EXPECT_EQ(p.pad_top, int64_t(pad.at(1))) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 135);
}

// How far a letterbox is from the reference: max |difference| and differing values.
void compare_with_reference(const std::string& image_name, const std::string& npy_name) {
  const Tensor image = read_image((testing::shared_dir() / "images" / image_name).string()).value();
  LetterboxParams p;
  StatusOr<Tensor> got = letterbox(image, 640, 640, &p);
  ASSERT_TRUE(got.ok()) << got.status();
  const Tensor want = read_npy((testing::shared_dir() / "reference" / npy_name).string()).value();
  ASSERT_EQ(got->shape(), want.shape());
  ASSERT_EQ(want.dtype(), DType::kUInt8);
  int max_diff = 0;
  int64_t differing = 0;
  for (int64_t i = 0; i < want.num_elements(); ++i) {
    const int d = std::abs(got->data<uint8_t>()[i] - want.data<uint8_t>()[i]);
    max_diff = std::max(max_diff, d);
    differing += d != 0;
  }
  std::cout << image_name << ": letterbox vs reference: max |diff| " << max_diff << ", "
            << differing << " of " << want.num_elements() << " values differ\n";
  ::testing::Test::RecordProperty(image_name + "_max_abs_diff", max_diff);
  ::testing::Test::RecordProperty(image_name + "_differing_values", std::to_string(differing));
  EXPECT_LE(max_diff, 1);
  EXPECT_EQ(differing, 0) << "the resize is meant to be bit-exact with OpenCV";
}

TEST(LetterboxReferenceTest, Bus) {
  REQUIRE_SHARED();
  compare_with_reference("bus.jpg", "bus_input_rgb_u8.npy");  // downscale by 0.59
}

TEST(LetterboxReferenceTest, Zidane) {
  REQUIRE_SHARED();
  compare_with_reference("zidane.jpg",
                         "zidane_input_rgb_u8.npy");  // exactly half: OpenCV's area path
}

TEST(ResizeTest, SameSizeIsACopyAndConstantsStayConstant) {
  const Tensor img = pattern_image(31, 47, 3);
  const Tensor same = resize_linear_u8(img, 47, 31).value();
  EXPECT_EQ(std::memcmp(same.raw_data(), img.raw_data(), img.nbytes()), 0);
  Tensor flat = Tensor::allocate(DType::kUInt8, Shape{13, 17, 3}).value();
  for (uint8_t v : {0, 1, 114, 254, 255}) {
    std::memset(flat.raw_data(), v, flat.nbytes());
    for (auto [w, h] : {std::pair{5, 7}, {40, 3}, {100, 100}, {17, 26}, {8, 6}}) {
      const Tensor out = resize_linear_u8(flat, w, h).value();
      for (int64_t i = 0; i < out.num_elements(); ++i) {
        ASSERT_EQ(out.data<uint8_t>()[i], v) << w << "x" << h;
      }
    }
  }
}

TEST(ResizeTest, ExactHalfIsTheRoundedTwoByTwoMean) {
  const Tensor img = pattern_image(6, 8, 3);
  const Tensor out = resize_linear_u8(img, 4, 3).value();
  const uint8_t* s = img.data<uint8_t>();
  for (int64_t y = 0; y < 3; ++y) {
    for (int64_t x = 0; x < 4; ++x) {
      for (int64_t c = 0; c < 3; ++c) {
        auto at = [&](int64_t yy, int64_t xx) { return int{s[(yy * 8 + xx) * 3 + c]}; };
        const int sum = at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) +
                        at(2 * y + 1, 2 * x + 1);
        EXPECT_EQ(out.data<uint8_t>()[(y * 4 + x) * 3 + c], (sum + 2) >> 2);
      }
    }
  }
}

TEST(ResizeTest, LinearInterpolationCloseToTheExactValue) {
  // OpenCV's fixed point (rounded 11-bit weights, two truncating shifts, a final rounding) stays
  // within about one grey level of real bilinear interpolation with half-pixel centres.
  const Tensor img = pattern_image(23, 29, 1);
  for (auto [w, h] : {std::pair{17, 13}, {64, 50}, {11, 40}}) {
    const Tensor out = resize_linear_u8(img, w, h).value();
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        auto src = [](int64_t d, int64_t in, int64_t out_size) {
          return std::clamp((d + 0.5) * in / out_size - 0.5, 0.0, double(in - 1));
        };
        const double fx = src(x, 29, w), fy = src(y, 23, h);
        const int64_t x0 = int64_t(fx), y0 = int64_t(fy);
        const int64_t x1 = std::min<int64_t>(x0 + 1, 28), y1 = std::min<int64_t>(y0 + 1, 22);
        auto at = [&](int64_t yy, int64_t xx) { return double(img.data<uint8_t>()[yy * 29 + xx]); };
        const double ax = fx - x0, ay = fy - y0;
        const double want = (1 - ay) * ((1 - ax) * at(y0, x0) + ax * at(y0, x1)) +
                            ay * ((1 - ax) * at(y1, x0) + ax * at(y1, x1));
        EXPECT_NEAR(out.data<uint8_t>()[y * w + x], want, 1.2) << x << "," << y;
      }
    }
  }
}

TEST(LetterboxTest, PadsWithGreyAroundTheResizedImage) {
  const Tensor img = pattern_image(40, 100, 3);
  LetterboxParams p;
  const Tensor out = letterbox(img, 64, 64, &p).value();
  ASSERT_EQ(out.shape(), (Shape{64, 64, 3}));
  EXPECT_EQ(p.resized_width, 64);
  EXPECT_EQ(p.resized_height, 26);  // 40 * 0.64 = 25.6
  EXPECT_EQ(p.pad_top, 19);
  EXPECT_EQ(p.pad_bottom, 19);
  const Tensor resized = resize_linear_u8(img, 64, 26).value();
  for (int64_t y = 0; y < 64; ++y) {
    for (int64_t i = 0; i < 64 * 3; ++i) {
      const uint8_t v = out.data<uint8_t>()[y * 64 * 3 + i];
      if (y < 19 || y >= 45) {
        ASSERT_EQ(v, 114) << y;
      } else {
        ASSERT_EQ(v, resized.data<uint8_t>()[(y - 19) * 64 * 3 + i]) << y;
      }
    }
  }
  // Parameters of another image are refused.
  LetterboxParams other = compute_letterbox(50, 100, 64, 64).value();
  EXPECT_EQ(letterbox(img, other).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(letterbox(Tensor(), 64, 64, nullptr).status().code(), StatusCode::kInvalidArgument);
}

TEST(LetterboxTest, DegenerateImages) {
  for (auto [w, h] : {std::pair{1, 1}, {20000, 1}, {1, 20000}, {2, 1}}) {
    const Tensor img = pattern_image(h, w, 3);
    LetterboxParams p;
    StatusOr<Tensor> out = letterbox(img, 640, 640, &p);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->shape(), (Shape{640, 640, 3}));
  }
  // A 1x1 image becomes one flat 640x640 colour.
  const Tensor one = pattern_image(1, 1, 3);
  const Tensor out = letterbox(one, 640, 640, nullptr).value();
  for (int64_t i = 0; i < 640 * 640; ++i) {
    for (int c = 0; c < 3; ++c) ASSERT_EQ(out.data<uint8_t>()[3 * i + c], one.data<uint8_t>()[c]);
  }
}

TEST(ModelInputTest, NchwScaledByOneOver255InFloat32AndFloat16) {
  const Tensor a = pattern_image(4, 5, 3, 1), b = pattern_image(4, 5, 3, 2);
  const Tensor images[] = {a, b};
  const Tensor f32 = make_model_input(images, DType::kFloat32).value();
  const Tensor f16 = make_model_input(images, DType::kFloat16).value();
  ASSERT_EQ(f32.shape(), (Shape{2, 3, 4, 5}));
  ASSERT_EQ(f16.shape(), (Shape{2, 3, 4, 5}));
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t i = 0; i < 20; ++i) {
        const uint8_t v = images[n].data<uint8_t>()[i * 3 + c];
        const int64_t at = ((n * 3 + c) * 20) + i;
        ASSERT_EQ(f32.data<float>()[at], float(v) / 255.0f);
        ASSERT_EQ(f16.data<Half>()[at].bits, Half(float(v) / 255.0f).bits);
      }
    }
  }
  Tensor wrong = Tensor::allocate(DType::kFloat32, Shape{1, 3, 5, 4}).value();
  EXPECT_EQ(write_model_input(a, 0, wrong).code(), StatusCode::kInvalidArgument);
  Tensor batch = Tensor::allocate(DType::kFloat32, Shape{1, 3, 4, 5}).value();
  EXPECT_EQ(write_model_input(a, 1, batch).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(make_model_input(images, DType::kInt8).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::vision
