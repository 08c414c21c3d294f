#include "kestrel/engine/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>
#include <tuple>

#include "kestrel/base/logging.h"
#include "kestrel/engine/backends.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/op_schema.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"
#include "kestrel/plan/memory_planner.h"

namespace kestrel::engine {

struct Engine::Step {
  const ir::Node* node = nullptr;
  const ir::OpSchema* schema = nullptr;
  // Deferred steps follow a data-dependent size: their element types are only known at run time,
  // so their kernel is created by the first run, under lazy_mutex_ (hence `mutable`).
  bool deferred = false;
  mutable runtime::Backend* backend = nullptr;
  mutable std::unique_ptr<runtime::Kernel> kernel;
  std::vector<std::optional<size_t>> inputs;  // slots; nullopt for omitted inputs
  std::vector<size_t> outputs;
  std::vector<size_t> release;  // slots whose last use is this step
};

// One run's worth of state for one binding of the input symbols (one batch size): every
// intermediate in one arena planned by lifetime (plan/memory_planner.h), a stream of its own, and
// on the GPU a CUDA graph of the whole forward pass recorded after the first run, which executes
// step by step on the caller's real inputs (it is also when cuDNN measures its algorithms; a
// warm-up on uninitialised memory would feed garbage indices to Gather and friends). A context
// serves one run at a time.
class Engine::ExecutionContext {
 public:
  static StatusOr<std::unique_ptr<ExecutionContext>> create(
      const Engine& engine, const std::map<std::string, int64_t>& bindings);

  // `rows`: the inputs' batch when it is smaller than this context's (RunOptions::pad_batch_to),
  // 0 when they fill it.
  StatusOr<std::vector<Tensor>> run(const std::map<std::string, Tensor>& inputs,
                                    const RunOptions& options, int64_t rows = 0);
  const MemoryReport& memory() const { return memory_; }
  // Runs the steps `iterations` times with a timing mark between steps; the mean ms per step.
  StatusOr<std::vector<double>> profile(const std::map<std::string, Tensor>& inputs,
                                        int iterations);

 private:
  explicit ExecutionContext(const Engine& engine) : engine_(engine) {}
  // Every step, queued on the stream; with `marks`, a timing mark before the first step and after
  // each one.
  // With `wall_ms`, waits for each step and appends the step's wall time (launch and one-time
  // costs included), for the debug log's account of a context's first run.
  Status execute(std::vector<std::unique_ptr<runtime::TimingMark>>* marks = nullptr,
                 std::vector<double>* wall_ms = nullptr);
  Status bind(const std::map<std::string, Tensor>& inputs, int64_t rows = 0);
  // The tensors a step's kernel gets: this context's slots, constants on the step's device.
  void step_tensors(const Step& step, std::vector<Tensor>& ins, std::vector<Tensor>& outs) const;
  // Kernel::prepare for every step with this context's shapes (once, when it is planned).
  void prepare_kernels();

