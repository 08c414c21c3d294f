// KServe v2's JSON documents, read and written: model metadata, model statistics, error answers,
// and the JSON form of an inference request. The HTTP client uses them; they are separate so
// that they are tested on known documents.
#pragma once

#include <string>
#include <string_view>

#include "kestrel/base/status.h"
#include "kestrel/bench/client.h"
#include "kestrel/bench/shared_memory.h"

namespace kestrel::bench {

// `s` as a JSON string literal, quotes included.
std::string json_quote(std::string_view s);

// GET /v2/models/{m}[/versions/{v}]'s answer.
StatusOr<ModelMetadata> parse_model_metadata(std::string_view json);

// GET /v2/models/{m}[/versions/{v}]/stats's answer (Triton's layout); the counters of every entry
// named `model` are added up (one entry per version).
StatusOr<ServerStats> parse_model_stats(std::string_view json, std::string_view model);

// The "error" member of an error answer, or the body itself (shortened) when it has none.
std::string error_message_of(std::string_view body);

// The JSON header of an inference request for `sample`'s inputs. With `binary`, it announces each
// input's bytes (binary_data_size) to follow the header; otherwise it holds the numbers ("data").
// Outputs are requested in binary form either way, so the answer is cheap to read.
StatusOr<std::string> infer_request_json(const Sample& sample, bool binary);

// The JSON of an inference request whose inputs (`inputs[i]` for sample.inputs[i]) and requested
// outputs live in system shared memory: the body holds no tensor data.
std::string shm_infer_request_json(const Sample& sample, std::span<const ShmTensorRef> inputs,
                                   std::span<const std::pair<std::string, ShmTensorRef>> outputs);

}  // namespace kestrel::bench
