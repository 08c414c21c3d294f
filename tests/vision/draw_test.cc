// Detection drawing and JPEG encoding: where outlines and labels land, that text contrasts with its
// background, that hostile boxes never write outside the image, and the JPEG round trip.
#include "kestrel/vision/draw.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kestrel/base/file.h"
#include "kestrel/vision/image.h"

namespace kestrel::vision {
namespace {

const std::vector<std::string> kNames = {"person", "bicycle", "car"};

// A uint8 [h, w, 3] image of one colour.
Tensor solid_image(int64_t h, int64_t w, Rgb color) {
  Tensor t = Tensor::allocate(DType::kUInt8, Shape{h, w, 3}).value();
  uint8_t* p = t.data<uint8_t>();
  for (int64_t i = 0; i < h * w; ++i) {
    p[3 * i] = color.r;
    p[3 * i + 1] = color.g;
    p[3 * i + 2] = color.b;
  }
  return t;
}

Rgb pixel(const Tensor& image, int64_t x, int64_t y) {
  const uint8_t* p = image.data<uint8_t>() + (y * image.shape()[1] + x) * 3;
  return {p[0], p[1], p[2]};
}

// How many pixels of [x0, x1) x [y0, y1) have colour `color`.
int64_t count_color(const Tensor& image, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                    Rgb color) {
  int64_t n = 0;
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x = x0; x < x1; ++x) n += pixel(image, x, y) == color;
  }
  return n;
}

constexpr Rgb kGray{128, 128, 128};
constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kBlack{0, 0, 0};

TEST(DrawTest, OutlineHasTheClassColourAndTheInsideIsUntouched) {
  Tensor image = solid_image(200, 300, kGray);
  const Detection d{.x1 = 50, .y1 = 80, .x2 = 250, .y2 = 180, .score = 0.87f, .class_id = 0};
  ASSERT_TRUE(draw_detections(image, {&d, 1}, kNames).ok());

  const Rgb color = class_color(0);
  const int line = draw_style(200, 300).line_width;
  EXPECT_GE(line, 2);
  for (int64_t y = 80; y < 180; y += 7) {  // left and right edges, every row of the box
    EXPECT_EQ(pixel(image, 50, y), color) << "y=" << y;
    EXPECT_EQ(pixel(image, 50 + line - 1, y), color) << "y=" << y;
    EXPECT_EQ(pixel(image, 249, y), color) << "y=" << y;
  }
  for (int64_t x = 50; x < 250; x += 7) {  // the bottom edge
    EXPECT_EQ(pixel(image, x, 179), color) << "x=" << x;
    EXPECT_EQ(pixel(image, x, 179 - line + 1), color) << "x=" << x;
  }
  // Just inside the outline, and well inside: as before. Outside the box: as before.
  EXPECT_EQ(pixel(image, 50 + line, 130), kGray);
  EXPECT_EQ(count_color(image, 60, 100, 240, 170, kGray), 180 * 70);
  EXPECT_EQ(pixel(image, 49, 130), kGray);
  EXPECT_EQ(pixel(image, 250, 130), kGray);
  EXPECT_EQ(pixel(image, 150, 180), kGray);
}

