// Engine files (.kplan) and timing caches: a saved engine computes exactly what the built one
// did, and every kind of damage or mismatch is a clear error (engine/engine_file.h).
#include "kestrel/engine/engine_file.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "kestrel/base/file.h"
#include "kestrel/engine/builder.h"
#include "kestrel/onnx/importer.h"
#include "kestrel/runtime/tuning.h"

namespace kestrel::engine {
namespace {

namespace fs = std::filesystem;

fs::path shared_dir() {
  const char* dir = std::getenv("KESTREL_SHARED");
  return dir ? fs::path(dir) : fs::path("../shared");
}

#define REQUIRE_SHARED()                                                \
  if (!fs::exists(shared_dir() / "models" / "yolov5n.onnx")) {          \
    GTEST_SKIP() << "needs ../shared (the models); set KESTREL_SHARED"; \
  }

class EngineFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kestrel_engine_file_test_" + std::to_string(static_cast<long>(::getpid())));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string model() const { return (shared_dir() / "models" / "yolov5n.onnx").string(); }

  // yolov5n built with `build` on the reference kernels (bit-reproducible), saved to `path`.
  std::unique_ptr<Engine> build_and_save(const std::string& path, BuildOptions build) {
    StatusOr<std::unique_ptr<ir::Graph>> g = onnx::import_model_file(model());
    EXPECT_TRUE(g.ok()) << g.status();
    build.engine.backend = "cpu";
    build.engine.cpu_reference_only = true;
    // The engine's own choices, as a GPU build records them; and a compiled kernel no kernel of
    // this engine uses, as a timing cache shared with another model offers it.
    build.engine.tuning = {{"cudnn_conv example", "algo 1 math 0"},
                           {compiled_key(), compiled_bytes()}};
    StatusOr<std::unique_ptr<Engine>> e = build_engine(std::move(g).value(), build);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return nullptr;
    (*e)->seed_tuning({{other_compiled_key(), "another model's kernel"}});
    EngineFileInfo info;
    info.model_sha256 = sha256_of_file(model()).value();
    info.model_name = "yolov5n.onnx";
    info.precision = build.precision;
    info.layout = build.layout;
    info.max_batch = build.max_batch;
    const Status saved = save_engine_file(path, **e, info);
    EXPECT_TRUE(saved.ok()) << saved;
    return std::move(e).value();
  }

  // A compiled kernel's entry, as the CUDA convolution records a serialized cuDNN plan: binary,
  // with newlines and a NUL, which neither protobuf strings nor timing caches could hold.
  static std::string compiled_key() {
    return std::string(runtime::kSerializedPlanPrefix) + "cudnn_conv example | graph x";
  }
  static std::string compiled_bytes() { return std::string("{\xff\n\0}\n", 6); }
  static std::string other_compiled_key() {
    return std::string(runtime::kSerializedPlanPrefix) + "cudnn_conv another | graph y";
  }

  static Tensor random_images(int64_t batch) {
    Tensor t = Tensor::allocate(DType::kFloat32, Shape{batch, 3, 640, 640}).value();
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    for (float& v : t.values<float>()) v = u(rng);
    return t;
  }

  static void write_bytes(const std::string& path, const std::string& bytes) {
    ASSERT_TRUE(write_file(path, bytes).ok());
  }

