// serve_core: configuration parsing, instance placement, the dynamic batcher's behaviour (batch
// choice, batching, delays, queue policy, priorities, cancellation), statistics, metrics, and the
// model lifecycle on a tiny model (with GPU placement where this machine has GPUs).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "kestrel/serve/core/dynamic_batcher.h"
#include "kestrel/serve/core/gpu_metrics.h"
#include "kestrel/serve/core/inference_server.h"
#include "kestrel/serve/core/instance_placement.h"
#include "kestrel/serve/core/metrics.h"
#include "kestrel/serve/core/model_config.h"
#include "kestrel/serve/core/shared_memory.h"

namespace kestrel::serve {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// ---- configuration ----

TEST(ModelConfigTest, ParsesTritonConfig) {
  auto config = parse_model_config(R"(
    name: "m"
    max_batch_size: 8
    input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
    dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100
      priority_levels: 2 default_priority_level: 2
      default_queue_policy { max_queue_size: 3 default_timeout_microseconds: 5 } }
    instance_group [ { count: 2 kind: KIND_CPU } ]
    parameters { key: "score_threshold" value: { string_value: "0.5" } }
  )",
                                   "config.pbtxt");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->dynamic_batching().default_queue_policy().max_queue_size(), 3u);
  auto params = kestrel_parameters(*config);
  ASSERT_TRUE(params.ok());
  EXPECT_FLOAT_EQ(params->detection.score_threshold, 0.5f);
}

TEST(ModelConfigTest, ReportsUnknownFieldWithLineAndColumn) {
  auto config =
      parse_model_config("max_batch_size: 4\n  sequence_batching { }\n", "m/config.pbtxt");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find("m/config.pbtxt:2:"), std::string::npos)
      << config.status();
  EXPECT_NE(config.status().message().find("sequence_batching"), std::string::npos);
}

TEST(ModelConfigTest, RejectsBadValues) {
  for (const char* text : {
           "max_batch_size: -1",
           "max_batch_size: 4 dynamic_batching { preferred_batch_size: 8 }",
           "max_batch_size: 4 dynamic_batching { priority_levels: 2 default_priority_level: 3 }",
           "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ -2 ] } ]",
           "input [ { name: \"x\" data_type: TYPE_STRING dims: [ 1 ] } ]",
           "input [ { name: \"x\" dims: [ 1 ] reshape { shape: [ 1 ] } } ]",
           "instance_group [ { count: -1 } ]",
           "parameters { key: \"precision\" value: { string_value: \"int4\" } }",
           "parameters { key: \"nms\" value: { string_value: \"1\" } }",
           "max_batch_size: \"four\"",
       }) {
    auto config = parse_model_config(text, "c");
    EXPECT_FALSE(config.ok()) << text;
    if (!config.ok()) {
      EXPECT_TRUE(config.status().code() == StatusCode::kInvalidArgument ||
                  config.status().code() == StatusCode::kUnimplemented);
    }
  }
}

// ---- instance placement ----

inference::ModelConfig config_with_groups(const std::string& groups) {
  auto config = parse_model_config("name: \"m\"\n" + groups, "config.pbtxt");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : inference::ModelConfig();
}

InstancePlacement gpu(int index, const std::string& group = "m_0") {
  return {group, "cuda", index};
}
InstancePlacement cpu(const std::string& group = "m_0") { return {group, "cpu", -1}; }

using Placements = std::vector<InstancePlacement>;

TEST(InstancePlacementTest, WithoutGpusListAGpuGroupUsesEveryVisibleGpu) {
  auto config = config_with_groups("instance_group [ { count: 2 kind: KIND_GPU } ]");
  auto placed = place_instances(config, 3);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(*placed, (Placements{gpu(0), gpu(0), gpu(1), gpu(1), gpu(2), gpu(2)}));
}

TEST(InstancePlacementTest, CountInstancesOnEachListedGpu) {
  auto config = config_with_groups("instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] } ]");
  auto placed = place_instances(config, 2);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(*placed, (Placements{gpu(0), gpu(0), gpu(1), gpu(1)}));
  // The listed order is kept, and only the listed GPUs are used.
  config = config_with_groups("instance_group [ { kind: KIND_GPU gpus: [ 3, 1 ] } ]");
  placed = place_instances(config, 4);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(*placed, (Placements{gpu(3), gpu(1)}));
}

TEST(InstancePlacementTest, KindCpuRunsOnTheCpuEvenWithGpus) {
  auto config = config_with_groups(
      "instance_group [ { count: 3 kind: KIND_CPU }, { name: \"g\" kind: KIND_GPU gpus: [ 1 ] } ]");
  auto placed = place_instances(config, 2);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(*placed, (Placements{cpu(), cpu(), cpu(), gpu(1, "g")}));
  EXPECT_FALSE(place_instances(config_with_groups("instance_group [ { kind: KIND_CPU } ]"), 0)
                   ->front()
                   .on_gpu());
}

TEST(InstancePlacementTest, AutoKindIsTheGpuWhenThereIsOne) {
  // No instance_group, or KIND_AUTO with count 0: one instance per GPU, else one on the CPU.
  const inference::ModelConfig none = config_with_groups("");
  EXPECT_EQ(*place_instances(none, 2), (Placements{gpu(0), gpu(1)}));
  EXPECT_EQ(*place_instances(none, 0), (Placements{cpu()}));
  auto config = config_with_groups("instance_group [ { count: 2 } ]");
  EXPECT_EQ(*place_instances(config, 1), (Placements{gpu(0), gpu(0)}));
  EXPECT_EQ(*place_instances(config, 0), (Placements{cpu(), cpu()}));
  // Under --backend cuda a KIND_AUTO group needs a GPU.
  auto no_gpu = place_instances(config, 0, "cuda");
  ASSERT_FALSE(no_gpu.ok());
  EXPECT_NE(no_gpu.status().message().find("KIND_AUTO under --backend cuda"), std::string::npos)
      << no_gpu.status();
}

TEST(InstancePlacementTest, ServerBackendCpuKeepsTheNumberOfInstances) {
  auto config = config_with_groups("instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] } ]");
  auto placed = place_instances(config, 0, "cpu");
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(*placed, (Placements{cpu(), cpu(), cpu(), cpu()}));
  EXPECT_EQ(place_instances(config, 2, "metal").status().code(), StatusCode::kInvalidArgument);
}

TEST(InstancePlacementTest, GpuIndexThatDoesNotExistNamesModelIndexAndVisibleCount) {
  auto config = config_with_groups("instance_group [ { kind: KIND_GPU gpus: [ 0, 1 ] } ]");
  auto placed = place_instances(config, 1);
  ASSERT_FALSE(placed.ok());
  EXPECT_EQ(placed.status().code(), StatusCode::kInvalidArgument);
  const std::string message(placed.status().message());
  EXPECT_NE(message.find("model 'm'"), std::string::npos) << message;
  EXPECT_NE(message.find("'m_0' lists GPU 1"), std::string::npos) << message;
  EXPECT_NE(message.find("1 GPU is visible"), std::string::npos) << message;

  placed = place_instances(config, 0);  // this machine, CI
  ASSERT_FALSE(placed.ok());
  EXPECT_NE(placed.status().message().find("lists GPU 0, but no GPU is visible"), std::string::npos)
      << placed.status();
  placed = place_instances(config_with_groups("instance_group [ { kind: KIND_GPU } ]"), 0);
  ASSERT_FALSE(placed.ok());
  EXPECT_NE(placed.status().message().find("needs a GPU, but no GPU is visible"), std::string::npos)
      << placed.status();
  placed = place_instances(config_with_groups("instance_group [ { gpus: [ 4 ] } ]"), 2);
  ASSERT_FALSE(placed.ok());
  EXPECT_NE(placed.status().message().find("2 GPUs are visible to this server (indices 0..1)"),
            std::string::npos)
      << placed.status();
}

