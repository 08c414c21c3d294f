// The GPU letterbox (vision/letterbox_cuda.h) against the CPU path, letterbox() followed by
// write_model_input(): bit for bit, on random images of many sizes (degenerate, exact half, same
// size, up- and downscales, odd sides), batched with mixed sizes, in float32 and float16; bus.jpg
// and zidane.jpg within one grey level of the reference letterboxes; bad arguments refused.
//
// Perf mode (gpu_tests --perf): batch 32 of 1920x1080 already on the GPU -> float16 640x640, median
// of 50 runs timed with CUDA events.
//
// Skips with a message when no GPU is present (CI), and the reference cases without ../shared.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "kestrel/base/npy.h"
#include "kestrel/engine/backends.h"
#include "kestrel/runtime/cuda/cuda_backend.h"
#include "kestrel/vision/image.h"
#include "kestrel/vision/letterbox.h"
#include "kestrel/vision/letterbox_cuda.h"

namespace kestrel {

extern bool g_perf;  // cuda_ops_test.cc, set from --perf

namespace vision {
namespace {

namespace fs = std::filesystem;

fs::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? fs::path(dir) : fs::path("../shared");
}

// Uniform random bytes in 1..255: never all zero, so a kernel that writes nothing cannot pass.
Tensor random_image(int64_t width, int64_t height, std::mt19937& rng) {
  Tensor t = Tensor::allocate(DType::kUInt8, Shape{height, width, 3}).value();
  std::uniform_int_distribution<int> dist(1, 255);
  for (uint8_t& v : t.values<uint8_t>()) v = static_cast<uint8_t>(dist(rng));
  return t;
}

std::vector<LetterboxParams> params_for(std::span<const Tensor> images, int64_t target_width,
                                        int64_t target_height) {
  std::vector<LetterboxParams> params;
  for (const Tensor& image : images) {
    params.push_back(
        compute_letterbox(image.shape()[1], image.shape()[0], target_width, target_height).value());
  }
  return params;
}

// The CPU path: letterbox() then write_model_input() into slot i of a [n, 3, h, w] batch whose
// other slots hold `fill` bytes.
Tensor cpu_model_input(std::span<const Tensor> images, std::span<const LetterboxParams> params,
                       int64_t n, DType dtype, uint8_t fill) {
  Tensor batch =
      Tensor::allocate(dtype, Shape{n, 3, params[0].target_height, params[0].target_width}).value();
  std::memset(batch.raw_data(), fill, batch.nbytes());
  for (size_t i = 0; i < images.size(); ++i) {
    const Tensor boxed = letterbox(images[i], params[i]).value();
    EXPECT_TRUE(write_model_input(boxed, static_cast<int64_t>(i), batch).ok());
  }
  return batch;
}

class GpuLetterboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
    backend_ = runtime::create_cuda_backend(0).value();
    letterbox_ = GpuLetterbox::create(0).value();
  }

  // A device tensor filled with `fill` bytes.
  Tensor device_tensor(DType dtype, const Shape& shape, uint8_t fill = 0) {
    Tensor host = Tensor::allocate(dtype, shape).value();
    std::memset(host.raw_data(), fill, host.nbytes());
    return to_device(host);
  }
  Tensor to_device(const Tensor& host) {
    Tensor d = backend_->allocate(host.dtype(), host.shape()).value();
    EXPECT_TRUE(backend_->copy(host, d).ok());
    return d;
  }
  Tensor to_host(const Tensor& device) {
    Tensor h = Tensor::allocate(device.dtype(), device.shape()).value();
    EXPECT_TRUE(backend_->copy(device, h).ok());  // on cudaStreamPerThread, after the kernel
    return h;
  }

  // Letterboxes `images` on the GPU (from the host, or from device copies) into a batch of n
  // (pre-filled with 0xAB bytes) and expects exactly the CPU's bytes, untouched slots included.
  void expect_bit_exact(const std::vector<Tensor>& images, int64_t target_width,
                        int64_t target_height, DType dtype, int64_t n, bool from_device = false) {
    const std::vector<LetterboxParams> params = params_for(images, target_width, target_height);
    const Tensor want = cpu_model_input(images, params, n, dtype, 0xAB);
    Tensor output = device_tensor(dtype, want.shape(), 0xAB);
    if (from_device) {
      std::vector<Tensor> on_device;
      for (const Tensor& image : images) on_device.push_back(to_device(image));
      ASSERT_TRUE(letterbox_->run_device(on_device, params, output, nullptr).ok());
    } else {
      const Status s = letterbox_->run(images, params, output, nullptr);
      ASSERT_TRUE(s.ok()) << s;
    }
    expect_same(to_host(output), want, images);
  }

