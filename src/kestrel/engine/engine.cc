#include "kestrel/engine/engine.h"

#include <algorithm>
#include <optional>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "kestrel/engine/backends.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/op_schema.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"

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

Engine::Engine() = default;
Engine::~Engine() = default;

StatusOr<std::unique_ptr<Engine>> Engine::create(std::unique_ptr<ir::Graph> graph,
                                                 const EngineOptions& options) {
  auto engine = std::unique_ptr<Engine>(new Engine());
  KS_RETURN_IF_ERROR(graph->sort_topologically());
  std::unique_ptr<ir::NodeEvaluator> evaluator = make_cpu_evaluator();
  KS_RETURN_IF_ERROR(ir::verify_graph(*graph, evaluator.get()));
  // Element types do not depend on the symbols; infer them once for the kernel defs.
  ir::InferenceOptions inference;
  inference.evaluator = evaluator.get();
  KS_ASSIGN_OR_RETURN(ir::InferredTypes types, ir::infer_types(*graph, inference));
  KS_ASSIGN_OR_RETURN(engine->backends_, create_backends(options));

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
  for (const auto& backend : backends_) {
    StatusOr<std::unique_ptr<runtime::Kernel>> kernel = backend->create_kernel(def);
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

StatusOr<Tensor> Engine::to_device(const Tensor& host) const {
  KS_ASSIGN_OR_RETURN(Tensor t, backends_[0]->allocate(host.dtype(), host.shape()));
  KS_RETURN_IF_ERROR(backends_[0]->copy(host, t));
  return t;
}

StatusOr<Tensor> Engine::to_host(const Tensor& t) const {
  if (t.is_cpu()) return t;
  KS_ASSIGN_OR_RETURN(Tensor host, Tensor::allocate(t.dtype(), t.shape()));
  KS_RETURN_IF_ERROR(backends_[0]->copy(t, host));
  return host;
}

Status Engine::synchronize() const { return backends_[0]->synchronize(); }

StatusOr<std::vector<Tensor>> Engine::run(const std::map<std::string, Tensor>& inputs,
                                          const RunOptions& options) const {
  std::vector<Tensor> slots = slot_template_;
  std::map<std::string, int64_t> bindings;
  for (const auto& [name, tensor] : inputs) {
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
    slots[input_slots_[k]] = t;
  }

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
      const Device want =
          step.schema->is_value_input(i) ? Device::cpu() : step.backend->device();
      if (t.device() == want) {
        ins[i] = t;
      } else if (auto c = device_constants_.find(slot); c != device_constants_.end() &&
                                                          c->second.device() == want) {
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

}  // namespace kestrel::engine