TEST(InstancePlacementTest, NegativeAndDuplicateIndicesAreRefused) {
  // parse_model_config refuses a negative index already; placement checks on its own too.
  EXPECT_FALSE(parse_model_config("instance_group [ { kind: KIND_GPU gpus: [ -1 ] } ]", "c").ok());
  inference::ModelConfig config;
  config.set_name("m");
  auto* group = config.add_instance_group();
  group->set_kind(inference::ModelInstanceGroup::KIND_GPU);
  group->add_gpus(-1);
  auto placed = place_instances(config, 2);
  ASSERT_FALSE(placed.ok());
  EXPECT_EQ(placed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(placed.status().message().find("GPU index -1 is negative"), std::string::npos)
      << placed.status();

  placed = place_instances(
      config_with_groups("instance_group [ { count: 2 kind: KIND_GPU gpus: [ 1, 0, 1 ] } ]"), 2);
  ASSERT_FALSE(placed.ok());
  EXPECT_EQ(placed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(placed.status().message().find("lists GPU 1 twice"), std::string::npos)
      << placed.status();
  // The same GPU in two groups is fine: each group is its own set of instances.
  placed = place_instances(config_with_groups("instance_group [ { name: \"a\" gpus: [ 0 ] }, "
                                              "{ name: \"b\" gpus: [ 0 ] } ]"),
                           1);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(*placed, (Placements{gpu(0, "a"), gpu(0, "b")}));
}

TEST(InstancePlacementTest, PlacedGroupsInTritonsNormalizedForm) {
  const Placements placed = {cpu("m_0"),    cpu("m_0"),    gpu(0, "m_1"),
                             gpu(0, "m_1"), gpu(2, "m_1"), gpu(2, "m_1")};
  const auto groups = placed_instance_groups(placed);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].name(), "m_0");
  EXPECT_EQ(groups[0].kind(), inference::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(groups[0].count(), 2);
  EXPECT_EQ(groups[0].gpus_size(), 0);
  EXPECT_EQ(groups[1].kind(), inference::ModelInstanceGroup::KIND_GPU);
  EXPECT_EQ(groups[1].count(), 2);
  EXPECT_EQ(std::vector<int>(groups[1].gpus().begin(), groups[1].gpus().end()),
            (std::vector<int>{0, 2}));
  EXPECT_EQ(gpu(2).device_name(), "GPU 2");
  EXPECT_EQ(cpu().device_name(), "CPU");
}

// ---- the batch choice (dynamic_batcher.h's rule) ----

TEST(ChooseBatchTest, FullBatchRunsAtOnce) {
  const int64_t rows[] = {1, 2, 3, 4};
  EXPECT_EQ(choose_batch(rows, 4, {}, false), 4u);
  const int64_t multi_row[] = {3, 8};  // requests of several rows each
  EXPECT_EQ(choose_batch(multi_row, 8, {}, false), 2u);
}

TEST(ChooseBatchTest, WaitsUntilTheDelayThenSendsWhatItHas) {
  const int64_t rows[] = {1, 2, 3};
  const int preferred[] = {4, 8, 16};
  EXPECT_EQ(choose_batch(rows, 16, preferred, false), 0u);
  EXPECT_EQ(choose_batch(rows, 16, preferred, true), 3u);
  EXPECT_EQ(choose_batch({}, 16, preferred, true), 0u);
}

TEST(ChooseBatchTest, LargestPreferredSizeThatFitsRatherThanAnOddSize) {
  const int preferred[] = {4, 8, 16};
  const int64_t five[] = {1, 2, 3, 4, 5};
  EXPECT_EQ(choose_batch(five, 16, preferred, false), 4u);
  const int64_t eleven[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  EXPECT_EQ(choose_batch(eleven, 16, preferred, false), 8u);
  // Past the delay, everything queued runs (an odd size included).
  EXPECT_EQ(choose_batch(five, 16, preferred, true), 5u);
  // Multi-row requests: only sizes a prefix reaches count (3 + 2 = 5 skips 4).
  const int64_t skips_four[] = {3, 5, 9};
  EXPECT_EQ(choose_batch(skips_four, 16, preferred, false), 0u);
  const int64_t reaches_eight[] = {3, 5, 8, 9};
  EXPECT_EQ(choose_batch(reaches_eight, 16, preferred, false), 3u);
}

// ---- dynamic batcher (with a fake model: y = x * 2, recording batch sizes) ----

struct FakeModel {
  std::mutex mutex;
  std::vector<int64_t> batches;
  std::chrono::milliseconds run_time{0};
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  std::vector<std::thread::id> threads;  // the thread each batch ran on
  // When set, the first batch waits for it before answering.
  std::shared_future<void> gate;

  BatchExecutor executor() {
    return
        [this](const std::map<std::string, Tensor>& inputs, int) -> StatusOr<std::vector<Tensor>> {
          int now = ++running;
          int prev = max_running.load();
          while (now > prev && !max_running.compare_exchange_weak(prev, now)) {
          }
          const Tensor& x = inputs.at("x");
          bool first = false;
          {
            std::lock_guard lock(mutex);
            first = batches.empty();
            batches.push_back(x.shape()[0]);
            threads.push_back(std::this_thread::get_id());
          }
          std::this_thread::sleep_for(run_time);
          if (first && gate.valid()) gate.wait();
          KS_ASSIGN_OR_RETURN(Tensor y, Tensor::allocate(DType::kFloat32, x.shape()));
          for (int64_t i = 0; i < x.num_elements(); ++i)
            y.data<float>()[i] = x.data<float>()[i] * 2;
          --running;
          return std::vector<Tensor>{y};
        };
  }
};

InferRequest make_request(float value, int64_t rows = 1, uint64_t priority = 0) {
  InferRequest r;
  r.model_name = "fake";
  std::vector<float> v(static_cast<size_t>(rows * 4), value);
  r.inputs.push_back({"x", Tensor::from_vector<float>(Shape{rows, 4}, v)});
  r.priority = priority;
  return r;
}

// Enqueues and returns a future of the result.
std::future<StatusOr<InferResponse>> submit(DynamicBatcher& b, InferRequest r) {
  auto promise = std::make_shared<std::promise<StatusOr<InferResponse>>>();
  auto future = promise->get_future();
  Status s = b.enqueue(
      std::move(r), [promise](StatusOr<InferResponse> res) { promise->set_value(std::move(res)); });
  if (!s.ok()) promise->set_value(s);
  return future;
}

TEST(DynamicBatcherTest, BatchesConcurrentRequestsAndSplitsOutputs) {
  FakeModel model;
  BatcherOptions o;
  o.max_batch_size = 4;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 200000;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  std::vector<std::future<StatusOr<InferResponse>>> futures;
  for (int i = 0; i < 8; ++i) futures.push_back(submit(**b, make_request(static_cast<float>(i))));
  for (int i = 0; i < 8; ++i) {
    auto r = futures[i].get();
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->outputs.size(), 1u);
    const Tensor& y = r->outputs[0].tensor;
    EXPECT_EQ(y.shape(), (Shape{1, 4}));
    EXPECT_FLOAT_EQ(y.data<float>()[3], 2.0f * static_cast<float>(i));
  }
  EXPECT_EQ(model.batches, (std::vector<int64_t>{4, 4}));
}

// Image requests (the detect endpoint's) of different sizes share a batch: the image executor
// gets every image in order and its output rows go back to the request each came from; tensor
// requests queued in between batch among themselves; a batcher without an image executor refuses
// images.
TEST(DynamicBatcherTest, ImageRequestsBatchTogetherWhateverTheirSizes) {
  FakeModel model;
  std::mutex mutex;
  std::vector<std::vector<int64_t>> image_batches;  // the widths of each batch's images
  // The preparer turns each image into one row [width / 2] x 4; the model doubles it.
  ImageBatchPreparer images = [&](std::span<const Tensor> batch,
                                  int) -> StatusOr<std::map<std::string, Tensor>> {
    std::vector<int64_t> widths;
    KS_ASSIGN_OR_RETURN(
        Tensor x, Tensor::allocate(DType::kFloat32, Shape{static_cast<int64_t>(batch.size()), 4}));
    for (size_t i = 0; i < batch.size(); ++i) {
      widths.push_back(batch[i].shape()[1]);
      for (int k = 0; k < 4; ++k)
        x.data<float>()[i * 4 + k] = static_cast<float>(batch[i].shape()[1]) / 2;
    }
    std::lock_guard lock(mutex);
    image_batches.push_back(widths);
    return std::map<std::string, Tensor>{{"x", x}};
  };
  BatcherOptions o;
  o.max_batch_size = 8;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 200000;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr, images);
  ASSERT_TRUE(b.ok());
  auto image_request = [](std::vector<int64_t> widths) {
    InferRequest r;
    r.model_name = "fake";
    for (int64_t w : widths)
      r.images.push_back(Tensor::allocate(DType::kUInt8, Shape{3, w, 3}).value());
    return r;
  };
  auto a = submit(**b, image_request({10, 11}));
  auto t = submit(**b, make_request(5, 2));
  auto c = submit(**b, image_request({12, 13, 14}));
  auto d = submit(**b, image_request({15, 16, 17}));
  std::vector<std::vector<float>> want = {{10, 11}, {12, 13, 14}, {15, 16, 17}};
  std::vector<StatusOr<InferResponse>> got;
  got.push_back(a.get());
  got.push_back(c.get());
  got.push_back(d.get());
  for (size_t r = 0; r < got.size(); ++r) {
    ASSERT_TRUE(got[r].ok()) << got[r].status();
    const Tensor& y = got[r]->outputs[0].tensor;
    ASSERT_EQ(y.shape()[0], static_cast<int64_t>(want[r].size()));
    for (size_t i = 0; i < want[r].size(); ++i) EXPECT_EQ(y.data<float>()[i * 4], want[r][i]);
  }
  ASSERT_TRUE(t.get().ok());
  EXPECT_EQ(image_batches, (std::vector<std::vector<int64_t>>{{10, 11, 12, 13, 14, 15, 16, 17}}));
  std::sort(model.batches.begin(), model.batches.end());
  EXPECT_EQ(model.batches, (std::vector<int64_t>{2, 8}));  // the tensor request alone, the images

  auto plain = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(plain.ok());
  StatusOr<InferResponse> refused = submit(**plain, image_request({10})).get();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status();
}