  const Engine& engine_;
  runtime::Backend* backend_ = nullptr;
  std::unique_ptr<runtime::Stream> stream_;
  Tensor arena_;
  // Per slot: an arena view, a constant (on the step's device), or a view a kernel returns.
  std::vector<Tensor> slots_;
  std::vector<bool> kernel_views_;  // slots whose tensor the producing kernel returns
  std::unique_ptr<runtime::Recording> recording_;
  bool has_run_ = false;  // the first run is executed step by step, then recorded
  MemoryReport memory_;
  std::string bindings_text_;  // "batch=32", for the debug log
};

namespace {

// Operators whose output shares its input's storage (their kernels return a view).
bool is_view_op(const std::string& op) {
  return op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" ||
         op == "Identity";
}

}  // namespace

StatusOr<std::unique_ptr<Engine::ExecutionContext>> Engine::ExecutionContext::create(
    const Engine& e, const std::map<std::string, int64_t>& bindings) {
  const auto started = std::chrono::steady_clock::now();
  auto c = std::unique_ptr<ExecutionContext>(new ExecutionContext(e));
  c->backend_ = e.backends_[0].get();
  for (const auto& [symbol, value] : bindings)
    c->bindings_text_ +=
        fmt::format("{}{}={}", c->bindings_text_.empty() ? "" : " ", symbol, value);
  std::unique_ptr<ir::NodeEvaluator> evaluator = make_cpu_evaluator();
  ir::InferenceOptions inference;
  inference.symbols = bindings;
  inference.evaluator = evaluator.get();
  KS_ASSIGN_OR_RETURN(ir::InferredTypes types, ir::infer_types(*e.graph_, inference));

  const size_t n = e.slot_template_.size();
  std::vector<int> root(n, -1);  // buffer index of each slot
  std::vector<plan::BufferLifetime> buffers;
  std::vector<const ir::Value*> value_of(n, nullptr);
  for (const auto& [v, slot] : e.slot_of_) value_of[slot] = v;
  // Sizes come from the caller's bindings (any batch): refuse, rather than overflow, what no
  // memory could hold, so the planner's sums stay exact.
  constexpr size_t kMaxPlannedBytes = size_t{1} << 60;
  size_t naive_bytes = 0;
  auto add_buffer = [&](size_t slot, int first) -> Status {
    const ir::InferredValue& t = types.at(value_of[slot]);
    if (!t.is_static())
      return unimplemented("'{}' has a data-dependent shape", value_of[slot]->name());
    root[slot] = static_cast<int>(buffers.size());
    KS_ASSIGN_OR_RETURN(const int64_t elements, checked_num_elements(t.dims));
    const size_t element_bytes = dtype_size(t.dtype);
    if (static_cast<size_t>(elements) >
        (kMaxPlannedBytes - naive_bytes) / std::max<size_t>(element_bytes, 1)) {
      return resource_exhausted("'{}' ({} elements) takes one run's activations over {} bytes",
                                value_of[slot]->name(), elements, kMaxPlannedBytes);
    }
    naive_bytes += static_cast<size_t>(elements) * element_bytes;
    buffers.push_back({static_cast<size_t>(elements) * element_bytes, first, first});
    return Status();
  };
  for (size_t slot : e.input_slots_) KS_RETURN_IF_ERROR(add_buffer(slot, -1));
  c->kernel_views_.assign(n, false);
  for (size_t i = 0; i < e.steps_.size(); ++i) {
    const Step& step = e.steps_[i];
    for (size_t k = 0; k < step.inputs.size(); ++k) {
      if (!step.inputs[k]) continue;
      const size_t slot = *step.inputs[k];
      if (step.schema->is_value_input(k) && !e.slot_template_[slot].defined()) {
        return unimplemented("{} reads shapes from a computed tensor", step.node->describe());
      }
      if (root[slot] >= 0)
        buffers[root[slot]].last = std::max(buffers[root[slot]].last, static_cast<int>(i));
    }
    for (size_t k = 0; k < step.outputs.size(); ++k) {
      const size_t slot = step.outputs[k];
      if (k == 0 && is_view_op(step.node->op_type()) && step.inputs[0]) {
        // The kernel returns a view of its input: same buffer, which must live as long as both.
        root[slot] = root[*step.inputs[0]];
        c->kernel_views_[slot] = true;
        continue;
      }
      KS_RETURN_IF_ERROR(add_buffer(slot, static_cast<int>(i)));
    }
  }
  for (size_t slot : e.output_slots_) {
    if (root[slot] >= 0) buffers[root[slot]].last = static_cast<int>(e.steps_.size());
  }
  // A view's uses keep its root alive: extend each root to its views' last uses.
  for (size_t i = 0; i < e.steps_.size(); ++i) {
    for (const auto& in : e.steps_[i].inputs) {
      if (in && root[*in] >= 0) {
        buffers[root[*in]].last = std::max(buffers[root[*in]].last, static_cast<int>(i));
      }
    }
  }
  const plan::MemoryPlan plan = plan::plan_memory(buffers);
  c->memory_ = {plan.arena_bytes, plan.naive_bytes};
  KS_ASSIGN_OR_RETURN(
      c->arena_,
      c->backend_->allocate(DType::kUInt8,
                            Shape{static_cast<int64_t>(std::max<size_t>(plan.arena_bytes, 1))}));
  KS_RETURN_IF_ERROR(c->backend_->synchronize());
  c->slots_.resize(n);
  for (size_t slot = 0; slot < n; ++slot) {
    if (e.slot_template_[slot].defined()) continue;  // constants: resolved per step
    if (value_of[slot] == nullptr || !types.count(value_of[slot])) continue;
    const ir::InferredValue& t = types.at(value_of[slot]);
    if (c->kernel_views_[slot]) {
      // View kernels read the shape of their (preallocated) output and return the view: give
      // them a placeholder with the planned shape and no storage.
      c->slots_[slot] =
          Tensor::wrap(t.dtype, Shape(t.dims), nullptr, nullptr, c->backend_->device());
    } else if (root[slot] >= 0) {
      c->slots_[slot] = c->arena_.view(t.dtype, Shape(t.dims), plan.offsets[root[slot]]);
    }
  }
  KS_ASSIGN_OR_RETURN(c->stream_, c->backend_->create_stream());
  c->prepare_kernels();
  log::debug(
      "execution context for {}: planned in {:.1f} ms ({} bytes of activations)", c->bindings_text_,
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count(),
      plan.arena_bytes);
  return c;
}

void Engine::ExecutionContext::step_tensors(const Step& step, std::vector<Tensor>& ins,
                                            std::vector<Tensor>& outs) const {
  const Engine& e = engine_;
  ins.assign(step.inputs.size(), Tensor());
  for (size_t k = 0; k < step.inputs.size(); ++k) {
    if (!step.inputs[k]) continue;
    const size_t slot = *step.inputs[k];
    const Tensor& constant = e.slot_template_[slot];
    if (!constant.defined()) {
      ins[k] = slots_[slot];
    } else if (step.schema->is_value_input(k) || backend_->device().is_cpu()) {
      ins[k] = constant;
    } else {
      ins[k] = e.device_constants_.at(slot);
    }
  }
  outs.assign(step.outputs.size(), Tensor());
  for (size_t k = 0; k < step.outputs.size(); ++k) outs[k] = slots_[step.outputs[k]];
}

void Engine::ExecutionContext::prepare_kernels() {
  std::vector<Tensor> ins, outs;
  for (const Step& step : engine_.steps_) {
    if (step.deferred) continue;  // its kernel is created by a run, under lazy_mutex_
    step_tensors(step, ins, outs);
    step.kernel->prepare(ins, outs);
  }
}

Status Engine::ExecutionContext::execute(std::vector<std::unique_ptr<runtime::TimingMark>>* marks,
                                         std::vector<double>* wall_ms) {
  const Engine& e = engine_;
  std::vector<Tensor> ins, outs;
  if (marks != nullptr) {
    KS_ASSIGN_OR_RETURN(marks->emplace_back(), stream_->mark());
  }
  for (const Step& step : e.steps_) {
    step_tensors(step, ins, outs);
    runtime::KernelContext ctx(
        ins, outs,
        [&step](DType, const Shape&) -> StatusOr<Tensor> {
          return internal_error("{}: data-dependent output in a planned run",
                                step.node->describe());
        },
        stream_->handle());
    const auto step_start = std::chrono::steady_clock::now();
    Status s = step.kernel->run(ctx);
    if (s.ok() && wall_ms != nullptr) {
      s = stream_->synchronize();
      wall_ms->push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - step_start)
              .count());
    }
    if (!s.ok()) {
      return s.message().starts_with(step.node->describe()) ? s
                                                            : s.with_context(step.node->describe());
    }
    for (size_t k = 0; k < step.outputs.size(); ++k) {
      if (kernel_views_[step.outputs[k]]) slots_[step.outputs[k]] = outs[k];
    }
    if (marks != nullptr) {
      KS_ASSIGN_OR_RETURN(marks->emplace_back(), stream_->mark());
    }
  }
  return Status();
}

