// DynamicBatcher (see dynamic_batcher.h).
#include "kestrel/serve/core/dynamic_batcher.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstring>
#include <latch>
#include <span>
#include <thread>

#include "kestrel/base/logging.h"

namespace kestrel::serve {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t elapsed_ns(Clock::time_point from, Clock::time_point to) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count());
}

// Threads that share the copying of large batches: one thread copies about 10 GB/s, so a
// batch of 32 FP16 640x640 images (79 MB) took 6-8 ms on its instance thread alone.
size_t gather_pool_threads() { return std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u); }

boost::asio::thread_pool& gather_pool() {
  static auto* pool = new boost::asio::thread_pool(gather_pool_threads());
  return *pool;
}

// Copies `sources` one after another into `dst`. Batches of several MB are split into equal
// byte ranges copied on the gather pool while this thread copies the first.
void gather(std::span<const std::span<const std::byte>> sources, std::byte* dst) {
  size_t total = 0;
  for (const auto& s : sources) total += s.size();
  constexpr size_t kMinChunk = size_t{2} << 20;
  const size_t threads = 1 + gather_pool_threads();
  const size_t chunks = std::clamp<size_t>(total / kMinChunk, 1, threads);
  // Copies bytes [begin, end) of the concatenation.
  auto copy_range = [&](size_t begin, size_t end) {
    size_t at = 0;
    for (const auto& s : sources) {
      const size_t lo = std::max(begin, at), hi = std::min(end, at + s.size());
      if (lo < hi) std::memcpy(dst + lo, s.data() + (lo - at), hi - lo);
      at += s.size();
      if (at >= end) break;
    }
  };
  if (chunks == 1) return copy_range(0, total);
  const size_t step = (total + chunks - 1) / chunks;
  std::latch done(static_cast<std::ptrdiff_t>(chunks - 1));
  for (size_t c = 1; c < chunks; ++c) {
    boost::asio::post(gather_pool(), [&, c] {
      copy_range(c * step, std::min(total, (c + 1) * step));
      done.count_down();
    });
  }
  copy_range(0, step);
  done.wait();
}

// Concatenates the jobs' tensors of one input along axis 0, into memory from `allocate` when
// given.
StatusOr<Tensor> concat_rows(const std::vector<const Tensor*>& parts, int64_t total_rows,
                             const InputAllocator& allocate, int instance) {
  const Tensor& first = *parts.front();
  std::vector<int64_t> dims = first.shape().vec();
  dims[0] = total_rows;
  KS_ASSIGN_OR_RETURN(Tensor out, allocate ? allocate(first.dtype(), Shape(dims), instance)
                                           : Tensor::allocate(first.dtype(), Shape(dims)));
  if (out.dtype() != first.dtype() || out.shape() != Shape(dims) || !out.is_cpu())
    return internal_error("the input allocator gave {} for host {}{}", out.debug_string(0),
                          first.dtype(), Shape(dims).to_string());
  std::vector<std::span<const std::byte>> sources;
  for (const Tensor* part : parts) sources.push_back(part->bytes());
  gather(sources, static_cast<std::byte*>(out.raw_data()));
  return out;
}

}  // namespace

size_t choose_batch(std::span<const int64_t> rows, int64_t max_batch_size,
                    std::span<const int> preferred, bool delay_expired) {
  if (rows.empty()) return 0;
  if (rows.back() >= max_batch_size || delay_expired) return rows.size();
  for (size_t k = rows.size(); k > 0; --k) {
    if (std::find(preferred.begin(), preferred.end(), rows[k - 1]) != preferred.end()) return k;
  }
  return 0;
}

StatusOr<std::unique_ptr<DynamicBatcher>> DynamicBatcher::create(
    const BatcherOptions& options, std::vector<std::string> output_names, BatchExecutor executor,
    ModelStatistics* stats, ImageBatchPreparer image_preparer, InputAllocator allocate_input,
    DeviceInputGatherer gather_on_device) {
  if (options.instance_count < 1)
    return invalid_argument("instance count must be at least 1, got {}", options.instance_count);
  if (options.max_batch_size < 0)
    return invalid_argument("max_batch_size must be >= 0, got {}", options.max_batch_size);
  if (options.priority_levels > 0 && (options.default_priority_level < 1 ||
                                      options.default_priority_level > options.priority_levels))
    return invalid_argument("default_priority_level {} is outside [1, priority_levels = {}]",
                            options.default_priority_level, options.priority_levels);
  std::unique_ptr<DynamicBatcher> b(new DynamicBatcher());
  b->options_ = options;
  b->preferred_ = options.preferred_batch_sizes;
  if (b->preferred_.empty()) {
    for (int size : options.warm_batch_sizes)
      if (size >= 2 && size <= options.max_batch_size) b->preferred_.push_back(size);
  }
  b->output_names_ = std::move(output_names);
  b->executor_ = std::move(executor);
  b->image_preparer_ = std::move(image_preparer);
  b->allocate_input_ = std::move(allocate_input);
  b->gather_on_device_ = std::move(gather_on_device);
  b->stats_ = stats;
  b->queues_.resize(std::max<uint64_t>(1, options.priority_levels));
  b->busy_.assign(static_cast<size_t>(options.instance_count), 0);
  for (int i = 0; i < options.instance_count; ++i)
    b->workers_.emplace_back([raw = b.get(), i] { raw->worker(i); });
  return b;
}