// With an input allocator, every batch's inputs are gathered into the memory it gives, a lone
// request's too, and each request still gets its own rows back.
TEST(DynamicBatcherTest, InputsAreGatheredIntoTheAllocatorsMemory) {
  FakeModel model;
  std::mutex mutex;
  std::vector<std::pair<int64_t, int>> allocations;  // rows, instance
  InputAllocator allocate = [&](DType dtype, const Shape& shape, int instance) {
    std::lock_guard lock(mutex);
    allocations.push_back({shape[0], instance});
    return Tensor::allocate(dtype, shape);
  };
  BatcherOptions o;
  o.max_batch_size = 8;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 200000;
  o.preferred_batch_sizes = {3};
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr, nullptr, allocate);
  ASSERT_TRUE(b.ok());
  auto f1 = submit(**b, make_request(1, 1));
  auto f2 = submit(**b, make_request(2, 2));
  for (auto* f : {&f1, &f2}) {
    StatusOr<InferResponse> r = f->get();
    ASSERT_TRUE(r.ok()) << r.status();
  }
  auto lone = submit(**b, make_request(5, 1)).get();  // waits out the delay, runs alone
  ASSERT_TRUE(lone.ok()) << lone.status();
  EXPECT_EQ(lone->outputs[0].tensor.data<float>()[0], 10.0f);
  EXPECT_EQ(model.batches, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(allocations, (std::vector<std::pair<int64_t, int>>{{3, 0}, {1, 0}}));

  // An allocator that hands out the wrong memory fails the batch, not the process.
  InputAllocator wrong = [](DType, const Shape&, int) {
    return Tensor::allocate(DType::kFloat32, Shape{1});
  };
  auto bad = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr, nullptr, wrong);
  ASSERT_TRUE(bad.ok());
  StatusOr<InferResponse> refused = submit(**bad, make_request(1, 1)).get();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInternal) << refused.status();
}

// Batches of several MB are gathered by several threads in byte ranges that cross the requests'
// boundaries; every byte must still land in its row.
TEST(DynamicBatcherTest, LargeBatchesAreGatheredExactly) {
  FakeModel model;
  BatcherOptions o;
  constexpr int64_t kRows = 300001;  // 4.8 MB per request, not a multiple of any chunk
  o.max_batch_size = 4 * kRows;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 5000000;
  o.preferred_batch_sizes = {3 * static_cast<int>(kRows)};
  InputAllocator allocate = [](DType dtype, const Shape& shape, int) {
    return Tensor::allocate(dtype, shape);
  };
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr, nullptr, allocate);
  ASSERT_TRUE(b.ok());
  std::vector<std::future<StatusOr<InferResponse>>> futures;
  for (int r = 0; r < 3; ++r) {
    InferRequest req;
    std::vector<float> v(static_cast<size_t>(kRows * 4));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((r * 7 + i * 13) % 1000003);
    req.inputs.push_back({"x", Tensor::from_vector<float>(Shape{kRows, 4}, v)});
    futures.push_back(submit(**b, std::move(req)));
  }
  for (int r = 0; r < 3; ++r) {
    StatusOr<InferResponse> res = futures[static_cast<size_t>(r)].get();
    ASSERT_TRUE(res.ok()) << res.status();
    const Tensor& y = res->outputs[0].tensor;
    ASSERT_EQ(y.shape(), (Shape{kRows, 4}));
    size_t wrong = 0;
    for (size_t i = 0; i < static_cast<size_t>(kRows * 4); ++i)
      wrong += y.data<float>()[i] != 2.0f * static_cast<float>((r * 7 + i * 13) % 1000003);
    EXPECT_EQ(wrong, 0u) << "request " << r;
  }
  EXPECT_EQ(model.batches, (std::vector<int64_t>{3 * kRows}));
}