Status Engine::ExecutionContext::bind(const std::map<std::string, Tensor>& inputs, int64_t rows) {
  const Engine& e = engine_;
  for (size_t k = 0; k < e.inputs_.size(); ++k) {
    Tensor& dst = slots_[e.input_slots_[k]];
    const Tensor& src = inputs.at(e.inputs_[k].name);
    if (rows == 0) {
      KS_RETURN_IF_ERROR(backend_->copy_async(src, dst, *stream_));
      continue;
    }
    // The given rows first, then copies of what is filled so far (doubling) up to the context's
    // batch: the extra rows hold real pixels, whose results are dropped.
    const int64_t batch = dst.shape()[0];
    const size_t row_bytes = dst.nbytes() / static_cast<size_t>(batch);
    auto part = [&](int64_t first, int64_t count) {
      std::vector<int64_t> dims = dst.shape().vec();
      dims[0] = count;
      return dst.view(dst.dtype(), Shape(dims), static_cast<size_t>(first) * row_bytes);
    };
    Tensor head = part(0, rows);
    KS_RETURN_IF_ERROR(backend_->copy_async(src, head, *stream_));
    for (int64_t filled = rows; filled < batch;) {
      const int64_t n = std::min(filled, batch - filled);
      Tensor to = part(filled, n);
      KS_RETURN_IF_ERROR(backend_->copy_async(part(0, n), to, *stream_));
      filled += n;
    }
  }
  return Status();
}

StatusOr<std::vector<double>> Engine::ExecutionContext::profile(
    const std::map<std::string, Tensor>& inputs, int iterations) {
  KS_RETURN_IF_ERROR(bind(inputs));
  KS_RETURN_IF_ERROR(execute());  // warm-up: algorithm searches and first-touch costs
  std::vector<double> ms(engine_.steps_.size(), 0.0);
  for (int it = 0; it < iterations; ++it) {
    std::vector<std::unique_ptr<runtime::TimingMark>> marks;
    KS_RETURN_IF_ERROR(execute(&marks));
    for (size_t i = 0; i < ms.size(); ++i) {
      KS_ASSIGN_OR_RETURN(double t, marks[i + 1]->ms_since(*marks[i]));
      ms[i] += t / iterations;
    }
  }
  return ms;
}