TEST(DrawTest, LabelSitsAboveTheBoxWithContrastingText) {
  Tensor image = solid_image(200, 300, kGray);
  const Detection d{.x1 = 50, .y1 = 80, .x2 = 250, .y2 = 180, .score = 0.87f, .class_id = 0};
  ASSERT_TRUE(draw_detections(image, {&d, 1}, kNames).ok());
  const Rgb color = class_color(0);  // dark blue: white text
  const int scale = draw_style(200, 300).font_scale;
  const int64_t label_h = 10 * scale;  // 8 font pixels plus one of padding above and below

  // "person 0.87" is 11 characters of 8 font pixels: the label spans them, above the box.
  const int64_t x0 = 50, x1 = 50 + 11 * 8 * scale, y0 = 80 - label_h;
  const int64_t background = count_color(image, x0, y0, x1, 80, color);
  const int64_t text = count_color(image, x0, y0, x1, 80, kWhite);
  EXPECT_GT(background, (x1 - x0) * label_h / 2);
  EXPECT_GT(text, (x1 - x0) * label_h / 10);
  EXPECT_EQ(background + text, (x1 - x0) * label_h) << "only background and text in the label";
  EXPECT_EQ(pixel(image, x0, y0), color);
  EXPECT_EQ(pixel(image, x0, y0 - 1), kGray) << "nothing above the label";
  EXPECT_EQ(pixel(image, 290, 70), kGray) << "nothing right of the label";

  // A light class colour gets black text.
  Tensor light = solid_image(200, 300, kGray);
  const Detection e{.x1 = 50, .y1 = 80, .x2 = 250, .y2 = 180, .score = 0.5f, .class_id = 2};
  ASSERT_EQ(class_color(2), (Rgb{0xF3, 0xF3, 0xF3}));
  ASSERT_TRUE(draw_detections(light, {&e, 1}, kNames).ok());
  EXPECT_GT(count_color(light, x0, y0, x1, 80, kBlack), 0);
  EXPECT_EQ(count_color(light, x0, y0, x1, 80, kWhite), 0);
}

TEST(DrawTest, LabelGoesInsideTheBoxAtTheTopEdge) {
  Tensor image = solid_image(200, 300, kGray);
  const Detection d{.x1 = 50, .y1 = 0, .x2 = 250, .y2 = 180, .score = 0.87f, .class_id = 0};
  ASSERT_TRUE(draw_detections(image, {&d, 1}, kNames).ok());
  const int scale = draw_style(200, 300).font_scale;
  const int64_t x1 = 50 + 11 * 8 * scale, label_h = 10 * scale;
  // The label covers the top of the box: background or text, no gray.
  EXPECT_EQ(count_color(image, 50, 0, x1, label_h, kGray), 0);
  EXPECT_GT(count_color(image, 50, 0, x1, label_h, kWhite), 0);
  EXPECT_EQ(pixel(image, 150, label_h + 10), kGray) << "below the label: the untouched inside";
}

TEST(DrawTest, LabelStaysInsideTheImageOnTheRight) {
  Tensor image = solid_image(200, 300, kGray);
  const Detection d{.x1 = 280, .y1 = 100, .x2 = 300, .y2 = 150, .score = 0.87f, .class_id = 0};
  ASSERT_TRUE(draw_detections(image, {&d, 1}, kNames).ok());
  const int scale = draw_style(200, 300).font_scale;
  EXPECT_EQ(pixel(image, 299, 100 - scale), class_color(0)) << "the label ends at the image edge";
  EXPECT_GT(count_color(image, 300 - 11 * 8 * scale, 100 - 10 * scale, 300, 100, kWhite), 0);
}

TEST(DrawTest, UnknownClassIdsAreLabelledWithTheirNumber) {
  Tensor named = solid_image(100, 200, kGray), numbered = solid_image(100, 200, kGray);
  const Detection d{.x1 = 10, .y1 = 50, .x2 = 150, .y2 = 90, .score = 0.5f, .class_id = 7};
  ASSERT_TRUE(draw_detections(numbered, {&d, 1}, kNames).ok());
  // The same picture as with a name list where class 7 is called "7".
  std::vector<std::string> names(8, "x");
  names[7] = "7";
  ASSERT_TRUE(draw_detections(named, {&d, 1}, names).ok());
  EXPECT_EQ(std::memcmp(named.raw_data(), numbered.raw_data(), named.nbytes()), 0);
  EXPECT_EQ(class_color(7), class_color(27));
  EXPECT_EQ(class_color(-1), class_color(19));
}

