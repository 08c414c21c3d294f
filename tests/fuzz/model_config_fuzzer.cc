// libFuzzer target: arbitrary bytes as a Triton config.pbtxt (serve/core/model_config.h). Parsing,
// validation, Kestrel's parameters and the instance placement (with and without GPUs) must return
// an error or succeed; never crash, hang, leak or touch memory they do not own. Run by
// scripts/fuzz.sh, seeded with seeds/model_config/.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kestrel/base/logging.h"
#include "kestrel/serve/core/instance_placement.h"
#include "kestrel/serve/core/model_config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kestrel::set_log_verbosity(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = kestrel::serve::parse_model_config(
      std::string_view(reinterpret_cast<const char*>(data), size), "config.pbtxt");
  if (!config.ok()) return 0;
  auto params = kestrel::serve::kestrel_parameters(*config);
  (void)params;
  for (auto [gpus, backend] : {std::pair{2, "cuda"}, std::pair{0, "cpu"}, std::pair{1, "auto"}}) {
    auto placed = kestrel::serve::place_instances(*config, gpus, backend);
    if (placed.ok()) (void)kestrel::serve::placed_instance_groups(*placed);
  }
  return 0;
}
