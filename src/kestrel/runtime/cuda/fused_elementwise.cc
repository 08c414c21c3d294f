// Engine kernel of FusedElementwise on the GPU (device code in fused_elementwise.cu): the program
// is compiled to register code once, when the kernel is made; each run merges the output's
// dimensions where the inputs allow and launches one kernel. float32 and float16; other element
// types, more than 8 inputs or programs needing more registers than the kernel has are left to
// the CPU (UNIMPLEMENTED).
#include "kestrel/runtime/fused_elementwise.h"

#include <algorithm>
#include <vector>

#include "kestrel/runtime/cuda/cuda_kernels.h"
#include "kestrel/runtime/cuda/fused_elementwise_launch.h"

namespace kestrel::runtime::cuda {
namespace {

struct RegisterCode {
  std::vector<FusedRegInstr> code;
  int num_registers = 0;
  int result = 0;
};

// Assigns registers to the program's values: input k to register k, each result to the lowest
// register free at that point, a register being free again after its value's last read.
StatusOr<RegisterCode> allocate_registers(const KernelDef& def,
                                          const std::vector<FusedInstr>& program,
                                          size_t num_inputs) {
  if (program.size() > static_cast<size_t>(kMaxFusedCode)) {
    return unimplemented("{}: {} instructions, the CUDA kernel takes {}", def.describe(),
                         program.size(), kMaxFusedCode);
  }
  const size_t values = num_inputs + program.size();
  std::vector<int64_t> last_read(values, -1);
  for (size_t j = 0; j < program.size(); ++j) {
    for (int32_t ref : {program[j].a, program[j].b}) {
      if (ref >= 0) last_read[static_cast<size_t>(ref)] = static_cast<int64_t>(j);
    }
  }
  last_read[values - 1] = static_cast<int64_t>(program.size());  // the result: read at the end
  std::vector<int> reg(values, -1);
  std::vector<bool> busy(kMaxFusedRegisters, false);
  RegisterCode out;
  for (size_t k = 0; k < num_inputs; ++k) {
    reg[k] = static_cast<int>(k);
    busy[k] = last_read[k] >= 0;
  }
  out.num_registers = static_cast<int>(num_inputs);
  for (size_t j = 0; j < program.size(); ++j) {
    const FusedInstr& in = program[j];
    FusedRegInstr r;
    r.op = in.op;
    r.alpha = in.alpha;
    r.beta = in.beta;
    r.a = static_cast<int8_t>(in.a >= 0 ? reg[static_cast<size_t>(in.a)] : -1);
    r.b = static_cast<int8_t>(in.b >= 0 ? reg[static_cast<size_t>(in.b)] : -1);
    // Operands read for the last time free their registers: the kernel reads both operands
    // before it writes the result, so the result may take one of them.
    for (int32_t ref : {in.a, in.b}) {
      if (ref >= 0 && last_read[static_cast<size_t>(ref)] == static_cast<int64_t>(j)) {
        busy[static_cast<size_t>(reg[static_cast<size_t>(ref)])] = false;
      }
    }
    const auto free = std::find(busy.begin(), busy.end(), false);
    if (free == busy.end()) {
      return unimplemented("{}: the program needs more than {} registers", def.describe(),
                           kMaxFusedRegisters);
    }
    const int dst = static_cast<int>(free - busy.begin());
    const size_t value = num_inputs + j;
    reg[value] = dst;
    busy[static_cast<size_t>(dst)] = last_read[value] >= 0;  // an unread result frees at once
    r.dst = static_cast<int8_t>(dst);
    out.num_registers = std::max(out.num_registers, dst + 1);
    out.code.push_back(r);
  }
  out.result = reg[values - 1];
  return out;
}

// The launch for one run: the output's dimensions with size-1 ones dropped and neighbours merged
// where every input's strides allow, each input's strides (0 where it broadcasts).
StatusOr<FusedLaunch> plan_launch(const RegisterCode& rc, KernelContext& ctx) {
  FusedLaunch p;
  Tensor& y = ctx.output(0);
  const Shape& out = y.shape();
  const size_t n = ctx.num_inputs();
  p.num_inputs = static_cast<int>(n);
  p.num_code = static_cast<int>(rc.code.size());
  p.num_registers = rc.num_registers;
  p.result = rc.result;
  p.count = out.num_elements();
  p.output = y.raw_data();
  std::copy(rc.code.begin(), rc.code.end(), p.code);
  // Per output dimension: its size and each input's stride.
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides(n);
  std::vector<std::vector<int64_t>> own(n);
  for (size_t k = 0; k < n; ++k) {
    own[k] = contiguous_strides(ctx.input(k).shape());
    p.inputs[k] = ctx.input(k).raw_data();
  }
  for (size_t d = 0; d < out.rank(); ++d) {
    if (out[d] == 1) continue;
    std::vector<int64_t> s(n, 0);
    for (size_t k = 0; k < n; ++k) {
      const Shape& in = ctx.input(k).shape();
      const size_t lead = out.rank() - in.rank();
      if (d >= lead && in[d - lead] != 1) s[k] = own[k][d - lead];
    }
    // Merge into the previous (outer) dimension when, for every input, stepping the outer one is
    // stepping this one out[d] times.
    bool merge = !dims.empty();
    for (size_t k = 0; k < n && merge; ++k) merge = strides[k].back() == s[k] * out[d];
    if (merge) {
      dims.back() *= out[d];
      for (size_t k = 0; k < n; ++k) strides[k].back() = s[k];
    } else {
      dims.push_back(out[d]);
      for (size_t k = 0; k < n; ++k) strides[k].push_back(s[k]);
    }
  }
  if (dims.empty()) {  // one element
    dims.push_back(1);
    for (size_t k = 0; k < n; ++k) strides[k].push_back(0);
  }
  if (dims.size() > static_cast<size_t>(kMaxRank)) {
    return unimplemented("more than {} dimensions in the CUDA FusedElementwise kernel", kMaxRank);
  }
  p.rank = static_cast<int>(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    p.dims[d] = dims[d];
    for (size_t k = 0; k < n; ++k) p.strides[k][d] = strides[k][d];
  }
  // Four elements per thread when the innermost dimension keeps them together and aligned.
  const size_t vector_bytes = 4 * dtype_size(y.dtype());
  auto aligned = [&](const void* ptr) {
    return reinterpret_cast<uintptr_t>(ptr) % vector_bytes == 0;
  };
  p.vectorized = dims.back() % 4 == 0 && aligned(p.output);
  for (size_t k = 0; k < n; ++k) {
    const int64_t inner = strides[k].back();
    p.vectorized = p.vectorized && (inner == 0 || (inner == 1 && aligned(p.inputs[k])));
  }
  return p;
}

StatusOr<std::unique_ptr<Kernel>> create_fused_elementwise(const KernelDef& def) {
  const size_t n = def.input_dtypes.size();
  if (n == 0 || n > static_cast<size_t>(kMaxFusedInputs)) {
    return unimplemented("{}: {} inputs, the CUDA kernel takes 1 to {}", def.describe(), n,
                         kMaxFusedInputs);
  }
  for (DType d : def.input_dtypes) {
    if (d != def.input_dtypes[0]) {
      return unimplemented("{}: inputs of different types", def.describe());
    }
  }
  KS_ASSIGN_OR_RETURN(FloatType t, float_type(def, def.input_dtypes[0]));
  KS_ASSIGN_OR_RETURN(std::vector<FusedInstr> program, parse_fused_program(def));
  KS_ASSIGN_OR_RETURN(RegisterCode rc, allocate_registers(def, program, n));
  return make_kernel([t, rc = std::move(rc)](KernelContext& ctx) -> Status {
    if (ctx.output(0).num_elements() == 0) return Status();
    KS_ASSIGN_OR_RETURN(FusedLaunch p, plan_launch(rc, ctx));
    return check_launch("fused elementwise", launch_fused_elementwise(t, p, stream_of(ctx)));
  });
}

}  // namespace

std::vector<KernelEntry> fused_elementwise_kernels() {
  return {KernelEntry{"FusedElementwise", create_fused_elementwise}};
}

}  // namespace kestrel::runtime::cuda