TEST(DrawTest, StyleGrowsWithTheImage) {
  const DrawStyle small = draw_style(480, 640), large = draw_style(3000, 4000);
  EXPECT_GE(small.line_width, 2);
  EXPECT_LE(small.line_width, 3);
  EXPECT_GE(small.font_scale, 2);
  // Text keeps about the same height relative to the image.
  EXPECT_NEAR(8.0 * large.font_scale / 3000, 8.0 * small.font_scale / 480, 0.01);
  EXPECT_EQ(draw_style(1, 1).line_width, 2);
  EXPECT_EQ(draw_style(0, 0).font_scale, 2);
}

TEST(DrawTest, HostileBoxesNeverWriteOutsideTheImage) {
  constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kMax = std::numeric_limits<float>::max();
  const std::vector<Detection> hostile = {
      {-100, -100, -50, -50, 0.9f, 0},      // wholly outside, top-left
      {500, 500, 600, 600, 0.9f, 1},        // wholly outside, bottom-right
      {-20, -20, 30, 30, 0.9f, 2},          // partly outside
      {40, 10, 90, 70, 0.9f, 3},            // partly outside on the right and bottom
      {kNan, 0, 10, 10, 0.9f, 0},           // NaN
      {0, 0, kNan, kNan, kNan, 0},          // NaN
      {-kInf, -kInf, kInf, kInf, 0.9f, 0},  // infinite
      {-kMax, -kMax, kMax, kMax, kInf, 0},  // huge
      {1e30f, 1e30f, -1e30f, -1e30f, -kInf, 0},
      {30, 30, 10, 10, 0.9f, 1},  // swapped corners
      {25, 25, 25, 25, 0.9f, 2},  // empty
      {0, 0, 64, 48, 0.9f, std::numeric_limits<int32_t>::min()},
      {0, 0, 64, 48, 1e30f, std::numeric_limits<int32_t>::max()},
  };
  const std::vector<std::string> odd_names = {"", std::string(500, 'w'),
                                              "\x01\xff\xc3\xa9t\xc3\xa9"};
  for (auto [h, w] : {std::pair{48, 64}, {1, 1}, {1, 200}, {200, 1}, {3, 3}}) {
    // A guard band after the image: nothing may write it.
    Tensor storage = solid_image(h + 1, w, kGray);
    Tensor image = storage.view(DType::kUInt8, Shape{h, w, 3}, 0);
    ASSERT_TRUE(draw_detections(image, hostile, odd_names).ok());
    ASSERT_TRUE(draw_detections(image, hostile, kNames).ok());
    EXPECT_EQ(image.shape(), (Shape{h, w, 3}));
    EXPECT_EQ(count_color(storage, 0, h, w, h + 1, kGray), w) << h << "x" << w;
  }

  // Random boxes around and across the image, checked by ASan in sanitizer builds.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> coord(-100, 200);
  std::vector<Detection> random(500);
  for (Detection& d : random) {
    d = {coord(rng), coord(rng),       coord(rng),
         coord(rng), coord(rng) / 100, static_cast<int32_t>(rng() % 100) - 10};
  }
  Tensor image = solid_image(37, 91, kGray);
  ASSERT_TRUE(draw_detections(image, random, kNames).ok());
  EXPECT_EQ(image.shape(), (Shape{37, 91, 3}));
}

TEST(DrawTest, NoDetectionsLeaveTheImageAsItWas) {
  Tensor image = solid_image(20, 30, kGray);
  ASSERT_TRUE(draw_detections(image, {}, kNames).ok());
  EXPECT_EQ(count_color(image, 0, 0, 30, 20, kGray), 600);
  Tensor empty = Tensor::allocate(DType::kUInt8, Shape{0, 5, 3}).value();
  const Detection d{0, 0, 5, 5, 0.5f, 0};
  EXPECT_TRUE(draw_detections(empty, {&d, 1}, kNames).ok());
}