DynamicBatcher::~DynamicBatcher() { stop(); }

void DynamicBatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_)
    if (t.joinable()) t.join();
  std::unique_lock lock(mutex_);
  inline_done_.wait(lock, [this] { return running_inline_ == 0; });
}

void DynamicBatcher::wake_workers() {
  if (running_inline_ > 0) {
    wake_.notify_all();
  } else {
    wake_.notify_one();
  }
}

size_t DynamicBatcher::pending() const {
  std::lock_guard lock(mutex_);
  return queued_ + running_;
}

Status DynamicBatcher::enqueue(InferRequest request, InferCallback done) {
  Job job;
  // Rows and batching signature: inputs sorted by name so that the order in the request is
  // irrelevant.
  std::sort(request.inputs.begin(), request.inputs.end(),
            [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });
  if (!request.images.empty()) {
    if (!image_preparer_) return failed_precondition("this model takes no images");
    if (!request.inputs.empty())
      return invalid_argument("a request has images or inputs, not both");
    if (options_.max_batch_size <= 0) return failed_precondition("image requests need batching");
    job.rows = static_cast<int64_t>(request.images.size());
    job.signature = "images";
    if (job.rows > options_.max_batch_size)
      return invalid_argument("{} images exceed max_batch_size {}", job.rows,
                              options_.max_batch_size);
  } else if (options_.max_batch_size > 0) {
    job.rows = -1;
    for (const NamedTensor& in : request.inputs) {
      const Shape& s = in.tensor.shape();
      if (s.rank() == 0) return invalid_argument("input '{}' has no batch dimension", in.name);
      if (job.rows >= 0 && s[0] != job.rows)
        return invalid_argument("inputs disagree on the batch size ({} and {})", job.rows, s[0]);
      job.rows = s[0];
      job.signature +=
          fmt::format("{}:{}:{}{};", in.name, dtype_name(in.tensor.dtype()),
                      Shape(s.dims().subspan(1)).to_string(), in.tensor.is_cpu() ? "" : "@gpu");
    }
    if (job.rows < 1 || job.rows > options_.max_batch_size)
      return invalid_argument("batch size {} is outside [1, max_batch_size = {}]", job.rows,
                              options_.max_batch_size);
  }
  size_t level = 0;
  if (options_.priority_levels > 0) {
    uint64_t p = request.priority ? request.priority : options_.default_priority_level;
    if (p < 1 || p > options_.priority_levels)
      return invalid_argument("priority {} is outside [1, {}]", p, options_.priority_levels);
    level = p - 1;
  }
  uint64_t timeout_us = options_.default_timeout_us;
  if (request.timeout_us > 0 && options_.allow_timeout_override &&
      (timeout_us == 0 || request.timeout_us < timeout_us))
    timeout_us = request.timeout_us;
  job.enqueued = Clock::now();
  job.deadline =
      timeout_us ? job.enqueued + std::chrono::microseconds(timeout_us) : Clock::time_point::max();
  job.request = std::move(request);
  job.done = std::move(done);
  std::unique_lock lock(mutex_);
  if (stopping_)
    return unavailable("model '{}' is not accepting requests (unloading or shutting down)",
                       job.request.model_name);
  if (options_.max_queue_size > 0 && queued_ >= options_.max_queue_size)
    return unavailable("the queue of model '{}' is full ({} requests)", job.request.model_name,
                       queued_);
  if (options_.run_when_idle && queued_ == 0 && running_inline_ == 0) {
    const bool batching = options_.dynamic_batching && options_.max_batch_size > 0;
    const int64_t rows[] = {job.rows};
    auto idle = std::find(busy_.begin(), busy_.end(), 0);
    if (idle != busy_.end() && (!batching || choose_batch(rows, options_.max_batch_size, preferred_,
                                                          options_.max_queue_delay_us == 0) == 1)) {
      const int instance = static_cast<int>(idle - busy_.begin());
      *idle = 1;
      ++running_inline_;
      ++running_;
      lock.unlock();
      std::vector<Job> jobs;
      jobs.push_back(std::move(job));
      execute(std::move(jobs), instance);
      lock.lock();
      busy_[static_cast<size_t>(instance)] = 0;
      --running_;
      --running_inline_;
      // Requests that came meanwhile may be waiting for this instance.
      if (queued_ > 0) wake_.notify_all();
      if (running_inline_ == 0) inline_done_.notify_all();
      return Status();
    }
  }
  queues_[level].push_back(std::move(job));
  ++queued_;
  wake_workers();
  return Status();
}