  // Compares element by element; reports the first difference with its image, channel and pixel.
  static void expect_same(const Tensor& got, const Tensor& want,
                          const std::vector<Tensor>& images) {
    ASSERT_EQ(got.shape(), want.shape());
    const size_t esize = dtype_size(want.dtype());
    const auto* g = static_cast<const uint8_t*>(got.raw_data());
    const auto* w = static_cast<const uint8_t*>(want.raw_data());
    const int64_t th = want.shape()[2], tw = want.shape()[3];
    int64_t differing = 0;
    for (int64_t e = 0; e < want.num_elements(); ++e) {
      if (std::memcmp(g + e * esize, w + e * esize, esize) == 0) continue;
      if (differing++ == 0) {
        const int64_t x = e % tw, y = e / tw % th, c = e / (tw * th) % 3, i = e / (3 * tw * th);
        const double gv = got.dtype() == DType::kFloat32 ? got.data<float>()[e]
                                                         : static_cast<float>(got.data<Half>()[e]);
        const double wv = want.dtype() == DType::kFloat32
                              ? want.data<float>()[e]
                              : static_cast<float>(want.data<Half>()[e]);
        ADD_FAILURE() << fmt::format(
            "first difference: image {} ({}), channel {}, x {}, y {}: GPU {} ({:.1f}/255), CPU {} "
            "({:.1f}/255)",
            i,
            i < static_cast<int64_t>(images.size())
                ? fmt::format("{}x{}", images[i].shape()[1], images[i].shape()[0])
                : "unused slot",
            c, x, y, gv, gv * 255, wv, wv * 255);
      }
    }
    EXPECT_EQ(differing, 0) << "of " << want.num_elements() << " elements differ";
  }

  std::unique_ptr<runtime::Backend> backend_;
  std::unique_ptr<GpuLetterbox> letterbox_;
};

// (width, height) of images that take every path of the resize: a copy, the exact half
// (INTER_AREA), degenerate 1-pixel sides, up- and downscales, odd sizes.
const std::vector<std::pair<int64_t, int64_t>> kSizes = {
    {1, 1},     {20000, 1}, {1, 20000},   {1280, 1280}, {640, 640},  {1920, 1080},
    {480, 640}, {640, 480}, {1280, 960},  {331, 257},   {1001, 999}, {2, 2},
    {3, 1},     {320, 240}, {1281, 1279}, {641, 639},   {810, 1080}, {17, 4093}};

std::vector<Tensor> images_of(const std::vector<std::pair<int64_t, int64_t>>& sizes,
                              uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Tensor> images;
  for (auto [w, h] : sizes) images.push_back(random_image(w, h, rng));
  return images;
}

TEST_F(GpuLetterboxTest, EachSizeAloneMatchesTheCpuBitForBit) {
  const std::vector<Tensor> images = images_of(kSizes, 1);
  for (const Tensor& image : images) {
    SCOPED_TRACE(fmt::format("{}x{}", image.shape()[1], image.shape()[0]));
    for (DType dtype : {DType::kFloat32, DType::kFloat16}) {
      SCOPED_TRACE(dtype_name(dtype));
      expect_bit_exact({image}, 640, 640, dtype, 1);
    }
  }
}

TEST_F(GpuLetterboxTest, MixedBatchMatchesTheCpuBitForBitAndLeavesSpareSlotsAlone) {
  const std::vector<Tensor> images = images_of(kSizes, 2);
  const int64_t n = static_cast<int64_t>(images.size()) + 2;
  for (DType dtype : {DType::kFloat32, DType::kFloat16}) {
    SCOPED_TRACE(dtype_name(dtype));
    expect_bit_exact(images, 640, 640, dtype, n);
    expect_bit_exact(images, 640, 640, dtype, n, /*from_device=*/true);
  }
}

TEST_F(GpuLetterboxTest, RectangularTargetsMatchTheCpu) {
  const std::vector<Tensor> images =
      images_of({{1280, 720}, {720, 1280}, {1024, 640}, {512, 320}, {333, 1}, {99, 101}}, 3);
  for (DType dtype : {DType::kFloat32, DType::kFloat16}) {
    expect_bit_exact(images, 1024, 640, dtype, 6);  // 2048x1280 halves, 1024x640 copies
    expect_bit_exact(images, 320, 512, dtype, 6);
  }
}