  fs::path dir_;
};

TEST_F(EngineFileTest, LoadedEngineComputesExactlyWhatTheBuiltOneDid) {
  REQUIRE_SHARED();
  // The two ends: the model as exported, and every rewrite (float16, channels-last) applied.
  for (const auto& [layout, precision] : {std::pair{"nchw", "fp32"}, std::pair{"nhwc", "fp16"}}) {
    SCOPED_TRACE(fmt::format("{} {}", layout, precision));
    const std::string path = (dir_ / "y.kplan").string();
    BuildOptions build;
    build.layout = layout;
    build.precision = precision;
    build.max_batch = 1;
    std::unique_ptr<Engine> built = build_and_save(path, build);
    ASSERT_TRUE(built);
    LoadOptions load;
    load.engine.cpu_reference_only = true;
    load.expect_model = model();
    EngineFileInfo info;
    StatusOr<std::unique_ptr<Engine>> loaded = load_engine_file(path, load, &info);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(info.precision, precision);
    EXPECT_EQ(info.layout, layout);
    EXPECT_EQ(info.max_batch, 1);
    EXPECT_EQ(info.backend, "cpu");
    EXPECT_EQ(info.tuning.at("cudnn_conv example"), "algo 1 math 0");
    EXPECT_EQ(info.tuning.at(compiled_key()), compiled_bytes());
    EXPECT_EQ(info.tuning.count(other_compiled_key()), 0u) << "offered, never used: left out";
    EXPECT_EQ((*loaded)->tuning_entries().at(compiled_key()), compiled_bytes());
    EXPECT_EQ((*loaded)->tuning_counts().compiled, 1u);
    EXPECT_EQ((*loaded)->tuning_counts().total(), info.tuning.size());
    EXPECT_EQ((*loaded)->graph().num_nodes(), built->graph().num_nodes());
    EXPECT_EQ((*loaded)->graph().metadata, built->graph().metadata);
    const Tensor x = random_images(1);
    StatusOr<std::vector<Tensor>> want = built->run({{"images", x}});
    StatusOr<std::vector<Tensor>> got = (*loaded)->run({{"images", x}});
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), want->size());
    EXPECT_EQ((*got)[0].shape(), (*want)[0].shape());
    EXPECT_EQ((*got)[0].to_double_vector(), (*want)[0].to_double_vector());
  }
}

TEST_F(EngineFileTest, DamageAndMismatchesAreClearErrors) {
  REQUIRE_SHARED();
  const std::string path = (dir_ / "y.kplan").string();
  BuildOptions build;
  build.max_batch = 1;
  ASSERT_TRUE(build_and_save(path, build));
  const std::string good = read_file(path).value();
  const std::string bad = (dir_ / "bad.kplan").string();

  // A flipped bit anywhere after the preamble: the checksum.
  for (size_t at : {size_t{64}, good.size() / 2, good.size() - 1}) {
    std::string flipped = good;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    write_bytes(bad, flipped);
    StatusOr<EngineFileInfo> info = read_engine_file_info(bad);
    EXPECT_EQ(info.status().code(), StatusCode::kDataLoss) << at << ": " << info.status();
  }
  // Truncated, at every kind of place.
  for (size_t size : {size_t{0}, size_t{10}, size_t{64}, size_t{100}, good.size() - 1}) {
    write_bytes(bad, good.substr(0, size));
    StatusOr<EngineFileInfo> info = read_engine_file_info(bad);
    EXPECT_FALSE(info.ok()) << size;
    EXPECT_NE(info.status().code(), StatusCode::kOk);
  }
  // Declared sizes that do not fit the file.
  {
    std::string huge = good;
    huge[23] = '\x7f';  // header size's top byte
    write_bytes(bad, huge);
    EXPECT_EQ(read_engine_file_info(bad).status().code(), StatusCode::kDataLoss);
  }
  // Not an engine file at all (an ONNX model).
  EXPECT_EQ(read_engine_file_info(model()).status().code(), StatusCode::kInvalidArgument);
  // Another format version.
  {
    std::string other = good;
    other[8] = '\x02';
    write_bytes(bad, other);
    const Status s = read_engine_file_info(bad).status();
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("rebuild"), std::string::npos) << s;
  }
  // Built from another model than the one named.
  {
    LoadOptions load;
    load.expect_model = (shared_dir() / "models" / "yolov5n-b1-op12.onnx").string();
    const Status s = load_engine_file(path, load).status();
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("another version"), std::string::npos) << s;
    // The same when the caller gives the other model's hash instead of letting it be read.
    StatusOr<std::string> other_hash = sha256_of_file(load.expect_model);
    ASSERT_TRUE(other_hash.ok()) << other_hash.status();
    load.expect_model_sha256 = *other_hash;
    EXPECT_EQ(load_engine_file(path, load).status().code(), StatusCode::kFailedPrecondition);
    // And the right hash passes without the file being read.
    StatusOr<std::string> right_hash = sha256_of_file(model());
    ASSERT_TRUE(right_hash.ok()) << right_hash.status();
    load.expect_model = "/nonexistent/model.onnx";
    load.expect_model_sha256 = *right_hash;
    EXPECT_TRUE(load_engine_file(path, load).ok());
  }
  // Missing file.
  EXPECT_EQ(read_engine_file_info((dir_ / "none.kplan").string()).status().code(),
            StatusCode::kNotFound);
}