// The request's input relabelled as living on GPU 0 (the bytes stay in host memory, standing in
// for a CUDA shared-memory region, so that the fake model can read them).
InferRequest gpu_request(float value, int64_t rows) {
  InferRequest r = make_request(value, rows);
  auto host = std::make_shared<Tensor>(r.inputs[0].tensor);
  r.inputs[0].tensor =
      Tensor::wrap(host->dtype(), host->shape(), host, host->raw_data(), Device::cuda(0));
  return r;
}

// Inputs in GPU memory batch only with inputs in GPU memory; several requests' are gathered by
// the device gatherer (never by the host allocator, which would read device addresses), a lone
// request's go to the executor as they are, and without a gatherer such batches fail cleanly.
TEST(DynamicBatcherTest, InputsInGpuMemoryAreGatheredOnTheDevice) {
  FakeModel model;
  std::mutex mutex;
  std::vector<int64_t> device_gathers, host_gathers;  // rows of each
  DeviceInputGatherer gather = [&](std::span<const Tensor> parts, int) -> StatusOr<Tensor> {
    int64_t rows = 0;
    for (const Tensor& p : parts) {
      EXPECT_FALSE(p.is_cpu());
      rows += p.shape()[0];
    }
    KS_ASSIGN_OR_RETURN(Tensor out, Tensor::allocate(DType::kFloat32, Shape{rows, 4}));
    size_t at = 0;
    for (const Tensor& p : parts) {
      std::memcpy(static_cast<std::byte*>(out.raw_data()) + at, p.raw_data(), p.nbytes());
      at += p.nbytes();
    }
    std::lock_guard lock(mutex);
    device_gathers.push_back(rows);
    return out;
  };
  InputAllocator allocate = [&](DType dtype, const Shape& shape, int) {
    std::lock_guard lock(mutex);
    host_gathers.push_back(shape[0]);
    return Tensor::allocate(dtype, shape);
  };
  BatcherOptions o;
  o.max_batch_size = 8;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 200000;
  o.preferred_batch_sizes = {3};
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr, nullptr, allocate, gather);
  ASSERT_TRUE(b.ok());
  auto f1 = submit(**b, gpu_request(1, 1));
  auto f2 = submit(**b, gpu_request(2, 2));
  auto f3 = submit(**b, make_request(3, 2));  // host memory: not in the GPU requests' batch
  const std::pair<std::future<StatusOr<InferResponse>>*, float> expected[] = {
      {&f1, 2.0f}, {&f2, 4.0f}, {&f3, 6.0f}};
  for (const auto& [f, value] : expected) {
    StatusOr<InferResponse> r = f->get();
    ASSERT_TRUE(r.ok()) << r.status();
    const Tensor& y = r->outputs[0].tensor;
    for (int64_t i = 0; i < y.num_elements(); ++i) EXPECT_EQ(y.data<float>()[i], value);
  }
  auto lone = submit(**b, gpu_request(5, 1)).get();  // waits out the delay, runs as it is
  ASSERT_TRUE(lone.ok()) << lone.status();
  EXPECT_EQ(lone->outputs[0].tensor.data<float>()[0], 10.0f);
  EXPECT_EQ(model.batches, (std::vector<int64_t>{3, 2, 1}));
  EXPECT_EQ(device_gathers, (std::vector<int64_t>{3}));
  EXPECT_EQ(host_gathers, (std::vector<int64_t>{2}));

  auto no_gatherer = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr, nullptr, allocate);
  ASSERT_TRUE(no_gatherer.ok());
  auto g1 = submit(**no_gatherer, gpu_request(1, 1));
  auto g2 = submit(**no_gatherer, gpu_request(1, 2));
  for (auto* f : {&g1, &g2}) {
    StatusOr<InferResponse> r = f->get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status();
  }
}

TEST(DynamicBatcherTest, PreferredBatchSizeRunsWithoutWaiting) {
  FakeModel model;
  BatcherOptions o;
  o.max_batch_size = 8;
  o.dynamic_batching = true;
  o.preferred_batch_sizes = {2};
  o.max_queue_delay_us = 10'000'000;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto start = std::chrono::steady_clock::now();
  auto f1 = submit(**b, make_request(1, 1));
  auto f2 = submit(**b, make_request(2, 1));
  ASSERT_TRUE(f1.get().ok());
  ASSERT_TRUE(f2.get().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(model.batches, (std::vector<int64_t>{2}));
}

TEST(DynamicBatcherTest, WarmSizesArePreferredWithoutConfiguredOnes) {
  FakeModel model;
  BatcherOptions o;
  o.max_batch_size = 8;
  o.dynamic_batching = true;
  o.warm_batch_sizes = {1, 4, 8};  // 1 never counts: lone requests still wait for company
  o.max_queue_delay_us = 300000;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  std::vector<std::future<StatusOr<InferResponse>>> f;
  for (int i = 0; i < 5; ++i) f.push_back(submit(**b, make_request(static_cast<float>(i))));
  for (auto& x : f) ASSERT_TRUE(x.get().ok());
  // Four at once (a warm size), the fifth alone after the delay; not one odd batch of five.
  EXPECT_EQ(model.batches, (std::vector<int64_t>{4, 1}));

  // Configured preferred sizes win over warm ones.
  FakeModel configured;
  o.preferred_batch_sizes = {3};
  auto c = DynamicBatcher::create(o, {"y"}, configured.executor(), nullptr);
  ASSERT_TRUE(c.ok());
  f.clear();
  for (int i = 0; i < 4; ++i) f.push_back(submit(**c, make_request(static_cast<float>(i))));
  for (auto& x : f) ASSERT_TRUE(x.get().ok());
  EXPECT_EQ(configured.batches, (std::vector<int64_t>{3, 1}));
}

TEST(DynamicBatcherTest, WaitsAtMostMaxQueueDelay) {
  FakeModel model;
  BatcherOptions o;
  o.max_batch_size = 8;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 30000;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(submit(**b, make_request(1, 3)).get().ok());
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 29ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(model.batches, (std::vector<int64_t>{3}));
}

TEST(DynamicBatcherTest, FullQueueAnswersUnavailableImmediately) {
  FakeModel model;
  model.run_time = 300ms;
  BatcherOptions o;
  o.run_when_idle = false;  // a worker holds the first request while the test goes on
  o.max_batch_size = 1;
  o.dynamic_batching = true;
  o.max_queue_size = 2;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto running = submit(**b, make_request(1));
  std::this_thread::sleep_for(50ms);  // the worker has taken the first request
  auto q1 = submit(**b, make_request(2));
  auto q2 = submit(**b, make_request(3));
  auto start = std::chrono::steady_clock::now();
  auto refused = submit(**b, make_request(4)).get();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 100ms);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(running.get().ok());
  EXPECT_TRUE(q1.get().ok());
  EXPECT_TRUE(q2.get().ok());
}

TEST(DynamicBatcherTest, TimedOutRequestAnswersUnavailable) {
  FakeModel model;
  model.run_time = 200ms;
  BatcherOptions o;
  o.run_when_idle = false;  // a worker holds the first request while the test goes on
  o.max_batch_size = 1;
  o.dynamic_batching = true;
  o.default_timeout_us = 20000;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto first = submit(**b, make_request(1));
  std::this_thread::sleep_for(20ms);
  auto second = submit(**b, make_request(2)).get();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(first.get().ok());
}

