// libFuzzer target: arbitrary bytes as a .kplan engine file (engine/engine_file.h). Reading its
// description and loading it on the CPU must return an error or succeed; never crash, hang, leak
// or touch memory it does not own. Run by scripts/fuzz.sh.
//
// Most mutations would only break the file's checksum and stop at the first check, so the fuzzer
// repairs what a damaged file fails on first: when the input starts with the magic, the version,
// the weight-section size (from the header size) and the CRC-32 are rewritten to agree with the
// bytes, and the fuzzing reaches the header's protobuf and the graph it describes.
//
// Seeds: with KESTREL_FUZZ_WRITE_SEEDS=DIR the binary writes engine files into DIR instead of
// fuzzing, one per ONNX model given after `--` that imports and builds on the CPU (scripts/fuzz.sh
// passes ONNX's node-test models).
#include <google/protobuf/stubs/logging.h>
#include <unistd.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "kestrel/base/logging.h"
#include "kestrel/base/tensor.h"
#include "kestrel/engine/engine.h"
#include "kestrel/engine/engine_file.h"
#include "kestrel/onnx/importer.h"

namespace {

constexpr size_t kPreamble = 64;

template <typename T>
T get(const std::string& s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}
template <typename T>
void put(std::string& s, size_t at, T v) {
  std::memcpy(s.data() + at, &v, sizeof(T));
}

// Makes the preamble agree with the bytes after it (see the header comment).
void repair(std::string& f) {
  if (f.size() < kPreamble || f.compare(0, 8, "KESTRELP") != 0) return;
  put<uint32_t>(f, 8, kestrel::engine::kEngineFileVersion);
  const uint64_t body = f.size() - kPreamble;
  uint64_t header = get<uint64_t>(f, 16);
  if (header > body) header = body / 2;
  const uint64_t aligned = (header + 63) / 64 * 64;
  if (aligned <= body) {
    put<uint64_t>(f, 16, header);
    put<uint64_t>(f, 24, body - aligned);
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(f.data() + kPreamble), static_cast<uInt>(body));
  put<uint32_t>(f, 32, static_cast<uint32_t>(crc));
}

// KESTREL_FUZZ_WRITE_SEEDS=DIR: builds every ONNX model named after "--" on the CPU and saves it.
void write_seeds(const char* dir, int argc, char** argv) {
  int written = 0;
  bool models = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      models = true;
      continue;
    }
    if (!models) continue;
    auto graph = kestrel::onnx::import_model_file(argv[i]);
    if (!graph.ok()) continue;
    auto engine = kestrel::engine::Engine::create(std::move(graph).value(),
                                                  {.backend = "cpu", .cpu_reference_only = true});
    if (!engine.ok()) continue;
    kestrel::engine::EngineFileInfo info;
    info.model_name = std::filesystem::path(argv[i]).parent_path().filename().string();
    info.precision = "fp32";
    info.layout = "nchw";
    const std::string out = std::string(dir) + "/" + info.model_name + ".kplan";
    if (kestrel::engine::save_engine_file(out, **engine, info).ok()) ++written;
  }
  std::fprintf(stderr, "wrote %d seed engine files to %s\n", written, dir);
  std::exit(written > 0 ? 0 : 1);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kestrel::set_log_verbosity(0);
  google::protobuf::SetLogHandler(nullptr);  // damaged strings are the point here
  // Keep single allocations small so that a fuzzed shape cannot exhaust the machine.
  kestrel::set_max_tensor_bytes(size_t{64} << 20);
  if (const char* dir = std::getenv("KESTREL_FUZZ_WRITE_SEEDS")) write_seeds(dir, *argc, *argv);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = (std::filesystem::temp_directory_path() /
                                   ("kestrel_fuzz_" + std::to_string(getpid()) + ".kplan"))
                                      .string();
  std::string bytes(reinterpret_cast<const char*>(data), size);
  repair(bytes);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto info = kestrel::engine::read_engine_file_info(path);
  (void)info;
  kestrel::engine::LoadOptions options;
  options.engine.cpu_reference_only = true;
  auto engine = kestrel::engine::load_engine_file(path, options);
  (void)engine;
  return 0;
}