StatusOr<std::vector<Tensor>> Engine::ExecutionContext::run(
    const std::map<std::string, Tensor>& inputs, const RunOptions& options, int64_t rows) {
  const Engine& e = engine_;
  auto ms_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  };
  const auto started = std::chrono::steady_clock::now();
  // The first run's account, at debug level: binding, each step's wall time, recording, outputs.
  const bool account = !has_run_ && spdlog::should_log(spdlog::level::debug);
  std::vector<double> step_ms;
  KS_RETURN_IF_ERROR(bind(inputs, rows));
  if (account) KS_RETURN_IF_ERROR(stream_->synchronize());
  const double bind_ms = ms_since(started);
  if (recording_) {
    KS_RETURN_IF_ERROR(recording_->replay(*stream_));
  } else {
    KS_RETURN_IF_ERROR(execute(nullptr, account ? &step_ms : nullptr));
  }
  double record_ms = 0;
  if (!has_run_) {
    has_run_ = true;
    const auto recording = std::chrono::steady_clock::now();
    if (e.options_.cuda_graphs) {
      KS_RETURN_IF_ERROR(stream_->synchronize());
      // Recording queues nothing: the arena still holds this run's results afterwards.
      StatusOr<std::unique_ptr<runtime::Recording>> r =
          backend_->record(*stream_, [this] { return execute(); });
      if (r.ok()) {
        recording_ = std::move(r).value();
      } else if (r.status().code() != StatusCode::kUnimplemented) {
        return r.status();
      }
    }
    record_ms = ms_since(recording);
  }
  // The arena is this context's: outputs are copied out before it serves the next run.
  std::vector<Tensor> results;
  for (size_t slot : e.output_slots_) {
    Tensor src = e.slot_template_[slot].defined() ? e.slot_template_[slot] : slots_[slot];
    if (rows > 0) {  // a padded run: the given rows only
      const int64_t batch = slots_[e.input_slots_[0]].shape()[0];
      if (src.rank() == 0 || src.shape()[0] != batch)
        return failed_precondition("output {} of shape {} has no batch axis of {}: cannot pad",
                                   results.size(), src.shape(), batch);
      std::vector<int64_t> dims = src.shape().vec();
      dims[0] = rows;
      src = src.view(src.dtype(), Shape(dims), 0);
    }
    Tensor dst;
    if (options.outputs_on_device && !backend_->device().is_cpu()) {
      KS_ASSIGN_OR_RETURN(dst, backend_->allocate(src.dtype(), src.shape()));
      KS_RETURN_IF_ERROR(backend_->synchronize());  // the allocation is ordered on another stream
    } else {
      KS_ASSIGN_OR_RETURN(dst, backend_->allocate_host(src.dtype(), src.shape()));
    }
    KS_RETURN_IF_ERROR(backend_->copy_async(src, dst, *stream_));
    results.push_back(std::move(dst));
  }
  KS_RETURN_IF_ERROR(stream_->synchronize());
  if (account) {
    double steps_total = 0;
    std::vector<size_t> order;
    for (size_t i = 0; i < step_ms.size(); ++i) {
      steps_total += step_ms[i];
      order.push_back(i);
    }
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return step_ms[a] > step_ms[b]; });
    std::string slowest;
    for (size_t k = 0; k < std::min<size_t>(order.size(), 4); ++k)
      slowest += fmt::format("{}{} {:.1f} ms", k ? ", " : "", e.steps_[order[k]].node->name(),
                             step_ms[order[k]]);
    log::debug(
        "execution context for {}: first run {:.1f} ms: inputs bound in {:.1f} ms, {} steps in "
        "{:.1f} ms (slowest: {}), CUDA graph {}, outputs {:.1f} ms",
        bindings_text_, ms_since(started), bind_ms, step_ms.size(), steps_total, slowest,
        recording_ ? fmt::format("recorded in {:.1f} ms", record_ms) : "none",
        ms_since(started) - bind_ms - steps_total - record_ms);
  }
  return results;
}

Engine::Engine() = default;
Engine::~Engine() = default;

StatusOr<std::unique_ptr<Engine::ExecutionContext>> Engine::acquire_context(
    const std::map<std::string, int64_t>& bindings) const {
  {
    std::lock_guard<std::mutex> lock(contexts_mutex_);
    auto it = idle_contexts_.find(bindings);
    if (it != idle_contexts_.end() && !it->second.empty()) {
      std::unique_ptr<ExecutionContext> c = std::move(it->second.back());
      it->second.pop_back();
      return c;
    }
  }
  return ExecutionContext::create(*this, bindings);
}