TEST(DynamicBatcherTest, CancelledRequestNeverRuns) {
  FakeModel model;
  model.run_time = 150ms;
  BatcherOptions o;
  o.run_when_idle = false;  // a worker holds the first request while the test goes on
  o.max_batch_size = 1;
  o.dynamic_batching = true;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto first = submit(**b, make_request(1));
  std::this_thread::sleep_for(20ms);
  InferRequest r = make_request(2);
  r.cancel = std::make_shared<CancelToken>();
  auto cancelled = submit(**b, r);
  r.cancel->cancel();
  auto result = cancelled.get();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kCancelled);
  EXPECT_TRUE(first.get().ok());
  EXPECT_EQ(model.batches.size(), 1u);
}

TEST(DynamicBatcherTest, HigherPriorityRunsFirst) {
  FakeModel model;
  model.run_time = 100ms;
  BatcherOptions o;
  o.run_when_idle = false;  // a worker holds the first request while the test goes on
  o.max_batch_size = 1;
  o.dynamic_batching = true;
  o.priority_levels = 2;
  o.default_priority_level = 2;
  std::vector<int> order;
  std::mutex order_mutex;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto blocker = submit(**b, make_request(0));
  std::this_thread::sleep_for(20ms);
  std::vector<std::future<void>> done;
  for (auto [v, prio] : {std::pair{1.0f, 2u}, std::pair{2.0f, 1u}}) {
    float value = v;
    auto p = std::make_shared<std::promise<void>>();
    done.push_back(p->get_future());
    ASSERT_TRUE((*b)->enqueue(make_request(value, 1, prio),
                              [&, p, value](StatusOr<InferResponse>) {
                                std::lock_guard lock(order_mutex);
                                order.push_back(static_cast<int>(value));
                                p->set_value();
                              })
                    .ok());
  }
  for (auto& f : done) f.get();
  EXPECT_TRUE(blocker.get().ok());
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

TEST(DynamicBatcherTest, InstancesRunConcurrently) {
  FakeModel model;
  model.run_time = 100ms;
  BatcherOptions o;
  o.run_when_idle = false;  // a worker holds the first request while the test goes on
  o.max_batch_size = 1;
  o.instance_count = 3;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  std::vector<std::future<StatusOr<InferResponse>>> f;
  for (int i = 0; i < 3; ++i) f.push_back(submit(**b, make_request(1)));
  for (auto& x : f) EXPECT_TRUE(x.get().ok());
  EXPECT_EQ(model.max_running.load(), 3);
}

// A request that finds the model idle runs on the caller's thread, its answer given before
// enqueue() returns; one that finds a request running that way goes to a worker, on another
// instance when one is free, and is not lost when none is.
TEST(DynamicBatcherTest, IdleModelRunsTheRequestOnTheCallersThread) {
  for (int instances : {1, 2}) {
    SCOPED_TRACE(fmt::format("{} instances", instances));
    FakeModel model;
    std::promise<void> open;
    model.gate = open.get_future().share();
    BatcherOptions o;
    o.max_batch_size = 4;
    o.instance_count = instances;
    auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
    ASSERT_TRUE(b.ok());
    // The first request runs on this helper thread and holds its instance until the gate opens.
    std::promise<StatusOr<InferResponse>> answer;
    std::future<StatusOr<InferResponse>> first = answer.get_future();
    bool returned = false;  // set by the helper once enqueue() returned
    std::thread caller([&] {
      Status s = (*b)->enqueue(make_request(1), [&](StatusOr<InferResponse> r) {
        EXPECT_FALSE(returned);
        answer.set_value(std::move(r));
      });
      EXPECT_TRUE(s.ok()) << s;
      returned = true;
    });
    while (model.running.load() == 0) std::this_thread::sleep_for(1ms);
    auto second = submit(**b, make_request(2));
    if (instances == 2) {
      // The free instance's worker takes it while the first is still running.
      EXPECT_EQ(second.wait_for(10s), std::future_status::ready);
      EXPECT_EQ(first.wait_for(0s), std::future_status::timeout);
    } else {
      EXPECT_EQ(second.wait_for(50ms), std::future_status::timeout);
    }
    open.set_value();
    caller.join();
    ASSERT_TRUE(returned);
    auto r1 = first.get(), r2 = second.get();
    ASSERT_TRUE(r1.ok()) << r1.status();
    ASSERT_TRUE(r2.ok()) << r2.status();
    EXPECT_EQ(r1->outputs[0].tensor.data<float>()[0], 2.0f);
    EXPECT_EQ(r2->outputs[0].tensor.data<float>()[0], 4.0f);
    ASSERT_EQ(model.threads.size(), 2u);
    EXPECT_NE(model.threads[1], model.threads[0]);  // the second ran on a worker
    EXPECT_NE(model.threads[1], std::this_thread::get_id());
  }
  // A lone request on an idle model: this thread, answered before enqueue() returns.
  FakeModel model;
  BatcherOptions o;
  o.max_batch_size = 4;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto lone = submit(**b, make_request(3));
  ASSERT_EQ(lone.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(lone.get().ok());
  EXPECT_EQ(model.threads, (std::vector<std::thread::id>{std::this_thread::get_id()}));
}

// A request that the batch rule would hold for company (a queue delay, no preferred size reached)
// does not run on the caller's thread: it waits, and batches with the next one.
TEST(DynamicBatcherTest, RequestWaitingForCompanyDoesNotRunOnTheCallersThread) {
  FakeModel model;
  BatcherOptions o;
  o.max_batch_size = 4;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 10'000'000;
  o.preferred_batch_sizes = {2};
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), nullptr);
  ASSERT_TRUE(b.ok());
  auto f1 = submit(**b, make_request(1));
  EXPECT_EQ(f1.wait_for(20ms), std::future_status::timeout);
  auto f2 = submit(**b, make_request(2));  // with it, a preferred size: they run together
  ASSERT_TRUE(f1.get().ok());
  ASSERT_TRUE(f2.get().ok());
  // A preferred size on its own runs at once, here (once the worker is done with the batch).
  while ((*b)->pending() > 0) std::this_thread::sleep_for(1ms);
  auto f3 = submit(**b, make_request(3, 2));
  ASSERT_EQ(f3.wait_for(0s), std::future_status::ready);
  ASSERT_TRUE(f3.get().ok());
  EXPECT_EQ(model.batches, (std::vector<int64_t>{2, 2}));
  ASSERT_EQ(model.threads.size(), 2u);
  EXPECT_NE(model.threads[0], std::this_thread::get_id());
  EXPECT_EQ(model.threads[1], std::this_thread::get_id());
}

