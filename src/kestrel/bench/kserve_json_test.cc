// KServe v2 documents, addresses and inputs on known data.
#include "kestrel/bench/kserve_json.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "kestrel/base/file.h"
#include "kestrel/bench/inputs.h"
#include "kestrel/bench/wire.h"

namespace kestrel::bench {
namespace {

TEST(KserveJson, ParsesModelMetadata) {
  StatusOr<ModelMetadata> m = parse_model_metadata(R"({"name":"yolo","versions":["1","2"],
      "platform":"onnx","inputs":[{"name":"images","datatype":"FP32","shape":[-1,3,640,640]}],
      "outputs":[{"name":"output0","datatype":"FP32","shape":[-1,25200,85]}]})");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "yolo");
  EXPECT_EQ(m->versions, (std::vector<std::string>{"1", "2"}));
  ASSERT_EQ(m->inputs.size(), 1u);
  EXPECT_EQ(m->inputs[0].name, "images");
  EXPECT_EQ(m->inputs[0].shape, (std::vector<int64_t>{-1, 3, 640, 640}));
  EXPECT_EQ(m->outputs[0].datatype, "FP32");
  EXPECT_FALSE(parse_model_metadata("{nope").ok());
  EXPECT_FALSE(parse_model_metadata(R"({"inputs":[]})").ok());
}

TEST(KserveJson, AddsUpStatisticsOfEveryVersion) {
  StatusOr<ServerStats> s = parse_model_stats(R"({"model_stats":[
      {"name":"m","version":"1","inference_count":10,"execution_count":4,"inference_stats":{
        "success":{"count":10,"ns":1000},"fail":{"count":1,"ns":5},"queue":{"count":10,"ns":200},
        "compute_input":{"count":10,"ns":30},"compute_infer":{"count":10,"ns":600},
        "compute_output":{"count":10,"ns":40}}},
      {"name":"other","version":"1","inference_stats":{"success":{"count":99,"ns":99}}},
      {"name":"m","version":"2","inference_count":1,"inference_stats":{
        "success":{"count":1,"ns":100},"queue":{"count":1,"ns":20}}}]})",
                                              "m");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->success_count, 11);
  EXPECT_EQ(s->success_ns, 1100);
  EXPECT_EQ(s->fail_count, 1);
  EXPECT_EQ(s->queue_ns, 220);
  EXPECT_EQ(s->compute_infer_ns, 600);
  EXPECT_EQ(s->inference_count, 11);
  EXPECT_EQ(s->execution_count, 4);
  EXPECT_EQ(parse_model_stats(R"({"model_stats":[]})", "m").status().code(), StatusCode::kNotFound);
}

TEST(KserveJson, ErrorMessages) {
  EXPECT_EQ(error_message_of(R"({"error":"model 'x' not found"})"), "model 'x' not found");
  EXPECT_EQ(error_message_of("plain text"), "plain text");
}

TEST(KserveJson, InferRequestHeaders) {
  Sample s;
  InputTensor t{"x", "FP32", {1, 2}, std::string(8, '\0')};
  const float v[2] = {1.5f, -2};
  std::memcpy(t.data.data(), v, 8);
  s.inputs.push_back(t);
  EXPECT_EQ(*infer_request_json(s, true),
            R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],)"
            R"("parameters":{"binary_data_size":8}}],"parameters":{"binary_data_output":true}})");
  EXPECT_EQ(*infer_request_json(s, false),
            R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1.5,-2]}],)"
            R"("parameters":{"binary_data_output":true}})");
  EXPECT_EQ(json_quote("a\"b\\c\n"), R"("a\"b\\c\n")");
}

TEST(KserveJson, SharedMemoryInferRequest) {
  Sample s;
  s.inputs.push_back({"images", "FP16", {1, 3, 2, 2}, ""});
  std::vector<ShmTensorRef> inputs = {{"in", 128, 24}};
  std::vector<std::pair<std::string, ShmTensorRef>> outputs = {{"dets", {"out0", 0, 7200}},
                                                               {"count", {"out0", 7232, 4}}};
  EXPECT_EQ(shm_infer_request_json(s, inputs, outputs),
            R"({"inputs":[{"name":"images","datatype":"FP16","shape":[1,3,2,2],)"
            R"("parameters":{"shared_memory_region":"in","shared_memory_offset":128,)"
            R"("shared_memory_byte_size":24}}],"outputs":[{"name":"dets","parameters":)"
            R"({"shared_memory_region":"out0","shared_memory_offset":0,)"
            R"("shared_memory_byte_size":7200}},{"name":"count","parameters":)"
            R"({"shared_memory_region":"out0","shared_memory_offset":7232,)"
            R"("shared_memory_byte_size":4}}]})");
}

