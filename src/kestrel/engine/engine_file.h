// Engine files (.kplan): a built engine saved so that it loads in milliseconds, without the ONNX
// importer or the optimizer, and without measuring again.
//
//   kestrel build yolov5s.onnx -o yolov5s.kplan --fp16      writes one (save_engine_file)
//   kestrel perf yolov5s.kplan                               loads it (load_engine_file)
//
// File layout (all integers little-endian):
//
//   offset  size  field
//        0     8  magic "KESTRELP"
//        8     4  format version (kEngineFileVersion); a file of another version is refused
//       12     4  reserved, 0
//       16     8  header size H
//       24     8  weight section size W
//       32     4  CRC-32 (zlib's) of the H + W bytes that follow this 64-byte preamble
//       36    28  reserved, 0
//       64     H  header: kestrel.kplan.Header (kplan.proto, protobuf binary): Kestrel version,
//                 SHA-256 of the source ONNX file, precision, layout, max batch, backend and
//                 target (GPU model, compute capability, CUDA runtime and driver, cuDNN), the
//                 autotuner's choices, the compiled kernels of cuDNN's runtime fusion engines
//                 (serialized execution plans, so a load does not compile them again), and the
//                 optimized graph with its constants as references
//                 into the weight section
//   64+H'      W  weight section: constant tensors, each at an offset aligned to 64 bytes from
//                 its start (H' = H rounded up to 64)
//
// A load checks, in this order: magic, version, sizes against the file size, checksum, header;
// then that the machine matches the target: the backend, and on CUDA the GPU model, compute
// capability, cuDNN version and CUDA runtime major version (driver versions may differ). Every
// mismatch is FAILED_PRECONDITION naming both sides and saying to rebuild; a damaged file is
// DATA_LOSS; a model file whose hash differs from the recorded one (when the caller passes it to
// check) is FAILED_PRECONDITION too.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "kestrel/base/status.h"
#include "kestrel/engine/engine.h"

namespace kestrel::engine {

inline constexpr uint32_t kEngineFileVersion = 1;

// What an engine file says about itself (everything but the graph).
struct EngineFileInfo {
  uint32_t format_version = kEngineFileVersion;
  std::string kestrel_version;
  std::string model_sha256;
  std::string model_name;
  std::string precision;  // "fp32", "tf32" (fp32, convolutions on TF32 tensor cores) or "fp16"
  std::string layout;
  int64_t max_batch = 0;
  std::string backend;
  std::map<std::string, std::string> target;
  std::map<std::string, std::string> tuning;
  int64_t created_unix = 0;
};

// Hex SHA-256 of a file's bytes (the model hash an engine file records).
StatusOr<std::string> sha256_of_file(const std::string& path);

// Saves `engine` (its optimized graph, target and tuning choices so far) with `info`'s model
// fields (model_sha256, model_name, precision, layout, max_batch); the rest is filled in here.
Status save_engine_file(const std::string& path, const Engine& engine, EngineFileInfo info);

// The file's description, after every integrity check (no target check).
StatusOr<EngineFileInfo> read_engine_file_info(const std::string& path);

struct LoadOptions {
  EngineOptions engine;  // backend is taken from the file; the rest applies
  // When set: the ONNX file the engine must have been built from (its hash is compared).
  std::string expect_model;
  // expect_model's SHA-256 (hex) when the caller has it already: the file is then not read again.
  std::string expect_model_sha256;
};

// Loads an engine file and creates the engine on this machine; `info` (optional) receives the
// file's description.
StatusOr<std::unique_ptr<Engine>> load_engine_file(const std::string& path,
                                                   const LoadOptions& options = {},
                                                   EngineFileInfo* info = nullptr);

// Timing caches: the autotuner's choices and compiled kernels, kept across builds (`kestrel build
// --timing-cache FILE`). A text file: a first line "kestrel-timing-cache 2", then "target
// KEY=VALUE" lines (runtime::Backend::target()), then "choice SIGNATURE<TAB>CHOICE" lines and
// "compiled SIGNATURE | CHOICE<TAB>BASE64" lines (a serialized cuDNN plan, so that a cached rebuild
// does not compile it again). Version 1 files (choices only) are read too.
// read_timing_cache: NOT_FOUND when the file does not exist; FAILED_PRECONDITION when it was
// measured on another target (same rules as engine files); DATA_LOSS when malformed.
StatusOr<std::map<std::string, std::string>> read_timing_cache(
    const std::string& path, const std::map<std::string, std::string>& target);
// Writes the engine's target and every choice it holds (those read plus those measured).
Status write_timing_cache(const std::string& path, const Engine& engine);

}  // namespace kestrel::engine