TEST(DynamicBatcherTest, RecordsStatisticsAndMetrics) {
  FakeModel model;
  ModelStatistics stats;
  BatcherOptions o;
  o.max_batch_size = 4;
  o.dynamic_batching = true;
  o.max_queue_delay_us = 100000;
  auto b = DynamicBatcher::create(o, {"y"}, model.executor(), &stats);
  ASSERT_TRUE(b.ok());
  std::vector<std::future<StatusOr<InferResponse>>> f;
  for (int i = 0; i < 4; ++i) f.push_back(submit(**b, make_request(1)));
  for (auto& x : f) ASSERT_TRUE(x.get().ok());
  auto snap = stats.snapshot();
  EXPECT_EQ(snap.proto.inference_stats().success().count(), 4u);
  EXPECT_EQ(snap.proto.inference_count(), 4u);
  EXPECT_EQ(snap.proto.execution_count(), 1u);
  ASSERT_EQ(snap.proto.batch_stats_size(), 1);
  EXPECT_EQ(snap.proto.batch_stats(0).batch_size(), 4u);
  ModelMetrics m{"fake", "1", snap, 0};
  std::string text = render_metrics({&m, 1});
  EXPECT_NE(text.find("nv_inference_request_success{model=\"fake\",version=\"1\"} 4\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("nv_inference_exec_count{model=\"fake\",version=\"1\"} 1\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("kestrel_inference_batch_size_bucket{model=\"fake\",version=\"1\",le=\"4\"} 1\n"),
      std::string::npos);
  EXPECT_EQ(escape_label_value("a\"b\\c\n"), "a\\\"b\\\\c\\n");
}

TEST(MetricsTest, GpuFamiliesUnderTritonsNames) {
  EXPECT_EQ(render_gpu_metrics({}), "");
  const GpuSample gpus[] = {{"GPU-1234", 0.75, 80ull << 30, 3ull << 30, 312.5},
                            {"GPU-5678", 0.0, 80ull << 30, 0, -1}};
  const std::string text = render_gpu_metrics(gpus);
  for (const char* line :
       {"# TYPE nv_gpu_utilization gauge\n", "nv_gpu_utilization{gpu_uuid=\"GPU-1234\"} 0.75\n",
        "nv_gpu_memory_total_bytes{gpu_uuid=\"GPU-1234\"} 85899345920\n",
        "nv_gpu_memory_used_bytes{gpu_uuid=\"GPU-5678\"} 0\n",
        "nv_gpu_power_usage{gpu_uuid=\"GPU-1234\"} 312.5\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " in\n" << text;
  }
  // A GPU that reports no power has no power sample.
  EXPECT_EQ(text.find("nv_gpu_power_usage{gpu_uuid=\"GPU-5678\"}"), std::string::npos);
  // Without a driver (CI) there is no monitor; with one, every GPU has a sample.
  if (auto monitor = GpuMonitor::open()) {
    for (const GpuSample& g : monitor->sample()) {
      EXPECT_GT(g.memory_total_bytes, 0u);
      EXPECT_GE(g.utilization, 0.0);
    }
  }
}

// ---- model lifecycle on the tiny model (y = x * 2 + 1, x float32 [batch, 4]) ----

std::string tiny_model() {
  const char* dir = std::getenv("KESTREL_SERVER_TEST_DATA");
  return std::string(dir ? dir : "tests/server/data") + "/tiny.onnx";
}

ServerOptions repository_options(const fs::path& root, ControlMode mode = ControlMode::kNone) {
  ServerOptions o;
  o.model_repository = root.string();
  o.control_mode = mode;
  o.load.backend = "cpu";
  return o;
}

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / fmt::format("kestrel_repo_{}", ::getpid());
    fs::remove_all(root_);
    fs::create_directories(root_ / "tiny" / "1");
    fs::copy_file(tiny_model(), root_ / "tiny" / "1" / "model.onnx");
    std::ofstream(root_ / "tiny" / "config.pbtxt")
        << "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1000 }\n"
           "instance_group [ { count: 2 kind: KIND_CPU } ]\n";
  }
  void TearDown() override { fs::remove_all(root_); }

  static StatusOr<InferResponse> infer(InferenceServer& s, float value, std::string version = "") {
    InferRequest r = make_request(value);
    r.model_name = "tiny";
    r.model_version = std::move(version);
    std::promise<StatusOr<InferResponse>> p;
    s.infer(std::move(r), [&](StatusOr<InferResponse> res) { p.set_value(std::move(res)); });
    return p.get_future().get();
  }

  fs::path root_;
};

TEST_F(RepositoryTest, ServesConfiguredModel) {
  auto server = InferenceServer::create(repository_options(root_));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->ready());
  auto r = infer(**server, 3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FLOAT_EQ(r->outputs[0].tensor.data<float>()[0], 7.0f);
  EXPECT_EQ(r->model_version, "1");
  auto m = (*server)->model("tiny", "");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->config().input(0).name(), "x");
  EXPECT_EQ((*m)->config().input(0).dims(0), 4);
  EXPECT_EQ((*m)->metadata().inputs(0).datatype(), "FP32");
  auto stats = (*server)->statistics("tiny", "");
  ASSERT_TRUE(stats.ok());
  // The warm-up does not count; the request does.
  EXPECT_EQ(stats->model_stats(0).inference_stats().success().count(), 1u);
  EXPECT_EQ((*server)->model("nope", "").status().code(), StatusCode::kNotFound);

  InferRequest bad = make_request(1);
  bad.model_name = "tiny";
  bad.inputs[0].tensor = Tensor::from_vector<float>(Shape{1, 3}, {1, 2, 3});
  std::promise<Status> p;
  (*server)->infer(bad, [&](StatusOr<InferResponse> res) { p.set_value(res.status()); });
  EXPECT_EQ(p.get_future().get().code(), StatusCode::kInvalidArgument);
}

TEST_F(RepositoryTest, ShowsPlacementAndPrefersWarmedBatchSizes) {
  // A warm-up at batch 4 leaves the engine warm for 4: with 5 requests queued, 4 run at once.
  std::ofstream(root_ / "tiny" / "config.pbtxt")
      << "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 300000 }\n"
         "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
         "model_warmup [ { name: \"four\" batch_size: 4 inputs { key: \"x\" value {\n"
         "  data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]\n";
  auto server = InferenceServer::create(repository_options(root_));
  ASSERT_TRUE(server.ok()) << server.status();
  auto m = (*server)->model("tiny", "");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->warm_batch_sizes(), (std::vector<int>{4}));
  EXPECT_EQ((*m)->instances(), (std::vector<InstancePlacement>(2, {"tiny_0", "cpu", -1})));
  const inference::ModelConfig& config = (*m)->config();
  ASSERT_EQ(config.instance_group_size(), 1);
  EXPECT_EQ(config.instance_group(0).name(), "tiny_0");
  EXPECT_EQ(config.instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(config.instance_group(0).count(), 2);

  std::vector<std::future<StatusOr<InferResponse>>> results;
  for (int i = 0; i < 5; ++i)
    results.push_back(
        std::async(std::launch::async, [&, i] { return infer(**server, static_cast<float>(i)); }));
  for (int i = 0; i < 5; ++i) {
    auto r = results[static_cast<size_t>(i)].get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FLOAT_EQ(r->outputs[0].tensor.data<float>()[0], 2.0f * static_cast<float>(i) + 1);
  }
  auto stats = (*server)->statistics("tiny", "");
  ASSERT_TRUE(stats.ok());
  std::map<uint64_t, uint64_t> batches;  // size -> executions
  for (const auto& b : stats->model_stats(0).batch_stats())
    batches[b.batch_size()] = b.compute_infer().count();
  EXPECT_EQ(batches, (std::map<uint64_t, uint64_t>{{1, 1}, {4, 1}}));
}