StatusOr<std::vector<Engine::LayerProfile>> Engine::profile(
    const std::map<std::string, Tensor>& inputs, int iterations) const {
  if (iterations < 1) return invalid_argument("profile needs at least one iteration");
  KS_ASSIGN_OR_RETURN(auto bindings, bind_inputs(inputs));
  if (!plannable_ || !options_.plan) {
    return failed_precondition("this engine runs node by node: only planned engines are profiled");
  }
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ExecutionContext> context, acquire_context(bindings));
  StatusOr<std::vector<double>> ms = context->profile(inputs, iterations);
  release_context(bindings, std::move(context));
  KS_RETURN_IF_ERROR(ms.status());

  std::unique_ptr<ir::NodeEvaluator> evaluator = make_cpu_evaluator();
  ir::InferenceOptions inference;
  inference.symbols = bindings;
  inference.evaluator = evaluator.get();
  KS_ASSIGN_OR_RETURN(ir::InferredTypes types, ir::infer_types(*graph_, inference));
  KS_ASSIGN_OR_RETURN(auto flops, ir::count_flops(*graph_, types));
  auto bytes_of = [&](const ir::Value* v) -> int64_t {
    auto it = types.find(v);
    if (v == nullptr || it == types.end() || !it->second.is_static()) return 0;
    StatusOr<int64_t> n = checked_num_elements(it->second.dims);
    return n.ok() ? *n * static_cast<int64_t>(dtype_size(it->second.dtype)) : 0;
  };
  std::vector<LayerProfile> layers;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const ir::Node& node = *steps_[i].node;
    LayerProfile p;
    p.node = node.name();
    p.op = node.op_type();
    p.ms = (*ms)[i];
    if (auto f = flops.find(&node); f != flops.end()) p.flops = f->second;
    for (const ir::Value* v : node.inputs()) p.bytes += bytes_of(v);
    for (const ir::Value* v : node.outputs()) p.bytes += bytes_of(v);
    if (!node.outputs().empty()) {
      auto it = types.find(node.outputs()[0]);
      if (it != types.end()) p.shape = Shape(it->second.dims).to_string();
    }
    layers.push_back(std::move(p));
  }
  return layers;
}

std::map<std::string, std::string> Engine::target() const { return backends_[0]->target(); }

bool Engine::plannable(const std::map<std::string, int64_t>& bindings) const {
  std::lock_guard<std::mutex> lock(contexts_mutex_);
  return !unplannable_bindings_.count(bindings);
}

void Engine::release_context(const std::map<std::string, int64_t>& bindings,
                             std::unique_ptr<ExecutionContext> context) const {
  std::lock_guard<std::mutex> lock(contexts_mutex_);
  idle_contexts_[bindings].push_back(std::move(context));
}

StatusOr<Engine::MemoryReport> Engine::memory_report(
    const std::map<std::string, int64_t>& bindings) const {
  if (!plannable_) return failed_precondition("this engine runs node by node: nothing is planned");
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ExecutionContext> c, acquire_context(bindings));
  const MemoryReport report = c->memory();
  release_context(bindings, std::move(c));
  return report;
}

StatusOr<std::unique_ptr<Engine>> Engine::create(std::unique_ptr<ir::Graph> graph,
                                                 const EngineOptions& options) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  auto engine = std::unique_ptr<Engine>(new Engine());
  KS_RETURN_IF_ERROR(graph->sort_topologically());
  std::unique_ptr<ir::NodeEvaluator> evaluator = make_cpu_evaluator();
  KS_RETURN_IF_ERROR(ir::verify_graph(*graph, evaluator.get()));
  // Element types do not depend on the symbols; infer them once for the kernel defs.
  ir::InferenceOptions inference;
  inference.evaluator = evaluator.get();
  KS_ASSIGN_OR_RETURN(ir::InferredTypes types, ir::infer_types(*graph, inference));
  const double checked_ms = ms_since(start);
  KS_ASSIGN_OR_RETURN(engine->backends_, create_backends(options));
  const double backends_ms = ms_since(start);
  engine->tuning_.merge(options.tuning, /*touched=*/true);

  for (const ir::Value* v : graph->values()) {
    engine->slot_of_[v] = engine->slot_template_.size();
    engine->slot_template_.push_back(v->has_constant() ? v->constant() : Tensor());
  }
  for (const ir::Value* v : graph->inputs()) {
    engine->inputs_.push_back({v->name(), v->type()});
    engine->input_slots_.push_back(engine->slot_of_[v]);
  }
  for (const ir::Value* v : graph->outputs()) {
    engine->outputs_.push_back({v->name(), v->type()});
    engine->output_slots_.push_back(engine->slot_of_[v]);
  }

  std::map<size_t, size_t> last_use;  // slot -> step index
  for (const ir::Node* node : graph->nodes()) {
    Step step;
    step.node = node;
    step.schema = ir::find_op_schema(node->op_type());
    std::vector<DType> in_types, out_types;
    for (const ir::Value* in : node->inputs()) {
      step.inputs.push_back(in ? std::optional(engine->slot_of_[in]) : std::nullopt);
      in_types.push_back(in ? types.at(in).dtype : DType::kUndefined);
      if (in) last_use[engine->slot_of_[in]] = engine->steps_.size();
    }
    for (const ir::Value* out : node->outputs()) {
      step.outputs.push_back(engine->slot_of_[out]);
      out_types.push_back(types.at(out).dtype);
    }
    const bool types_known =
        std::none_of(out_types.begin(), out_types.end(),
                     [](DType d) { return d == DType::kUndefined; }) &&
        std::all_of(node->inputs().begin(), node->inputs().end(), [&](const ir::Value* in) {
          return in == nullptr || types.at(in).dtype != DType::kUndefined;
        });
    if (!types_known) {
      step.deferred = true;
      engine->steps_.push_back(std::move(step));
      continue;
    }
    KS_ASSIGN_OR_RETURN(std::tie(step.backend, step.kernel),
                        engine->create_kernel(make_kernel_def(*node, in_types, out_types)));
    KS_RETURN_IF_ERROR(engine->upload_constants(step));
    engine->steps_.push_back(std::move(step));
  }
  std::set<size_t> keep(engine->output_slots_.begin(), engine->output_slots_.end());
  for (const auto& [slot, step] : last_use) {
    if (!keep.count(slot) && !engine->slot_template_[slot].defined()) {
      engine->steps_[step].release.push_back(slot);
    }
  }
  engine->graph_ = std::move(graph);
  engine->options_ = options;
  // Plannable: every step on the first backend, none deferred, and every input whose contents
  // decide shapes a constant (fold_constants makes them so; an unoptimized export computes them).
  engine->plannable_ =
      std::all_of(engine->steps_.begin(), engine->steps_.end(), [&](const Step& s) {
        for (size_t k = 0; k < s.inputs.size(); ++k) {
          if (s.inputs[k] && s.schema->is_value_input(k) &&
              !engine->slot_template_[*s.inputs[k]].defined()) {
            return false;
          }
        }
        return !s.deferred && s.backend == engine->backends_[0].get();
      });
  log::debug(
      "engine created in {:.1f} ms: graph verified and typed at {:.1f} ms, backends up at "
      "{:.1f} ms, then {} kernels bound and their constants placed",
      ms_since(start), checked_ms, backends_ms, engine->steps_.size());
  return engine;
}