void DynamicBatcher::prune(Clock::time_point now, std::vector<Job>& dropped) {
  for (std::deque<Job>& q : queues_) {
    for (auto it = q.begin(); it != q.end();) {
      bool cancelled = it->request.cancel && it->request.cancel->cancelled();
      bool timed_out = !it->delayed && it->deadline <= now;
      if (timed_out && options_.delay_on_timeout && !cancelled) {
        it->delayed = true;
        ++it;
      } else if (cancelled || timed_out) {
        dropped.push_back(std::move(*it));
        it = q.erase(it);
        --queued_;
      } else {
        ++it;
      }
    }
  }
}

std::vector<std::pair<size_t, size_t>> DynamicBatcher::plan_batch(
    std::vector<int64_t>* rows) const {
  std::vector<std::pair<size_t, size_t>> picks;
  rows->clear();
  bool batching = options_.dynamic_batching && options_.max_batch_size > 0;
  const std::string* signature = nullptr;
  // Jobs that timed out under DELAY go after every other job.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t level = 0; level < queues_.size(); ++level) {
      for (size_t i = 0; i < queues_[level].size(); ++i) {
        const Job& job = queues_[level][i];
        if (job.delayed != (pass == 1)) continue;
        if (picks.empty()) {
          picks.emplace_back(level, i);
          rows->push_back(job.rows);
          signature = &job.signature;
          if (!batching) return picks;
          continue;
        }
        if (job.signature != *signature || rows->back() + job.rows > options_.max_batch_size)
          continue;
        picks.emplace_back(level, i);
        rows->push_back(rows->back() + job.rows);
        if (rows->back() == options_.max_batch_size) return picks;
      }
    }
  }
  return picks;
}

size_t DynamicBatcher::batch_to_run(const std::vector<int64_t>& rows, Clock::time_point now,
                                    Clock::time_point* wake) const {
  if (!options_.dynamic_batching || options_.max_batch_size == 0) return rows.size();
  Clock::time_point oldest = Clock::time_point::max();
  for (const auto& q : queues_)
    for (const Job& job : q) oldest = std::min(oldest, job.enqueued);
  const Clock::time_point due = oldest + std::chrono::microseconds(options_.max_queue_delay_us);
  const size_t take = choose_batch(rows, options_.max_batch_size, preferred_,
                                   options_.max_queue_delay_us == 0 || due <= now);
  if (take == 0) *wake = due;
  return take;
}

void DynamicBatcher::finish(Job& job, StatusOr<InferResponse> result) {
  InferCallback done = std::move(job.done);
  if (done) done(std::move(result));
}

void DynamicBatcher::worker(int instance) {
  std::unique_lock lock(mutex_);
  while (true) {
    Clock::time_point now = Clock::now();
    std::vector<Job> dropped;
    prune(now, dropped);
    if (!dropped.empty()) {
      lock.unlock();
      for (Job& job : dropped) {
        uint64_t ns = elapsed_ns(job.enqueued, Clock::now());
        if (stats_) stats_->record_failure(ns);
        bool cancelled = job.request.cancel && job.request.cancel->cancelled();
        finish(job, cancelled ? cancelled_error("request cancelled by the client")
                              : unavailable("request timed out after waiting {} us in the queue",
                                            ns / 1000));
      }
      lock.lock();
      continue;
    }
    if (queued_ == 0 || busy_[static_cast<size_t>(instance)]) {
      if (stopping_ && queued_ == 0) return;
      wake_.wait(lock);
      continue;
    }
    std::vector<int64_t> rows;
    std::vector<std::pair<size_t, size_t>> picks = plan_batch(&rows);
    Clock::time_point wake_at;
    size_t take = batch_to_run(rows, now, &wake_at);
    if (take == 0 && !stopping_) {
      wake_.wait_until(lock, wake_at);
      continue;
    }
    if (take > 0) picks.resize(take);  // a stopping batcher runs everything it lined up
    std::vector<Job> jobs;
    jobs.reserve(picks.size());
    for (const auto& [level, i] : picks) jobs.push_back(std::move(queues_[level][i]));
    // Erase back to front so that earlier indices stay valid.
    std::sort(picks.begin(), picks.end(), std::greater<>());
    for (const auto& [level, i] : picks) queues_[level].erase(queues_[level].begin() + i);
    queued_ -= jobs.size();
    running_ += jobs.size();
    busy_[static_cast<size_t>(instance)] = 1;
    size_t n = jobs.size();
    // The remaining jobs may form another batch for an idle instance.
    if (queued_ > 0) wake_workers();
    lock.unlock();
    execute(std::move(jobs), instance);
    lock.lock();
    busy_[static_cast<size_t>(instance)] = 0;
    running_ -= n;
  }
}