TEST_F(RepositoryTest, GpuThatDoesNotExistFailsThatModelOnly) {
  // The GPU one past the last visible one (GPU 0 here without a GPU; GPU 1 on a one-GPU machine).
  const int missing = visible_gpu_count();
  fs::create_directories(root_ / "tiny_gpu" / "1");
  fs::copy_file(tiny_model(), root_ / "tiny_gpu" / "1" / "model.onnx");
  std::ofstream(root_ / "tiny_gpu" / "config.pbtxt")
      << "max_batch_size: 8\ninstance_group [ { kind: KIND_GPU gpus: [ " << missing << " ] } ]\n";
  ServerOptions o = repository_options(root_, ControlMode::kExplicit);
  o.load.backend = "auto";
  auto server = InferenceServer::create(o);
  ASSERT_TRUE(server.ok()) << server.status();
  InferenceServer& s = **server;
  ASSERT_TRUE(s.load("tiny").ok());
  Status failed = s.load("tiny_gpu");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.code(), StatusCode::kInvalidArgument);
  const std::string message(failed.message());
  EXPECT_NE(message.find("model 'tiny_gpu'"), std::string::npos) << message;
  EXPECT_NE(message.find(fmt::format("GPU {}", missing)), std::string::npos) << message;
  EXPECT_NE(message.find(missing == 0 ? std::string("no GPU is visible")
                                      : fmt::format("{} GPU", missing)),
            std::string::npos)
      << message;
  const inference::RepositoryIndexResponse index = s.index(false);
  for (const auto& entry : index.models()) {
    if (entry.name() == "tiny_gpu") {
      EXPECT_EQ(entry.state(), "UNAVAILABLE");
      EXPECT_NE(entry.reason().find(fmt::format("GPU {}", missing)), std::string::npos);
    }
  }
  EXPECT_TRUE(infer(s, 1).ok());  // the other model keeps serving

  if (missing == 0) return;
  // With a GPU: the last one serves the model, warm for its max batch size (a CUDA graph).
  std::ofstream(root_ / "tiny_gpu" / "config.pbtxt")
      << "max_batch_size: 8\ndynamic_batching { }\n"
         "instance_group [ { count: 2 kind: KIND_GPU gpus: [ "
      << missing - 1 << " ] } ]\n";
  ASSERT_TRUE(s.load("tiny_gpu").ok());
  auto m = s.model("tiny_gpu", "");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->instances(),
            (std::vector<InstancePlacement>(2, {"tiny_gpu_0", "cuda", missing - 1})));
  EXPECT_FALSE((*m)->engine().device().is_cpu());
  const auto& warm = (*m)->warm_batch_sizes();
  EXPECT_NE(std::find(warm.begin(), warm.end(), 8), warm.end());
  InferRequest r = make_request(3);
  r.model_name = "tiny_gpu";
  std::promise<StatusOr<InferResponse>> p;
  s.infer(std::move(r), [&](StatusOr<InferResponse> res) { p.set_value(std::move(res)); });
  auto res = p.get_future().get();
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_FLOAT_EQ(res->outputs[0].tensor.data<float>()[0], 7.0f);
}

TEST_F(RepositoryTest, ConfiguresModelWithoutConfigFromOnnx) {
  fs::remove(root_ / "tiny" / "config.pbtxt");
  auto server = InferenceServer::create(repository_options(root_));
  ASSERT_TRUE(server.ok()) << server.status();
  auto m = (*server)->model("tiny", "1");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->config().max_batch_size(), 8);
  EXPECT_EQ((*m)->config().output(0).name(), "y");
  EXPECT_TRUE(infer(**server, 1).ok());
}

TEST_F(RepositoryTest, BadConfigFailsStartup) {
  std::ofstream(root_ / "tiny" / "config.pbtxt") << "max_batch_size: 8\nbogus_field: 1\n";
  auto server = InferenceServer::create(repository_options(root_));
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("config.pbtxt:2:"), std::string::npos)
      << server.status();
}