Status Engine::bind_lazily(const Step& step, const std::vector<Tensor>& slots) const {
  const ir::Node& node = *step.node;
  std::vector<DType> in_types(node.num_inputs(), DType::kUndefined);
  std::vector<Shape> shapes(node.num_inputs());
  std::vector<const Tensor*> values(node.num_inputs(), nullptr);
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    if (!step.inputs[i]) continue;
    const Tensor& t = slots[*step.inputs[i]];
    in_types[i] = t.dtype();
    shapes[i] = t.shape();
    if (t.is_cpu()) values[i] = &t;
  }
  KS_ASSIGN_OR_RETURN(std::vector<ir::InferredValue> outs,
                      ir::infer_node(node, in_types, shapes, values));
  std::vector<DType> out_types;
  for (const auto& o : outs) out_types.push_back(o.dtype);
  KS_ASSIGN_OR_RETURN(std::tie(step.backend, step.kernel),
                      create_kernel(make_kernel_def(node, in_types, out_types)));
  return Status();
}

StatusOr<std::pair<runtime::Backend*, std::unique_ptr<runtime::Kernel>>> Engine::create_kernel(
    const runtime::KernelDef& def) const {
  Status first_error;
  runtime::KernelDef tuned = def;
  tuned.tuning = &tuning_;
  for (const auto& backend : backends_) {
    StatusOr<std::unique_ptr<runtime::Kernel>> kernel = backend->create_kernel(tuned);
    if (kernel.ok()) return std::pair{backend.get(), std::move(kernel).value()};
    if (kernel.status().code() != StatusCode::kUnimplemented) return kernel.status();
    if (first_error.ok()) first_error = kernel.status();
  }
  return first_error;
}

Status Engine::upload_constants(const Step& step) {
  // Constants a device kernel reads are copied to its device once, here, not at every run.
  const ir::Node* node = step.node;
  for (size_t i = 0; i < node->num_inputs(); ++i) {
    const ir::Value* in = node->input(i);
    if (!in || !in->has_constant() || step.backend->device().is_cpu() ||
        step.schema->is_value_input(i)) {
      continue;
    }
    const size_t slot = slot_of_.at(in);
    if (device_constants_.count(slot)) continue;
    KS_ASSIGN_OR_RETURN(Tensor copy, step.backend->allocate(in->dtype(), in->constant().shape()));
    KS_RETURN_IF_ERROR(step.backend->copy(in->constant(), copy));
    device_constants_[slot] = std::move(copy);
  }
  return Status();
}

std::string Engine::backend_summary() const {
  std::map<std::string_view, size_t> counts;
  std::lock_guard<std::mutex> lock(lazy_mutex_);
  for (const Step& s : steps_) ++counts[s.backend ? s.backend->name() : "deferred"];
  if (counts.size() <= 1) return backends_.empty() ? "none" : std::string(backends_[0]->name());
  std::string out;
  for (const auto& backend : backends_) {
    if (!counts.count(backend->name())) continue;
    out += fmt::format("{}{} ({} nodes)", out.empty() ? "" : ", ", backend->name(),
                       counts[backend->name()]);
  }
  return out;
}

Device Engine::device() const { return backends_[0]->device(); }