TEST_F(GpuLetterboxTest, BackToBackCallsReuseTheStagingBuffersSafely) {
  // Three calls queued without waiting: the third reuses the first's pinned staging area, and the
  // device buffer grows on the second.
  const std::vector<std::vector<Tensor>> batches = {images_of({{1920, 1080}, {640, 480}}, 4),
                                                    images_of({{4000, 3000}, {20, 30}}, 5),
                                                    images_of({{1920, 1080}, {1280, 1280}}, 6)};
  std::vector<Tensor> outputs;
  for (const std::vector<Tensor>& batch : batches) {
    outputs.push_back(device_tensor(DType::kFloat16, Shape{2, 3, 640, 640}));
    const Status s = letterbox_->run(batch, params_for(batch, 640, 640), outputs.back(), nullptr);
    ASSERT_TRUE(s.ok()) << s;
  }
  for (size_t b = 0; b < batches.size(); ++b) {
    SCOPED_TRACE(b);
    const Tensor want =
        cpu_model_input(batches[b], params_for(batches[b], 640, 640), 2, DType::kFloat16, 0);
    expect_same(to_host(outputs[b]), want, batches[b]);
  }
}

// bus.jpg (a 0.59 downscale) and zidane.jpg (exactly half) within one grey level of the reference
// letterboxes (OpenCV + PyTorch, RGB uint8), read back from float32.
TEST_F(GpuLetterboxTest, ReferenceImagesWithinOneGreyLevel) {
  if (!fs::exists(shared_dir() / "reference" / "bus_input_rgb_u8.npy")) {
    GTEST_SKIP() << "needs ../shared (set KESTREL_SHARED)";
  }
  for (const char* name : {"bus", "zidane"}) {
    SCOPED_TRACE(name);
    const Tensor image =
        read_image((shared_dir() / "images" / (std::string(name) + ".jpg")).string()).value();
    const Tensor want =
        read_npy((shared_dir() / "reference" / (std::string(name) + "_input_rgb_u8.npy")).string())
            .value();
    ASSERT_EQ(want.shape(), (Shape{640, 640, 3}));
    const std::vector<Tensor> images = {image};
    Tensor output = device_tensor(DType::kFloat32, Shape{1, 3, 640, 640});
    ASSERT_TRUE(letterbox_->run(images, params_for(images, 640, 640), output, nullptr).ok());
    const Tensor got = to_host(output);
    int max_diff = 0;
    for (int64_t y = 0; y < 640; ++y) {
      for (int64_t x = 0; x < 640; ++x) {
        for (int64_t c = 0; c < 3; ++c) {
          const float v = got.data<float>()[(c * 640 + y) * 640 + x] * 255.0f;
          const int ref = want.data<uint8_t>()[(y * 640 + x) * 3 + c];
          max_diff = std::max(max_diff, std::abs(static_cast<int>(std::lround(v)) - ref));
        }
      }
    }
    EXPECT_LE(max_diff, 1);
  }
}

