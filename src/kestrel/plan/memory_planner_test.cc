#include "kestrel/plan/memory_planner.h"

#include <gtest/gtest.h>

#include <random>

namespace kestrel::plan {
namespace {

// No two buffers alive at the same step overlap in memory, and all fit in the arena.
void expect_valid(std::span<const BufferLifetime> b, const MemoryPlan& p) {
  ASSERT_EQ(p.offsets.size(), b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(p.offsets[i] % 256, 0u);
    EXPECT_LE(p.offsets[i] + b[i].bytes, p.arena_bytes);
    for (size_t j = i + 1; j < b.size(); ++j) {
      const bool in_time = b[i].first <= b[j].last && b[j].first <= b[i].last;
      const bool in_space =
          p.offsets[i] < p.offsets[j] + b[j].bytes && p.offsets[j] < p.offsets[i] + b[i].bytes;
      EXPECT_FALSE(in_time && in_space && b[i].bytes && b[j].bytes) << i << " and " << j;
    }
  }
}

TEST(MemoryPlannerTest, ReusesMemoryOfBuffersThatAreNoLongerAlive) {
  // A chain a -> b -> c -> d: only two buffers are alive at any step.
  const std::vector<BufferLifetime> chain = {
      {1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}, {1000, 3, 4}};
  const MemoryPlan p = plan_memory(chain);
  expect_valid(chain, p);
  EXPECT_EQ(p.naive_bytes, 4000u);
  EXPECT_EQ(p.arena_bytes, 2 * 1024u);
}

TEST(MemoryPlannerTest, KeepsBuffersAliveTogetherApart) {
  const std::vector<BufferLifetime> b = {{500, -1, 10}, {300, 0, 10}, {200, 5, 6}};
  const MemoryPlan p = plan_memory(b);
  expect_valid(b, p);
  EXPECT_EQ(p.arena_bytes, 512u + 512u + 256u);
}

TEST(MemoryPlannerTest, RandomGraphsArePlannedValidly) {
  std::mt19937 rng(3);
  for (int round = 0; round < 50; ++round) {
    std::vector<BufferLifetime> b;
    for (int i = 0; i < 60; ++i) {
      const int first = static_cast<int>(rng() % 40) - 1;
      b.push_back({rng() % 100000, first, first + 1 + static_cast<int>(rng() % 10)});
    }
    expect_valid(b, plan_memory(b));
  }
}

}  // namespace
}  // namespace kestrel::plan