StatusOr<Tensor> Engine::concat_rows_on_device(std::span<const Tensor> parts) const {
  runtime::Backend& backend = *backends_[0];
  if (backend.device().is_cpu())
    return failed_precondition("the engine runs on the CPU: it takes no inputs in GPU memory");
  if (parts.empty()) return invalid_argument("nothing to concatenate");
  const Tensor& first = parts.front();
  if (first.rank() == 0) return invalid_argument("a scalar has no rows to concatenate");
  std::vector<int64_t> dims = first.shape().vec();
  dims[0] = 0;
  for (const Tensor& part : parts) {
    if (part.dtype() != first.dtype() || part.rank() != first.rank() ||
        !std::equal(dims.begin() + 1, dims.end(), part.shape().vec().begin() + 1))
      return invalid_argument("cannot concatenate {}{} with {}{}", part.dtype(), part.shape(),
                              first.dtype(), first.shape());
    dims[0] += part.shape()[0];
  }
  KS_ASSIGN_OR_RETURN(Tensor out, backend.allocate(first.dtype(), Shape(dims)));
  KS_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Stream> stream, backend.create_stream());
  KS_RETURN_IF_ERROR(backend.synchronize());  // the allocation is ordered on another stream
  size_t at = 0;
  for (const Tensor& part : parts) {
    Tensor to = out.view(part.dtype(), part.shape(), at);
    KS_RETURN_IF_ERROR(backend.copy_async(part, to, *stream));
    at += part.nbytes();
  }
  KS_RETURN_IF_ERROR(stream->synchronize());
  return out;
}

StatusOr<Tensor> Engine::to_device(const Tensor& host) const {
  KS_ASSIGN_OR_RETURN(Tensor t, backends_[0]->allocate(host.dtype(), host.shape()));
  KS_RETURN_IF_ERROR(backends_[0]->copy(host, t));
  return t;
}

StatusOr<Tensor> Engine::to_host(const Tensor& t) const {
  if (t.is_cpu()) return t;
  KS_ASSIGN_OR_RETURN(Tensor host, backends_[0]->allocate_host(t.dtype(), t.shape()));
  KS_RETURN_IF_ERROR(backends_[0]->copy(t, host));
  return host;
}

StatusOr<Tensor> Engine::allocate_host(DType dtype, const Shape& shape) const {
  return backends_[0]->allocate_host(dtype, shape);
}

Status Engine::synchronize() const { return backends_[0]->synchronize(); }

StatusOr<std::map<std::string, int64_t>> Engine::bind_inputs(
    const std::map<std::string, Tensor>& inputs) const {
  std::map<std::string, int64_t> bindings;
  for (const auto& entry : inputs) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture those in lambdas.
    const std::string& name = entry.first;
    auto it = std::find_if(inputs_.begin(), inputs_.end(),
                           [&](const TensorInfo& i) { return i.name == name; });
    if (it == inputs_.end()) return invalid_argument("the model has no input named '{}'", name);
  }
  for (size_t k = 0; k < inputs_.size(); ++k) {
    const TensorInfo& info = inputs_[k];
    auto it = inputs.find(info.name);
    if (it == inputs.end()) return invalid_argument("input '{}' is missing", info.name);
    const Tensor& t = it->second;
    if (t.dtype() != info.type.dtype) {
      return invalid_argument("input '{}' must be {}, got {}", info.name, info.type.dtype,
                              t.dtype());
    }
    const ir::SymShape& declared = info.type.shape;
    if (t.rank() != declared.rank()) {
      return invalid_argument("input '{}' must have shape {}, got {}", info.name,
                              declared.to_string(), t.shape());
    }
    for (size_t d = 0; d < t.rank(); ++d) {
      const ir::SymDim& dim = declared[d];
      const int64_t got = t.shape()[d];
      if (dim.is_known() && dim.value() != got) {
        return invalid_argument("input '{}' must have shape {}, got {}", info.name,
                                declared.to_string(), t.shape());
      }
      if (dim.is_symbolic()) {
        // Inputs declare plain symbols (coefficient 1, no offset).
        auto [pos, inserted] = bindings.emplace(dim.symbol_name(), got);
        if (!inserted && pos->second != got) {
          return invalid_argument("input '{}' has {} = {}, but another input has {} = {}",
                                  info.name, dim.symbol_name(), got, dim.symbol_name(),
                                  pos->second);
        }
      }
    }
  }
  return bindings;
}

StatusOr<std::string> Engine::batch_symbol() const {
  std::string batch;
  auto check = [&](const TensorInfo& t, const char* what) -> Status {
    const ir::SymShape& shape = t.type.shape;
    if (!shape.has_rank() && what == std::string_view("output"))
      return Status();  // not inferred: a padded run checks the computed shape
    if (!shape.has_rank() || shape.rank() == 0 || !shape[0].is_symbolic() || shape[0].coef() != 1 ||
        shape[0].offset() != 0 || (!batch.empty() && shape[0].symbol_name() != batch))
      return failed_precondition("{} '{}' of shape {} has no batch axis{}", what, t.name,
                                 shape.to_string(), batch.empty() ? "" : " '" + batch + "'");
    batch = shape[0].symbol_name();
    return Status();
  };
  for (const TensorInfo& t : inputs_) KS_RETURN_IF_ERROR(check(t, "input"));
  for (const TensorInfo& t : outputs_) KS_RETURN_IF_ERROR(check(t, "output"));
  if (batch.empty()) return failed_precondition("the model has no inputs");
  return batch;
}