void DynamicBatcher::execute(std::vector<Job> jobs, int instance) {
  Clock::time_point start = Clock::now();
  auto fail_all = [&](const Status& status) {
    for (Job& job : jobs) {
      if (stats_) stats_->record_failure(elapsed_ns(job.enqueued, Clock::now()));
      finish(job, status);
    }
  };
  int64_t total_rows = 0;
  for (const Job& job : jobs) total_rows += job.rows;

  StatusOr<std::vector<Tensor>> outputs = std::vector<Tensor>();
  Clock::time_point gathered;
  if (!jobs[0].request.images.empty()) {
    std::vector<Tensor> images;
    images.reserve(static_cast<size_t>(total_rows));
    for (const Job& job : jobs)
      images.insert(images.end(), job.request.images.begin(), job.request.images.end());
    StatusOr<std::map<std::string, Tensor>> inputs = image_preparer_(images, instance);
    if (!inputs.ok()) return fail_all(inputs.status());
    gathered = Clock::now();
    outputs = executor_(*inputs, instance);
  } else {
    std::map<std::string, Tensor> inputs;
    const auto& names = jobs[0].request.inputs;
    for (size_t k = 0; k < names.size(); ++k) {
      const Tensor& single = names[k].tensor;
      // Jobs batch together only with inputs in the same kind of memory (the signature).
      if (jobs.size() == 1 && (!allocate_input_ || !single.is_cpu())) {
        inputs[names[k].name] = single;
        continue;
      }
      StatusOr<Tensor> t = [&]() -> StatusOr<Tensor> {
        if (single.is_cpu()) {
          std::vector<const Tensor*> parts;
          for (const Job& job : jobs) parts.push_back(&job.request.inputs[k].tensor);
          return concat_rows(parts, total_rows, allocate_input_, instance);
        }
        if (!gather_on_device_)
          return failed_precondition(
              "input '{}' is in GPU memory, and this model's batches are not formed on a GPU",
              names[k].name);
        std::vector<Tensor> parts;
        for (const Job& job : jobs) parts.push_back(job.request.inputs[k].tensor);
        return gather_on_device_(parts, instance);
      }();
      if (!t.ok()) return fail_all(t.status());
      inputs[names[k].name] = std::move(*t);
    }
    gathered = Clock::now();
    outputs = executor_(inputs, instance);
  }
  Clock::time_point inferred = Clock::now();
  if (!outputs.ok()) return fail_all(outputs.status());
  if (outputs->size() != output_names_.size())
    return fail_all(internal_error("the model returned {} outputs, expected {}", outputs->size(),
                                   output_names_.size()));

  // Split every output back by rows (views into the batch's storage, no copies).
  std::vector<InferResponse> responses(jobs.size());
  bool batched = options_.max_batch_size > 0;
  for (size_t o = 0; o < outputs->size(); ++o) {
    const Tensor& out = (*outputs)[o];
    if (batched && (out.rank() == 0 || out.shape()[0] != total_rows))
      return fail_all(internal_error("output '{}' has shape {}, expected {} rows", output_names_[o],
                                     out.shape().to_string(), total_rows));
    int64_t row = 0;
    size_t row_bytes = batched ? out.nbytes() / static_cast<size_t>(total_rows) : 0;
    for (size_t j = 0; j < jobs.size(); ++j) {
      const auto& wanted = jobs[j].request.outputs;
      bool keep = wanted.empty() ||
                  std::find(wanted.begin(), wanted.end(), output_names_[o]) != wanted.end();
      if (keep) {
        Tensor part = out;
        if (batched && jobs.size() > 1) {
          std::vector<int64_t> dims = out.shape().vec();
          dims[0] = jobs[j].rows;
          part = out.view(out.dtype(), Shape(dims), static_cast<size_t>(row) * row_bytes);
        }
        responses[j].outputs.push_back({output_names_[o], std::move(part)});
      }
      row += jobs[j].rows;
    }
  }
  Clock::time_point scattered = Clock::now();
  if (stats_)
    stats_->record_execution(total_rows, elapsed_ns(start, gathered),
                             elapsed_ns(gathered, inferred), elapsed_ns(inferred, scattered));
  for (size_t j = 0; j < jobs.size(); ++j) {
    Job& job = jobs[j];
    responses[j].model_name = job.request.model_name;
    responses[j].model_version = job.request.model_version;
    responses[j].id = job.request.id;
    if (stats_)
      stats_->record_success(elapsed_ns(job.enqueued, Clock::now()),
                             elapsed_ns(job.enqueued, start), job.rows);
    finish(job, std::move(responses[j]));
  }
}

}  // namespace kestrel::serve
