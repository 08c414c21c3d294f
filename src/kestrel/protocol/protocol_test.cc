// The protocol layer: Triton wire compatibility of the generated messages (field numbers checked
// against bytes Triton's own definitions produce) and the datatype tables.
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <string>

#include "kestrel/protocol/datatypes.h"
#include "kestrel/protocol/grpc_service.grpc.pb.h"
#include "kestrel/protocol/grpc_service.pb.h"
#include "kestrel/protocol/health.grpc.pb.h"
#include "kestrel/protocol/model_config.pb.h"

namespace kestrel::protocol {
namespace {

std::string hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

TEST(ProtocolTest, ServiceNamesAreTritons) {
  EXPECT_EQ(inference::GRPCInferenceService::service_full_name(),
            std::string("inference.GRPCInferenceService"));
  EXPECT_EQ(grpc::health::v1::Health::service_full_name(), std::string("grpc.health.v1.Health"));
}

TEST(ProtocolTest, ModelConfigUsesTritonFieldNumbers) {
  inference::ModelConfig config;
  config.set_max_batch_size(8);  // field 4, varint: 0x20 0x08
  EXPECT_EQ(hex(config.SerializeAsString()), "2008");
  config.Clear();
  config.mutable_dynamic_batching()->set_max_queue_delay_microseconds(100);  // 11 { 2: 100 }
  EXPECT_EQ(hex(config.SerializeAsString()), "5a021064");
  config.Clear();
  config.set_backend("k");  // field 17, length-delimited: 0x8a 0x01
  EXPECT_EQ(hex(config.SerializeAsString()), "8a01016b");
  config.Clear();
  config.add_instance_group()->set_kind(inference::ModelInstanceGroup::KIND_CPU);  // 7 { 4: 2 }
  EXPECT_EQ(hex(config.SerializeAsString()), "3a022002");
}

TEST(ProtocolTest, InferRequestUsesTritonFieldNumbers) {
  inference::ModelInferRequest request;
  request.add_raw_input_contents("ab");  // field 7
  EXPECT_EQ(hex(request.SerializeAsString()), "3a026162");
  inference::ModelInferResponse response;
  response.add_raw_output_contents("ab");  // field 6
  EXPECT_EQ(hex(response.SerializeAsString()), "32026162");
}

TEST(ProtocolTest, ParsesTritonConfigText) {
  inference::ModelConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "yolo"
        platform: "onnxruntime_onnx"
        max_batch_size: 8 input
        [ {
          name: "images"
          data_type: TYPE_FP32
          dims: [ 3, -1, -1 ]
        }]
        dynamic_batching {
          preferred_batch_size: [ 4, 8 ]
          max_queue_delay_microseconds: 100
          default_queue_policy { timeout_action: REJECT max_queue_size: 16 }
        } instance_group
        [ {
          count: 2
          kind: KIND_GPU
          gpus: [ 0 ]
        }]
        version_policy: { specific { versions: [ 1, 3 ] } }
        parameters {
          key: "precision"
          value: { string_value: "fp16" }
        }
      )pb",
      &config));
  EXPECT_EQ(config.input(0).dims(1), -1);
  EXPECT_EQ(config.dynamic_batching().default_queue_policy().max_queue_size(), 16u);
  EXPECT_EQ(config.instance_group(0).count(), 2);
  EXPECT_EQ(config.version_policy().specific().versions(1), 3);
  EXPECT_EQ(config.parameters().at("precision").string_value(), "fp16");
}

TEST(ProtocolTest, DatatypeTablesRoundTrip) {
  for (DType dtype :
       {DType::kFloat32, DType::kFloat16, DType::kUInt8, DType::kInt64, DType::kBool}) {
    EXPECT_EQ(dtype_from_kserve(kserve_datatype(dtype)), dtype);
    EXPECT_EQ(dtype_from_config(config_datatype(dtype)), dtype);
  }
  EXPECT_EQ(kserve_datatype(DType::kFloat32), "FP32");
  EXPECT_EQ(dtype_from_kserve("BYTES"), DType::kUndefined);
  EXPECT_EQ(dtype_from_config(inference::TYPE_STRING), DType::kUndefined);
}

}  // namespace
}  // namespace kestrel::protocol