TEST(DrawTest, RefusesTensorsThatAreNotRgbImages) {
  const Detection d{0, 0, 5, 5, 0.5f, 0};
  for (Tensor bad : {Tensor::zeros(DType::kFloat32, Shape{10, 10, 3}).value(),
                     Tensor::zeros(DType::kUInt8, Shape{10, 30}).value(),
                     Tensor::zeros(DType::kUInt8, Shape{1, 10, 10, 3}).value(),
                     Tensor::zeros(DType::kUInt8, Shape{10, 10, 1}).value(),
                     Tensor::zeros(DType::kUInt8, Shape{10, 10, 4}).value(), Tensor()}) {
    const Status s = draw_detections(bad, {&d, 1}, kNames);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    const StatusOr<std::string> jpeg = encode_jpeg(bad);
    EXPECT_EQ(jpeg.status().code(), StatusCode::kInvalidArgument) << jpeg.status();
  }
}

TEST(EncodeJpegTest, RoundTripKeepsSizeAndPixels) {
  // A smooth image: JPEG keeps it closely.
  Tensor image = Tensor::allocate(DType::kUInt8, Shape{45, 67, 3}).value();
  for (int64_t y = 0; y < 45; ++y) {
    for (int64_t x = 0; x < 67; ++x) {
      for (int64_t c = 0; c < 3; ++c)
        image.data<uint8_t>()[(y * 67 + x) * 3 + c] = static_cast<uint8_t>(20 + x + y + 40 * c);
    }
  }
  const StatusOr<std::string> jpeg = encode_jpeg(image);
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  EXPECT_EQ(sniff_image_format(*jpeg), ImageFormat::kJpeg);
  const StatusOr<Tensor> decoded = decode_image(*jpeg);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->shape(), image.shape());
  int worst = 0;
  for (int64_t i = 0; i < image.num_elements(); ++i) {
    worst = std::max(worst, std::abs(decoded->data<uint8_t>()[i] - image.data<uint8_t>()[i]));
  }
  EXPECT_LE(worst, 6);

  // Drawn boxes survive: the outline is still about the class colour.
  const Detection d{.x1 = 5, .y1 = 25, .x2 = 60, .y2 = 44, .score = 0.5f, .class_id = 0};
  ASSERT_TRUE(draw_detections(image, {&d, 1}, kNames).ok());
  const Tensor drawn = decode_image(encode_jpeg(image).value()).value();
  const Rgb want = class_color(0), got = pixel(drawn, 5, 35);
  EXPECT_NEAR(got.r, want.r, 30);
  EXPECT_NEAR(got.g, want.g, 30);
  EXPECT_NEAR(got.b, want.b, 30);
}

TEST(EncodeJpegTest, RefusesBadQualityAndEmptyImages) {
  const Tensor image = solid_image(8, 8, kGray);
  EXPECT_EQ(encode_jpeg(image, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(encode_jpeg(image, 101).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(encode_jpeg(image, 1).ok());
  EXPECT_TRUE(encode_jpeg(image, 100).ok());
  const Tensor empty = Tensor::allocate(DType::kUInt8, Shape{0, 8, 3}).value();
  EXPECT_EQ(encode_jpeg(empty).status().code(), StatusCode::kInvalidArgument);
  const Tensor too_wide = Tensor::allocate(DType::kUInt8, Shape{1, 70000, 3}).value();
  EXPECT_EQ(encode_jpeg(too_wide).status().code(), StatusCode::kInvalidArgument);
}

TEST(EncodeJpegTest, WriteJpegWritesADecodableFile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kestrel_draw_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "out.jpg").string();
  ASSERT_TRUE(write_jpeg(path, solid_image(16, 24, kGray)).ok());
  const StatusOr<Tensor> back = read_image(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->shape(), (Shape{16, 24, 3}));
  EXPECT_FALSE(write_jpeg((dir / "missing" / "out.jpg").string(), solid_image(4, 4, kGray)).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kestrel::vision
