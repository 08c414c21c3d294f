// The memory planner: places every intermediate tensor of a run in one arena, reusing memory
// between tensors whose lifetimes do not overlap.
//
// Input: for each buffer its size and the steps during which it is alive (it is written at `first`
// and last read at `last`, inclusive). Output: an offset per buffer, with no two buffers that are
// alive at the same step overlapping, and the arena size. Greedy: buffers in order of decreasing
// size, each at the lowest aligned offset that fits between the buffers already placed that it
// meets in time. Simple, and within a few percent of optimal on CNN graphs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kestrel::plan {

struct BufferLifetime {
  size_t bytes = 0;
  int first = 0;  // step that writes it (-1: before the first step, e.g. a graph input)
  int last = 0;   // last step that reads it (inclusive)
};

struct MemoryPlan {
  std::vector<size_t> offsets;  // one per buffer, aligned
  size_t arena_bytes = 0;       // what the arena must hold
  size_t naive_bytes = 0;       // the sum of every buffer's size, for comparison
};

// REQUIRES: alignment is a power of two; first <= last for every buffer.
MemoryPlan plan_memory(std::span<const BufferLifetime> buffers, size_t alignment = 256);

}  // namespace kestrel::plan
