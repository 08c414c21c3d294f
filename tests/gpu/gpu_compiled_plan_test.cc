// Compiled cuDNN plans in engine files (runtime/cuda/conv_fused_graph.h): a fused convolution
// plan serialized and loaded again computes exactly what the plan it came from computes, loads
// without compiling (timed, for the log), and text cuDNN refuses is an error, not a crash. Plans
// compiled ahead on the precompile pool are those create() would compile.
//
// Skips with a message when no GPU is present (CI).
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kestrel/base/half.h"
#include "kestrel/engine/backends.h"
#include "kestrel/runtime/cuda/conv_fused_graph.h"

namespace kestrel::runtime::cuda {
namespace {

constexpr size_t kMaxWorkspace = size_t{256} << 20;

// Device memory holding random float16 values in (-1, 1), never zero.
class DeviceHalves {
 public:
  DeviceHalves(size_t count, std::mt19937& rng) : count_(count) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<Half> host(count);
    for (Half& h : host) {
      float v = u(rng);
      h = Half(std::abs(v) < 1e-3f ? 0.5f : v);
    }
    EXPECT_EQ(cudaMalloc(&ptr_, count * sizeof(Half)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), count * sizeof(Half), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceHalves() { cudaFree(ptr_); }
  DeviceHalves(const DeviceHalves&) = delete;
  DeviceHalves& operator=(const DeviceHalves&) = delete;
  void* get() const { return ptr_; }
  std::vector<uint16_t> download() const {
    std::vector<uint16_t> bits(count_);
    EXPECT_EQ(cudaMemcpy(bits.data(), ptr_, count_ * sizeof(Half), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return bits;
  }

 private:
  size_t count_;
  void* ptr_ = nullptr;
};

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

TEST(CompiledPlanTest, SerializedPlanComputesWhatItsSourceComputes) {
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
  // A YOLO C3 block's 3x3 convolution, batch 4: bias, SiLU, residual.
  FusedConvProblem p;
  p.float16 = true;
  const int64_t n = 4, c = 32, hw = 20, k = 32;
  const int64_t x[4] = {n, c, hw, hw}, w[4] = {k, c, 3, 3}, y[4] = {n, k, hw, hw};
  std::copy_n(x, 4, p.x);
  std::copy_n(w, 4, p.w);
  std::copy_n(y, 4, p.y);
  p.pad[0] = p.pad[1] = 1;
  p.bias = true;
  p.residual = true;
  p.activation = Activation::kSilu;

  auto started = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<FusedConvGraph>> built = FusedConvGraph::create(p, 1, kMaxWorkspace);
  ASSERT_TRUE(built.ok()) << built.status();
  ASSERT_GT((*built)->size(), 0u) << (*built)->why_empty();
  const double build_ms = ms_since(started);
  StatusOr<std::string> text = (*built)->serialize(0);
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_FALSE(text->empty());

  started = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<FusedConvGraph>> loaded =
      FusedConvGraph::from_serialized(p, (*built)->choice(0), *text, kMaxWorkspace);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const double load_ms = ms_since(started);
  started = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<FusedConvGraph>> rebuilt =
      FusedConvGraph::from_choice(p, (*built)->choice(0), kMaxWorkspace);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  const double rebuild_ms = ms_since(started);
  fmt::print(
      "plan {}: {} bytes serialized; built in {:.1f} ms, rebuilt from its choice in {:.1f} "
      "ms, loaded from its text in {:.1f} ms\n",
      (*built)->choice(0), text->size(), build_ms, rebuild_ms, load_ms);
  ASSERT_EQ((*loaded)->size(), 1u);
  EXPECT_EQ((*loaded)->choice(0), (*built)->choice(0));
  EXPECT_EQ((*loaded)->workspace(0), (*built)->workspace(0));

  std::mt19937 rng(11);
  const size_t xs = n * c * hw * hw, ws = k * c * 9, ys = n * k * hw * hw;
  DeviceHalves dx(xs, rng), dw(ws, rng), bias(k, rng), residual(ys, rng), y1(ys, rng), y2(ys, rng);
  void* workspace = nullptr;
  if ((*built)->workspace(0) > 0) {
    ASSERT_EQ(cudaMalloc(&workspace, (*built)->workspace(0)), cudaSuccess);
  }
  FusedConvBuffers b{dx.get(), dw.get(), bias.get(), residual.get(), y1.get()};
  ASSERT_TRUE((*built)->execute(0, b, workspace, nullptr).ok());
  b.y = y2.get();
  ASSERT_TRUE((*loaded)->execute(0, b, workspace, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (workspace != nullptr) cudaFree(workspace);
  const std::vector<uint16_t> want = y1.download(), got = y2.download();
  size_t nonzero = 0;
  for (uint16_t v : want) nonzero += (v & 0x7fff) != 0;
  EXPECT_GT(nonzero, want.size() / 2);  // the plan really wrote the output
  EXPECT_EQ(got, want);                 // the same kernel: bit for bit

  // Text cuDNN refuses: damaged, or cut short.
  std::string damaged = *text;
  damaged[damaged.size() / 2] = '#';
  for (const std::string& bad : {damaged, text->substr(0, text->size() / 3), std::string("{}")}) {
    StatusOr<std::unique_ptr<FusedConvGraph>> refused =
        FusedConvGraph::from_serialized(p, (*built)->choice(0), bad, kMaxWorkspace);
    // cuDNN may accept a change inside a kernel image it does not check; it must not crash.
    if (!refused.ok()) {
      EXPECT_FALSE(refused.status().message().empty());
    }
  }
  EXPECT_FALSE(FusedConvGraph::from_serialized(p, (*built)->choice(0), "", kMaxWorkspace).ok());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
}

// Candidates compiled ahead on the precompile pool (FusedConvGraph::precompile) are the plans
// create() would compile itself, in the same order, and compute the same: create() loads them.
TEST(CompiledPlanTest, PrecompiledPlansAreThoseCreateCompiles) {
  if (!engine::cuda_available()) GTEST_SKIP() << "no GPU here: run on the GPU machine";
  // A 1x1 convolution with bias and SiLU (YOLO's most common layer), batch 2.
  FusedConvProblem p;
  p.float16 = true;
  const int64_t n = 2, c = 64, hw = 40, k = 64;
  const int64_t x[4] = {n, c, hw, hw}, w[4] = {k, c, 1, 1}, y[4] = {n, k, hw, hw};
  std::copy_n(x, 4, p.x);
  std::copy_n(w, 4, p.w);
  std::copy_n(y, 4, p.y);
  p.bias = true;
  p.activation = Activation::kSilu;
  constexpr size_t kPlans = 3;

  // Compiled here (in waves on helper threads).
  auto started = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<FusedConvGraph>> direct =
      FusedConvGraph::create(p, kPlans, kMaxWorkspace);
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_GT((*direct)->size(), 0u) << (*direct)->why_empty();
  const double direct_ms = ms_since(started);
  // Compiled ahead (submitting twice compiles once), then taken by create().
  started = std::chrono::steady_clock::now();
  FusedConvGraph::precompile(p, kPlans);
  FusedConvGraph::precompile(p, kPlans);
  StatusOr<std::unique_ptr<FusedConvGraph>> ahead =
      FusedConvGraph::create(p, kPlans, kMaxWorkspace);
  ASSERT_TRUE(ahead.ok()) << ahead.status();
  const double ahead_ms = ms_since(started);
  fmt::print("{} plans: created in {:.1f} ms, precompiled and created in {:.1f} ms\n",
             (*direct)->size(), direct_ms, ahead_ms);
  ASSERT_EQ((*ahead)->size(), (*direct)->size());
  for (size_t i = 0; i < (*direct)->size(); ++i) {
    EXPECT_EQ((*ahead)->choice(i), (*direct)->choice(i));
    EXPECT_EQ((*ahead)->workspace(i), (*direct)->workspace(i));
  }
  // The pool's results were taken: another create() compiles by itself, and agrees.
  StatusOr<std::unique_ptr<FusedConvGraph>> again =
      FusedConvGraph::create(p, kPlans, kMaxWorkspace);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ((*again)->size(), (*direct)->size());

  std::mt19937 rng(13);
  const size_t xs = n * c * hw * hw, ws = k * c, ys = n * k * hw * hw;
  DeviceHalves dx(xs, rng), dw(ws, rng), bias(k, rng), y1(ys, rng), y2(ys, rng);
  for (size_t i = 0; i < (*direct)->size(); ++i) {
    void* workspace = nullptr;
    if ((*direct)->workspace(i) > 0) {
      ASSERT_EQ(cudaMalloc(&workspace, (*direct)->workspace(i)), cudaSuccess);
    }
    FusedConvBuffers b{dx.get(), dw.get(), bias.get(), nullptr, y1.get()};
    ASSERT_TRUE((*direct)->execute(i, b, workspace, nullptr).ok());
    b.y = y2.get();
    ASSERT_TRUE((*ahead)->execute(i, b, workspace, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (workspace != nullptr) cudaFree(workspace);
    EXPECT_EQ(y2.download(), y1.download()) << (*direct)->choice(i);
  }
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace kestrel::runtime::cuda
