#include "kestrel/engine/node_runner.h"

#include "kestrel/ir/op_schema.h"
#include "kestrel/runtime/cpu/cpu_backend.h"

namespace kestrel::engine {

runtime::KernelDef make_kernel_def(const ir::Node& node, std::vector<DType> input_dtypes,
                                   std::vector<DType> output_dtypes) {
  runtime::KernelDef def;
  def.op_type = node.op_type();
  def.node_name = node.name();
  def.attrs = node.attrs();
  def.input_dtypes = std::move(input_dtypes);
  def.output_dtypes = std::move(output_dtypes);
  def.constant_inputs.resize(node.num_inputs());
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    if (node.has_input(i) && node.input(i)->has_constant()) {
      def.constant_inputs[i] = node.input(i)->constant();
    }
  }
  return def;
}

StatusOr<std::vector<Tensor>> run_node(const ir::Node& node, runtime::Kernel& kernel,
                                       runtime::Backend& backend, std::span<const Tensor> inputs) {
  const size_t n = inputs.size();
  std::vector<DType> dtypes(n, DType::kUndefined);
  std::vector<Shape> shapes(n);
  std::vector<const Tensor*> values(n, nullptr);
  for (size_t i = 0; i < n; ++i) {
    if (!inputs[i].defined()) continue;
    dtypes[i] = inputs[i].dtype();
    shapes[i] = inputs[i].shape();
    if (inputs[i].is_cpu()) values[i] = &inputs[i];
  }
  KS_ASSIGN_OR_RETURN(std::vector<ir::InferredValue> types,
                      ir::infer_node(node, dtypes, shapes, values));
  std::vector<Tensor> outputs(types.size());
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i].dtype == DType::kUndefined || !types[i].is_static()) continue;
    StatusOr<Tensor> t = backend.allocate(types[i].dtype, Shape(types[i].dims));
    if (!t.ok()) return t.status().with_context(node.describe());
    outputs[i] = std::move(t).value();
  }
  runtime::KernelContext ctx(
      inputs, outputs, [&backend](DType d, const Shape& s) { return backend.allocate(d, s); });
  Status status = kernel.run(ctx);
  if (!status.ok()) {
    return status.message().starts_with(node.describe()) ? status
                                                         : status.with_context(node.describe());
  }
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i].dtype == DType::kUndefined) continue;
    const Tensor& t = outputs[i];
    bool ok = t.defined() && t.dtype() == types[i].dtype && t.rank() == types[i].dims.size();
    for (size_t d = 0; ok && d < t.rank(); ++d) {
      ok = types[i].dims[d] < 0 || types[i].dims[d] == t.shape()[d];
    }
    if (!ok) {
      return internal_error("{}: kernel produced output {} as {}, expected {}{}", node.describe(),
                            i, t.debug_string(0), types[i].dtype,
                            Shape(std::vector<int64_t>(types[i].dims)));
    }
  }
  return outputs;
}

namespace {

class CpuEvaluator final : public ir::NodeEvaluator {
 public:
  CpuEvaluator() : backend_(runtime::create_cpu_backend({.reference_only = true})) {}

  StatusOr<std::vector<Tensor>> evaluate(const ir::Node& node,
                                         std::span<const Tensor> inputs) override {
    std::vector<DType> in_types;
    for (const Tensor& t : inputs) in_types.push_back(t.defined() ? t.dtype() : DType::kUndefined);
    // Output types come from the shape rule; the kernel def needs them up front.
    std::vector<Shape> shapes;
    std::vector<const Tensor*> values;
    for (const Tensor& t : inputs) {
      shapes.push_back(t.defined() ? t.shape() : Shape());
      values.push_back(t.defined() ? &t : nullptr);
    }
    KS_ASSIGN_OR_RETURN(std::vector<ir::InferredValue> types,
                        ir::infer_node(node, in_types, shapes, values));
    std::vector<DType> out_types;
    for (const auto& t : types) out_types.push_back(t.dtype);
    KS_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Kernel> kernel,
                        backend_->create_kernel(make_kernel_def(node, in_types, out_types)));
    return run_node(node, *kernel, *backend_, inputs);
  }

 private:
  std::unique_ptr<runtime::Backend> backend_;
};

}  // namespace

std::unique_ptr<ir::NodeEvaluator> make_cpu_evaluator() { return std::make_unique<CpuEvaluator>(); }

}  // namespace kestrel::engine