TEST_F(GpuLetterboxTest, RefusesBadArguments) {
  std::mt19937 rng(7);
  const std::vector<Tensor> images = {random_image(64, 48, rng)};
  const std::vector<LetterboxParams> good = params_for(images, 640, 640);
  Tensor output = device_tensor(DType::kFloat16, Shape{1, 3, 640, 640});
  ASSERT_TRUE(letterbox_->run(images, good, output, nullptr).ok());

  auto expect_invalid = [&](const Status& s, const char* what) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << what << ": " << s;
  };
  // Parameters for another image size, for another target, or missing.
  const std::vector<LetterboxParams> other_size = {compute_letterbox(48, 64).value()};
  expect_invalid(letterbox_->run(images, other_size, output, nullptr), "params of another size");
  const std::vector<LetterboxParams> other_target = {compute_letterbox(64, 48, 320, 320).value()};
  expect_invalid(letterbox_->run(images, other_target, output, nullptr),
                 "params of another target");
  std::vector<LetterboxParams> edited = good;
  edited[0].pad_top += 1;
  expect_invalid(letterbox_->run(images, edited, output, nullptr), "edited params");
  expect_invalid(letterbox_->run(images, {}, output, nullptr), "no params");
  // Outputs that are too small, of the wrong type or shape, or on the host.
  const std::vector<Tensor> two = {images[0], images[0]};
  const std::vector<LetterboxParams> two_params = {good[0], good[0]};
  expect_invalid(letterbox_->run(two, two_params, output, nullptr), "batch too small");
  Tensor ints = device_tensor(DType::kInt32, Shape{1, 3, 640, 640});
  expect_invalid(letterbox_->run(images, good, ints, nullptr), "int32 output");
  Tensor four_channels = device_tensor(DType::kFloat32, Shape{1, 4, 640, 640});
  expect_invalid(letterbox_->run(images, good, four_channels, nullptr), "4-channel output");
  Tensor rank3 = device_tensor(DType::kFloat32, Shape{3, 640, 640});
  expect_invalid(letterbox_->run(images, good, rank3, nullptr), "rank-3 output");
  Tensor host_output = Tensor::allocate(DType::kFloat32, Shape{1, 3, 640, 640}).value();
  expect_invalid(letterbox_->run(images, good, host_output, nullptr), "host output");
  Tensor undefined;
  expect_invalid(letterbox_->run(images, good, undefined, nullptr), "undefined output");
  // Images of the wrong type, channel count or memory.
  const std::vector<Tensor> floats = {Tensor::zeros(DType::kFloat32, Shape{48, 64, 3}).value()};
  expect_invalid(letterbox_->run(floats, good, output, nullptr), "float image");
  const std::vector<Tensor> rgba = {Tensor::zeros(DType::kUInt8, Shape{48, 64, 4}).value()};
  expect_invalid(letterbox_->run(rgba, good, output, nullptr), "4-channel image");
  const std::vector<Tensor> on_device = {to_device(images[0])};
  expect_invalid(letterbox_->run(on_device, good, output, nullptr), "device image to run()");
  expect_invalid(letterbox_->run_device(images, good, output, nullptr),
                 "host image to run_device()");
  // Nothing to do is fine.
  EXPECT_TRUE(letterbox_->run({}, {}, output, nullptr).ok());
}

TEST_F(GpuLetterboxTest, PerfBatch32Of1080p) {
  if (!g_perf) GTEST_SKIP() << "timing only with --perf";
  std::mt19937 rng(8);
  const Tensor host = random_image(1920, 1080, rng);
  std::vector<Tensor> images(32), device_images;
  for (Tensor& image : images) image = host;
  for (int i = 0; i < 32; ++i) device_images.push_back(to_device(host));
  const std::vector<LetterboxParams> params = params_for(images, 640, 640);
  Tensor output = device_tensor(DType::kFloat16, Shape{32, 3, 640, 640});
  const cudaStream_t stream = cudaStreamPerThread;
  cudaEvent_t start, stop;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);

  // Pixels already on the GPU: the per-image tables' upload and the kernel.
  auto median_ms = [&](auto&& work, int runs) {
    std::vector<float> times;
    for (int r = 0; r < runs + 3; ++r) {  // 3 warm-up runs
      EXPECT_EQ(cudaEventRecord(start, stream), cudaSuccess);
      work();
      EXPECT_EQ(cudaEventRecord(stop, stream), cudaSuccess);
      EXPECT_EQ(cudaEventSynchronize(stop), cudaSuccess);
      float ms = 0;
      EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
      if (r >= 3) times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  };
  const float device_ms = median_ms(
      [&] { ASSERT_TRUE(letterbox_->run_device(device_images, params, output, stream).ok()); }, 50);
  fmt::print("letterbox b32 1080p fp16: {:.3f} ms\n", device_ms);
  ::testing::Test::RecordProperty("letterbox_b32_1080p_fp16_ms", fmt::format("{:.4f}", device_ms));

  // From host memory (staging copy, PCIe upload, kernel), for comparison: wall time per call.
  const auto t0 = std::chrono::steady_clock::now();
  constexpr int kHostRuns = 10;
  for (int r = 0; r < kHostRuns; ++r) {
    ASSERT_TRUE(letterbox_->run(images, params, output, stream).ok());
  }
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const double host_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
      kHostRuns;
  fmt::print("letterbox b32 1080p fp16 from host memory: {:.3f} ms per batch (wall)\n", host_ms);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  EXPECT_LE(device_ms, 0.5f) << "the target is 0.5 ms on the H100";
}

}  // namespace
}  // namespace vision
}  // namespace kestrel