TEST(SharedMemory, OutputSizesFromMetadataOrFixed) {
  ModelMetadata m;
  m.outputs.push_back({"y", "FP16", {-1, 25200, 85}});
  auto sizes = shm_output_sizes(m, 4, 0);
  ASSERT_TRUE(sizes.ok()) << sizes.status();
  EXPECT_EQ((*sizes)[0].second, int64_t{4} * 25200 * 85 * 2);
  EXPECT_EQ((*shm_output_sizes(m, 4, 1000))[0].second, 1000);
  m.outputs.push_back({"z", "FP32", {-1, -1}});
  EXPECT_EQ(shm_output_sizes(m, 1, 0).status().code(), StatusCode::kInvalidArgument);
  // Every range starts 64-byte aligned, and the object holds them all.
  auto outputs =
      make_shm_outputs(std::vector<std::pair<std::string, int64_t>>{{"a", 10}, {"b", 70}},
                       shm_region_name("test_out"));
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_EQ(outputs->refs[1].second.offset, 64u);
  EXPECT_GE(outputs->buffer->size(), 134u);
  EXPECT_EQ(outputs->buffer->key(), shm_key(shm_region_name("test_out")));
}

TEST(Wire, ParsesAddresses) {
  EXPECT_EQ(parse_host_port("localhost:8000", 1)->to_string(), "localhost:8000");
  EXPECT_EQ(parse_host_port("http://10.0.0.1:9000/v2", 1)->to_string(), "10.0.0.1:9000");
  EXPECT_EQ(parse_host_port("example.org", 8001)->to_string(), "example.org:8001");
  EXPECT_EQ(parse_host_port("[::1]:8001", 1)->host, "::1");
  EXPECT_FALSE(parse_host_port("host:99999", 1).ok());
  EXPECT_FALSE(parse_host_port(":80", 1).ok());
  EXPECT_EQ(status_code_from_http(404), StatusCode::kNotFound);
  EXPECT_EQ(status_code_from_http(503), StatusCode::kUnavailable);
}

TEST(Inputs, ShapesFromOptionsAndBatch) {
  InputOptions o;
  ASSERT_TRUE(parse_shape_option("images:1,3,64,64", o.shapes).ok());
  EXPECT_FALSE(parse_shape_option("images", o.shapes).ok());
  EXPECT_FALSE(parse_shape_option("images:1,x", o.shapes).ok());
  o.batch_size = 8;
  EXPECT_EQ(*resolve_shape({"images", "FP32", {-1, 3, 640, 640}}, o),
            (std::vector<int64_t>{1, 3, 64, 64}));
  EXPECT_EQ(*resolve_shape({"other", "FP32", {-1, 4}}, o), (std::vector<int64_t>{8, 4}));
  EXPECT_FALSE(resolve_shape({"other", "FP32", {1, -1}}, o).ok());
}

TEST(Inputs, RandomTensorsHaveTheModelsShapes) {
  ModelMetadata m{"m", {}, {{"a", "FP32", {-1, 3}}, {"b", "INT64", {2}}}, {}};
  InputOptions o;
  o.batch_size = 2;
  StatusOr<std::vector<Sample>> s = make_tensor_samples(m, o);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 1u);
  EXPECT_EQ((*s)[0].inputs[0].data.size(), 2u * 3 * 4);
  EXPECT_EQ((*s)[0].inputs[1].data.size(), 2u * 8);
  float first;
  std::memcpy(&first, (*s)[0].inputs[0].data.data(), 4);
  EXPECT_GE(first, 0.f);
  EXPECT_LT(first, 1.f);
}

TEST(Inputs, FromPerfAnalyzerJsonAndFromADirectory) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("bench_inputs_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  ModelMetadata m{"m", {}, {{"a", "FP32", {-1, 2}}, {"b", "INT32", {1}}}, {}};
  InputOptions o;
  o.input_data = (dir / "data.json").string();
  ASSERT_TRUE(write_file(o.input_data, R"({"data":[{"a":[1,2],"b":[7]},
      {"a":{"content":[3,4,5,6],"shape":[2,2]},"b":[true]}]})")
                  .ok());
  StatusOr<std::vector<Sample>> s = make_tensor_samples(m, o);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[1].inputs[0].shape, (std::vector<int64_t>{2, 2}));
  float f[4];
  std::memcpy(f, (*s)[1].inputs[0].data.data(), 16);
  EXPECT_EQ(f[3], 6.f);
  int32_t b;
  std::memcpy(&b, (*s)[0].inputs[1].data.data(), 4);
  EXPECT_EQ(b, 7);
  ASSERT_TRUE(write_file(o.input_data, R"({"data":[{"a":[1,2,3],"b":[7]}]})").ok());
  EXPECT_FALSE(make_tensor_samples(m, o).ok());  // 3 values for shape [1, 2]

  // A directory: raw little-endian bytes named after each input.
  o.input_data = dir.string();
  const float a[2] = {0.5f, 1.5f};
  const int32_t bb = 9;
  ASSERT_TRUE(
      write_file((dir / "a").string(), std::string(reinterpret_cast<const char*>(a), 8)).ok());
  ASSERT_TRUE(
      write_file((dir / "b").string(), std::string(reinterpret_cast<const char*>(&bb), 4)).ok());
  s = make_tensor_samples(m, o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)[0].inputs[0].data, std::string(reinterpret_cast<const char*>(a), 8));
  ASSERT_TRUE(write_file((dir / "b").string(), "12345678").ok());
  EXPECT_FALSE(make_tensor_samples(m, o).ok());  // 8 bytes for one INT32
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kestrel::bench
