#include "kestrel/engine/engine.h"

#include <algorithm>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "kestrel/engine/backends.h"
#include "kestrel/engine/node_runner.h"
#include "kestrel/ir/shape_inference.h"
#include "kestrel/ir/verifier.h"

namespace kestrel::engine {

struct Engine::Step {
  const ir::Node* node = nullptr;
  runtime::Backend* backend = nullptr;
  std::unique_ptr<runtime::Kernel> kernel;
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
    const runtime::KernelDef def = make_kernel_def(*node, in_types, out_types);
    Status first_error;
    for (const auto& backend : engine->backends_) {
      StatusOr<std::unique_ptr<runtime::Kernel>> kernel = backend->create_kernel(def);
      if (kernel.ok()) {
        step.kernel = std::move(kernel).value();
        step.backend = backend.get();
        break;
      }
      if (kernel.status().code() != StatusCode::kUnimplemented) return kernel.status();
      if (first_error.ok()) first_error = kernel.status();
    }
    if (!step.kernel) return first_error;
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

std::string Engine::backend_summary() const {
  std::map<std::string_view, size_t> counts;
  for (const Step& s : steps_) ++counts[s.backend->name()];
  if (counts.size() <= 1) return backends_.empty() ? "none" : std::string(backends_[0]->name());
  std::string out;
  for (const auto& backend : backends_) {
    if (!counts.count(backend->name())) continue;
    out += fmt::format("{}{} ({} nodes)", out.empty() ? "" : ", ", backend->name(),
                       counts[backend->name()]);
  }
  return out;
}

StatusOr<std::vector<Tensor>> Engine::run(const std::map<std::string, Tensor>& inputs) const {
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
    std::vector<Tensor> ins(step.inputs.size());
    for (size_t i = 0; i < ins.size(); ++i) {
      if (!step.inputs[i]) continue;
      const Tensor& t = slots[*step.inputs[i]];
      if (t.device() == step.backend->device()) {
        ins[i] = t;
      } else {
        // A tensor crossing backends: copy it to where this step runs.
        KS_ASSIGN_OR_RETURN(ins[i], step.backend->allocate(t.dtype(), t.shape()));
        runtime::Backend* owner = t.is_cpu() ? step.backend : backends_[0].get();
        KS_RETURN_IF_ERROR(owner->copy(t, ins[i]));
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
    if (t.is_cpu()) {
      results.push_back(t);
      continue;
    }
    KS_ASSIGN_OR_RETURN(Tensor host, Tensor::allocate(t.dtype(), t.shape()));
    KS_RETURN_IF_ERROR(backends_[0]->copy(t, host));
    results.push_back(std::move(host));
  }
  return results;
}

}  // namespace kestrel::engine
