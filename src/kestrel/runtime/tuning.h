// TuningCache: the autotuner's choices, so that a rebuild or a loaded engine file skips the
// measurements that made them.
//
// Kernels that measure candidates (the cuDNN convolution measures every algorithm for each input
// shape) look their signature up first and record what they chose. Keys are the kernel's own
// description of the problem (operator, shapes, element type, layout, parameters); values are the
// kernel's encoding of its choice. A cache is only valid on the target it was measured on: the
// engine file and the timing-cache file record that target (runtime::Backend::target()) and
// refuse another.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace kestrel::runtime {

// Keys of entries that hold a compiled kernel (a serialized cuDNN plan) rather than a choice.
// Engine files and timing-cache files keep them, so neither a load nor a cached rebuild compiles
// again.
inline constexpr const char* kSerializedPlanPrefix = "compiled ";

// How many entries of each kind a tuning map holds.
struct TuningCounts {
  size_t choices = 0;
  size_t compiled = 0;  // keys starting with kSerializedPlanPrefix
  size_t total() const { return choices + compiled; }
};
inline TuningCounts count_tuning(const std::map<std::string, std::string>& entries) {
  TuningCounts c;
  for (const auto& entry : entries)
    ++(entry.first.starts_with(kSerializedPlanPrefix) ? c.compiled : c.choices);
  return c;
}

class TuningCache {
 public:
  std::optional<std::string> find(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    touched_.insert(key);
    return it->second;
  }
  void insert(const std::string& key, std::string value) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_[key] = std::move(value);
    touched_.insert(key);
  }
  // `touched`: count the entries as used (an engine file's own entries), not merely offered (a
  // timing cache's).
  void merge(const std::map<std::string, std::string>& entries, bool touched = false) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [k, v] : entries) {
      entries_[k] = v;
      if (touched) touched_.insert(k);
    }
  }
  TuningCounts counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_tuning(entries_);
  }
  std::map<std::string, std::string> entries() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_;
  }
  // Whether `key` was found, inserted or merged as touched (merely offered entries are
  // not): an engine file keeps only the compiled kernels its own kernels used, not every one of a
  // timing cache shared by several models.
  bool touched(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return touched_.count(key) > 0;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::string> entries_;
  mutable std::set<std::string> touched_;
};

}  // namespace kestrel::runtime