bool Engine::compiles_per_batch_size() const {
  if (device().is_cpu()) return false;
  for (const ir::Node* n : graph_->nodes()) {
    if ((n->op_type() == "Conv" || n->op_type() == "FusedConv") &&
        !n->attrs().has("kestrel_kernel"))
      return true;
  }
  return false;
}

StatusOr<std::vector<Tensor>> Engine::run(const std::map<std::string, Tensor>& inputs,
                                          const RunOptions& options) const {
  KS_ASSIGN_OR_RETURN(auto bindings, bind_inputs(inputs));
  int64_t rows = 0;  // nonzero: a batch of `rows` run in the context for options.pad_batch_to
  if (options.pad_batch_to > 0) {
    KS_ASSIGN_OR_RETURN(std::string batch, batch_symbol());
    rows = bindings.at(batch);
    if (options.pad_batch_to < rows)
      return invalid_argument("cannot pad a batch of {} to {}", rows, options.pad_batch_to);
    if (options.pad_batch_to == rows) {
      rows = 0;
    } else {
      bindings[batch] = options.pad_batch_to;
    }
  }
  if (plannable_ && options_.plan && plannable(bindings)) {
    StatusOr<std::unique_ptr<ExecutionContext>> context = acquire_context(bindings);
    if (context.ok()) {
      StatusOr<std::vector<Tensor>> out = (*context)->run(inputs, options, rows);
      release_context(bindings, std::move(context).value());
      return out;
    }
    if (context.status().code() != StatusCode::kUnimplemented) return context.status();
    // A data-dependent shape: this binding runs node by node from now on.
    std::lock_guard<std::mutex> lock(contexts_mutex_);
    unplannable_bindings_.insert(bindings);
  }
  std::vector<Tensor> slots = slot_template_;
  for (size_t k = 0; k < inputs_.size(); ++k) slots[input_slots_[k]] = inputs.at(inputs_[k].name);

  for (const Step& step : steps_) {
    std::unique_lock<std::mutex> lazy;
    if (step.deferred) {
      // Element types are known only now: the first run creates the kernel for every later run.
      lazy = std::unique_lock<std::mutex>(lazy_mutex_);
      if (step.kernel == nullptr) KS_RETURN_IF_ERROR(bind_lazily(step, slots));
    }
    std::vector<Tensor> ins(step.inputs.size());
    for (size_t i = 0; i < ins.size(); ++i) {
      if (!step.inputs[i]) continue;
      const size_t slot = *step.inputs[i];
      const Tensor& t = slots[slot];
      // Value inputs (their contents decide shapes) are read on the host, on every backend.
      const Device want = step.schema->is_value_input(i) ? Device::cpu() : step.backend->device();
      if (t.device() == want) {
        ins[i] = t;
      } else if (auto c = device_constants_.find(slot);
                 c != device_constants_.end() && c->second.device() == want) {
        ins[i] = c->second;
      } else {
        // A tensor crossing devices: copy it to where this step reads it. The device backend
        // (first in the list) does every copy that involves its device.
        runtime::Backend* target = want.is_cpu() ? backends_.back().get() : step.backend;
        KS_ASSIGN_OR_RETURN(ins[i], target->allocate(t.dtype(), t.shape()));
        KS_RETURN_IF_ERROR(backends_[0]->copy(t, ins[i]));
      }
    }
    KS_ASSIGN_OR_RETURN(std::vector<Tensor> outs,
                        run_node(*step.node, *step.kernel, *step.backend, ins));
    for (size_t i = 0; i < outs.size(); ++i) slots[step.outputs[i]] = std::move(outs[i]);
    for (size_t slot : step.release) slots[slot] = Tensor();
  }

  std::vector<Tensor> results;
  for (size_t slot : output_slots_) {
    const Tensor& t = slots[slot];
    if (options.outputs_on_device) {
      results.push_back(t);
      continue;
    }
    KS_ASSIGN_OR_RETURN(Tensor host, to_host(t));
    results.push_back(std::move(host));
  }
  return results;
}

std::vector<int64_t> Engine::warm_batch_sizes() const {
  std::vector<int64_t> sizes;
  if (inputs_.empty() || !inputs_[0].type.shape.has_rank() || inputs_[0].type.shape.rank() == 0) {
    return sizes;
  }
  const ir::SymDim& batch = inputs_[0].type.shape[0];
  std::lock_guard<std::mutex> lock(contexts_mutex_);
  for (const auto& [bindings, contexts] : idle_contexts_) {
    if (contexts.empty()) continue;
    if (batch.is_known()) {
      sizes.push_back(batch.value());
    } else if (batch.is_symbolic()) {
      auto it = bindings.find(batch.symbol_name());
      if (it != bindings.end()) sizes.push_back(it->second);
    }
  }
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

}  // namespace kestrel::engine
