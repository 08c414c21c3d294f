// main() of gpu_tests: GoogleTest plus `--perf`, which switches the op harness to timing, and
// `--export-cuda-ipc`, the other process of the CUDA shared-memory test
// (gpu_shared_memory_test.cc), which runs instead of the tests.
#include <gtest/gtest.h>

#include <string>

namespace kestrel {
extern bool g_perf;
int export_cuda_ipc();
}  // namespace kestrel

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--export-cuda-ipc") return kestrel::export_cuda_ipc();
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) kestrel::g_perf |= std::string(argv[i]) == "--perf";
  return RUN_ALL_TESTS();
}
