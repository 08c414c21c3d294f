#include "kestrel/plan/memory_planner.h"

#include <algorithm>
#include <numeric>

namespace kestrel::plan {

MemoryPlan plan_memory(std::span<const BufferLifetime> buffers, size_t alignment) {
  MemoryPlan plan;
  plan.offsets.assign(buffers.size(), 0);
  auto align = [alignment](size_t v) { return (v + alignment - 1) & ~(alignment - 1); };
  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  // Largest first; ties by start time, so the plan is deterministic.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (buffers[a].bytes != buffers[b].bytes) return buffers[a].bytes > buffers[b].bytes;
    return buffers[a].first < buffers[b].first;
  });
  struct Placed {
    size_t offset, end;
    int first, last;
  };
  std::vector<Placed> placed;
  for (size_t i : order) {
    const BufferLifetime& b = buffers[i];
    plan.naive_bytes += b.bytes;
    const size_t size = align(std::max<size_t>(b.bytes, 1));
    // The placed buffers alive at the same time, by offset: take the first gap that fits.
    std::vector<const Placed*> conflicts;
    for (const Placed& p : placed) {
      if (p.first <= b.last && b.first <= p.last) conflicts.push_back(&p);
    }
    std::sort(conflicts.begin(), conflicts.end(),
              [](const Placed* x, const Placed* y) { return x->offset < y->offset; });
    size_t offset = 0;
    for (const Placed* p : conflicts) {
      if (offset + size <= p->offset) break;
      offset = std::max(offset, align(p->end));
    }
    placed.push_back({offset, offset + size, b.first, b.last});
    plan.offsets[i] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
  }
  return plan;
}

}  // namespace kestrel::plan
