// libFuzzer target: arbitrary bytes as an ONNX model. Import, verification and engine creation
// (which folds constants with the CPU reference kernels) must return an error or succeed; they must
// never crash, hang, leak or touch memory they do not own. Run by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kestrel/base/logging.h"
#include "kestrel/base/tensor.h"
#include "kestrel/engine/engine.h"
#include "kestrel/onnx/importer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool init = [] {
    kestrel::set_log_verbosity(0);
    // Keep single allocations small so that a fuzzed shape cannot exhaust the machine.
    kestrel::set_max_tensor_bytes(size_t{64} << 20);
    return true;
  }();
  (void)init;
  auto graph =
      kestrel::onnx::import_model(std::string_view(reinterpret_cast<const char*>(data), size), "");
  if (!graph.ok()) return 0;
  auto engine = kestrel::engine::Engine::create(std::move(graph).value(),
                                                {.backend = "cpu", .cpu_reference_only = true});
  (void)engine;
  return 0;
}
