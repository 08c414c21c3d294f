// main() of gpu_tests: GoogleTest plus `--perf`, which switches the op harness to timing.
#include <gtest/gtest.h>

#include <string>

namespace kestrel {
extern bool g_perf;
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) kestrel::g_perf |= std::string(argv[i]) == "--perf";
  return RUN_ALL_TESTS();
}