TEST_F(RepositoryTest, CachesBuiltEnginesOnDisk) {
  ServerOptions o = repository_options(root_);
  const fs::path cache = root_.string() + ".cache";
  o.load.engine_cache_dir = cache.string();
  fs::path cached;
  fs::file_time_type written;
  for (int run = 0; run < 2; ++run) {
    auto server = InferenceServer::create(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto r = infer(**server, 2);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FLOAT_EQ(r->outputs[0].tensor.data<float>()[0], 5.0f);
    int files = 0;
    for (const auto& e : fs::directory_iterator(cache)) {
      if (e.path().extension() != ".kplan") continue;
      ++files;
      cached = e.path();
    }
    ASSERT_EQ(files, 1);
    // The second start loads the file (a rebuild would write it again).
    if (run == 0) written = fs::last_write_time(cached);
    if (run == 1) {
      EXPECT_EQ(fs::last_write_time(cached), written) << "the cached engine was rebuilt";
    }
  }
  fs::remove_all(cache);
}

TEST_F(RepositoryTest, ExplicitModeLoadsUnloadsAndKeepsOldVersionOnFailedReload) {
  auto server = InferenceServer::create(repository_options(root_, ControlMode::kExplicit));
  ASSERT_TRUE(server.ok()) << server.status();
  InferenceServer& s = **server;
  EXPECT_EQ(s.model("tiny", "").status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(s.load("tiny").ok());
  EXPECT_TRUE(infer(s, 1).ok());

  // A new version that does not load: the old one keeps serving.
  fs::create_directories(root_ / "tiny" / "2");
  std::ofstream(root_ / "tiny" / "2" / "model.onnx") << "not an onnx file";
  EXPECT_FALSE(s.load("tiny").ok());
  auto r = infer(s, 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->model_version, "1");

  // A good new version replaces it, while requests keep flowing.
  fs::copy_file(tiny_model(), root_ / "tiny" / "2" / "model.onnx",
                fs::copy_options::overwrite_existing);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::thread traffic([&] {
    while (!stop)
      if (!infer(s, 1).ok()) ++failures;
  });
  EXPECT_TRUE(s.load("tiny").ok());
  stop = true;
  traffic.join();
  EXPECT_EQ(failures.load(), 0);
  r = infer(s, 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->model_version, "2");

  EXPECT_TRUE(s.unload("tiny").ok());
  EXPECT_EQ(infer(s, 1).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.load("../etc").code(), StatusCode::kInvalidArgument);
  auto index = s.index(false);
  ASSERT_EQ(index.models_size(), 1);
  EXPECT_EQ(index.models(0).state(), "UNAVAILABLE");
}

// ---- system shared memory ----

// A POSIX shared-memory object of `bytes` bytes holding 0, 1, 2, ... as floats; unlinked on exit.
class ShmObject {
 public:
  explicit ShmObject(size_t bytes)
      : key_("/kestrel_test_" + std::to_string(getpid()) + "_" + std::to_string(next_++)) {
    int fd = shm_open(key_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    EXPECT_NE(p, MAP_FAILED);
    data_ = static_cast<float*>(p);
    bytes_ = bytes;
    for (size_t i = 0; i < bytes / sizeof(float); ++i) data_[i] = static_cast<float>(i);
  }
  ~ShmObject() {
    munmap(data_, bytes_);
    shm_unlink(key_.c_str());
  }
  const std::string& key() const { return key_; }
  float* data() { return data_; }

 private:
  static inline int next_ = 0;
  std::string key_;
  float* data_ = nullptr;
  size_t bytes_ = 0;
};

TEST(SharedMemoryTest, OffUnlessEnabled) {
  SharedMemoryManager shm(false);
  ShmObject object(4096);
  Status s = shm.register_region({"r", object.key(), 0, 4096});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("--allow-client-shm"), std::string::npos) << s;
}

TEST(SharedMemoryTest, RegisterStatusAndUnregister) {
  SharedMemoryManager shm(true);
  ShmObject object(8192);
  ASSERT_TRUE(shm.register_region({"b", object.key(), 4096, 1024}).ok());
  ASSERT_TRUE(shm.register_region({"a", object.key(), 0, 8192}).ok());
  EXPECT_EQ(shm.register_region({"a", object.key(), 0, 16}).code(), StatusCode::kAlreadyExists);
  auto all = shm.status("");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "a");
  EXPECT_EQ((*all)[1].offset, 4096u);
  EXPECT_EQ((*all)[1].byte_size, 1024u);
  EXPECT_EQ(shm.status("nope").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(shm.unregister("nope").ok());  // nothing to do
  ASSERT_TRUE(shm.unregister("a").ok());
  EXPECT_EQ(shm.status("a").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(shm.unregister("").ok());
  EXPECT_TRUE(shm.status("")->empty());
}

TEST(SharedMemoryTest, RegisterRefusesBadKeysAndRanges) {
  SharedMemoryManager shm(true);
  ShmObject object(4096);
  EXPECT_EQ(shm.register_region({"r", "/kestrel_no_such_object", 0, 16}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(shm.register_region({"r", "relative", 0, 16}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(shm.register_region({"r", "/a/b", 0, 16}).code(), StatusCode::kInvalidArgument);
  Status past_end = shm.register_region({"r", object.key(), 4000, 100});
  EXPECT_EQ(past_end.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(past_end.message().find("holds 4096 bytes"), std::string::npos) << past_end;
  EXPECT_EQ(shm.register_region({"r", object.key(), 0, 0}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(shm.register_region({"", object.key(), 0, 16}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(shm.status("")->empty());
}

// CUDA regions share the names of system regions; what can be checked without a GPU is checked
// before any GPU is touched, and a machine without one refuses them with a clear reason.
TEST(SharedMemoryTest, CudaRegionsAreCheckedAndShareTheNamespace) {
  SharedMemoryManager off(false);
  EXPECT_EQ(off.register_cuda_region({"c", std::string(64, '\0'), 0, 16}).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_FALSE(off.cuda_available());

  SharedMemoryManager shm(true);
  ShmObject object(4096);
  ASSERT_TRUE(shm.register_region({"a", object.key(), 0, 4096}).ok());
  const std::string handle(64, '\x5a');
  EXPECT_EQ(shm.register_cuda_region({"a", handle, 0, 16}).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(shm.register_cuda_region({"c", handle, 0, 0}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(shm.register_cuda_region({"c", handle, -1, 16}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(shm.register_cuda_region({"", handle, 0, 16}).code(), StatusCode::kInvalidArgument);
  Status garbage = shm.register_cuda_region({"c", handle, 0, 16});
  if (shm.cuda_available()) {
    // 64 bytes that cudaIpcGetMemHandle never gave out do not open.
    EXPECT_EQ(garbage.code(), StatusCode::kInvalidArgument) << garbage;
    EXPECT_EQ(shm.register_cuda_region({"c", "short", 0, 16}).code(), StatusCode::kInvalidArgument);
  } else {
    EXPECT_EQ(garbage.code(), StatusCode::kFailedPrecondition) << garbage;
    EXPECT_TRUE(garbage.message().find("CUDA") != std::string::npos) << garbage;
  }
  // Status and unregister see their own kind only.
  EXPECT_TRUE(shm.cuda_status("")->empty());
  EXPECT_EQ(shm.cuda_status("a").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(shm.unregister("a", SharedMemoryManager::Kind::kCuda).ok());
  ASSERT_TRUE(shm.unregister("", SharedMemoryManager::Kind::kCuda).ok());
  EXPECT_EQ(shm.status("")->size(), 1u);
}

TEST(SharedMemoryTest, InputsAreReadInPlaceAndOutputsWritten) {
  SharedMemoryManager shm(true);
  ShmObject object(3 * 4096);
  // The region starts inside the second page, so its mapping starts at a page boundary before it.
  ASSERT_TRUE(shm.register_region({"r", object.key(), 4096 + 256, 4096}).ok());
  float* region = object.data() + (4096 + 256) / 4;
  // 64-byte aligned: a view of the mapping, so the client's later writes are visible in it.
  auto in = shm.input({"r", 64, 16}, DType::kFloat32, Shape({1, 4}), "x");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->data<float>()[0], region[16]);
  region[16] = -7.0f;
  EXPECT_EQ(in->data<float>()[0], -7.0f);
  // Not aligned: copied, so later writes are not.
  auto unaligned = shm.input({"r", 4, 16}, DType::kFloat32, Shape({1, 4}), "x");
  ASSERT_TRUE(unaligned.ok()) << unaligned.status();
  EXPECT_EQ(unaligned->data<float>()[3], region[4]);
  const float before = region[1];
  region[1] = -9.0f;
  EXPECT_EQ(unaligned->data<float>()[0], before);
  // Sizes must match, ranges must lie inside the region, regions must exist.
  EXPECT_EQ(shm.input({"r", 0, 12}, DType::kFloat32, Shape({1, 4}), "x").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(shm.input({"r", 4090, 16}, DType::kFloat32, Shape({1, 4}), "x").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(shm.input({"q", 0, 16}, DType::kFloat32, Shape({1, 4}), "x").status().code(),
            StatusCode::kNotFound);

  Tensor out = Tensor::from_vector<float>(Shape({1, 3}), {-1.5f, 2.5f, 7.0f});
  ASSERT_TRUE(shm.write_output({"r", 128, 64}, out, "y").ok());
  EXPECT_EQ(region[32], -1.5f);
  EXPECT_EQ(region[34], 7.0f);
  EXPECT_EQ(region[35], 35.0f + (4096 + 256) / 4);  // untouched past the tensor
  Status small = shm.write_output({"r", 0, 8}, out, "y");
  EXPECT_EQ(small.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.message().find("more than its shared_memory_byte_size 8"), std::string::npos);

  // An input view keeps the mapping alive after the region is unregistered.
  ASSERT_TRUE(shm.unregister("r").ok());
  EXPECT_EQ(in->data<float>()[1], region[17]);
}

TEST(SharedMemoryTest, ParametersMakeWholeReferencesOnly) {
  EXPECT_FALSE(shared_memory_ref({}, "input 'x'")->has_value());
  auto ref = shared_memory_ref({"r", 16, std::nullopt}, "input 'x'");
  ASSERT_TRUE(ref.ok() && ref->has_value());
  EXPECT_EQ((*ref)->offset, 0u);
  EXPECT_EQ((*ref)->byte_size, 16u);
  EXPECT_EQ(shared_memory_ref({"r", std::nullopt, 0}, "input 'x'").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(shared_memory_ref({std::nullopt, 16, 0}, "input 'x'").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(shared_memory_ref({"r", -1, 0}, "input 'x'").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(shared_memory_ref({std::nullopt, std::nullopt, 4}, "input 'x'").status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::serve