TEST_F(EngineFileTest, TimingCachesRoundTripAndRefuseAnotherTarget) {
  REQUIRE_SHARED();
  BuildOptions build;
  build.max_batch = 1;
  std::unique_ptr<Engine> e = build_and_save((dir_ / "y.kplan").string(), build);
  ASSERT_TRUE(e);
  const std::string cache = (dir_ / "timing.txt").string();
  EXPECT_EQ(read_timing_cache(cache, e->target()).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(write_timing_cache(cache, *e).ok());
  StatusOr<std::map<std::string, std::string>> read = read_timing_cache(cache, e->target());
  ASSERT_TRUE(read.ok()) << read.status();
  // Every entry, compiled kernels (binary) included, those only offered to this engine too.
  EXPECT_EQ(*read, e->tuning_entries());
  EXPECT_EQ(read->at(compiled_key()), compiled_bytes());
  EXPECT_EQ(read->count(other_compiled_key()), 1u);
  // Base64 of every length modulo 3 comes back byte for byte.
  for (const std::string& bytes :
       {std::string(), std::string("a"), std::string("ab\0", 3), std::string("\xff\xfe\n\t", 4)}) {
    const std::string key =
        std::string(runtime::kSerializedPlanPrefix) + "len" + std::to_string(bytes.size());
    e->seed_tuning({{key, bytes}});
  }
  ASSERT_TRUE(write_timing_cache(cache, *e).ok());
  read = read_timing_cache(cache, e->target());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, e->tuning_entries());
  // Version 1 files (choices only) are still read.
  write_bytes(cache, "kestrel-timing-cache 1\nchoice cudnn_conv x\talgo 1 math 0\n");
  read = read_timing_cache(cache, {});
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->at("cudnn_conv x"), "algo 1 math 0");

  // Measured on a GPU: refused here, naming what differs.
  write_bytes(cache,
              "kestrel-timing-cache 1\ntarget backend=cuda\ntarget gpu=NVIDIA H100 80GB HBM3\n"
              "choice cudnn_conv x\talgo 1 math 0\n");
  const Status s = read_timing_cache(cache, e->target()).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("backend"), std::string::npos) << s;
  // Malformed.
  write_bytes(cache, "kestrel-timing-cache 1\nchoice no tab here\n");
  EXPECT_EQ(read_timing_cache(cache, e->target()).status().code(), StatusCode::kDataLoss);
  for (const char* bad :
       {"compiled k\tnot base64!", "compiled k\tabc", "compiled no tab",
        "compiled k\tQQ==    ", "compiled k\tQ=QQ", "compiled k\tQ===", "compiled k\tQQ\rQ"}) {
    write_bytes(cache, std::string("kestrel-timing-cache 2\n") + bad + "\n");
    EXPECT_EQ(read_timing_cache(cache, e->target()).status().code(), StatusCode::kDataLoss) << bad;
  }
  write_bytes(cache, "something else\n");
  EXPECT_EQ(read_timing_cache(cache, e->target()).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace kestrel::engine
