// FusedElementwise programs as the backends run them: the operator's attributes (ir/ops/fused.cc
// documents the encoding) decoded into instructions and checked once, when a kernel is made, so
// that running them can never read outside the registers.
#pragma once

#include <string>
#include <vector>

#include "kestrel/runtime/fused_elementwise_ops.h"
#include "kestrel/runtime/kernel.h"

namespace kestrel::runtime {

// The program of a FusedElementwise node with def.input_dtypes.size() inputs; INVALID_ARGUMENT,
// naming the node, for a malformed one.
inline StatusOr<std::vector<FusedInstr>> parse_fused_program(const KernelDef& def) {
  const std::vector<std::string> ops = def.attrs.get_strings("ops");
  const std::vector<int64_t> args = def.attrs.get_ints("args");
  std::vector<float> params = def.attrs.get_floats("params");
  if (!def.attrs.has("params")) params.assign(2 * ops.size(), 0.f);
  if (ops.empty() || args.size() != 2 * ops.size() || params.size() != 2 * ops.size()) {
    return invalid_argument("{}: malformed program ({} instructions, {} args, {} params)",
                            def.describe(), ops.size(), args.size(), params.size());
  }
  const auto inputs = static_cast<int64_t>(def.input_dtypes.size());
  std::vector<FusedInstr> code;
  for (size_t j = 0; j < ops.size(); ++j) {
    const FusedOpInfo* info = nullptr;
    for (const FusedOpInfo& i : kFusedOps) {
      if (ops[j] == i.name) info = &i;
    }
    if (info == nullptr) {
      return invalid_argument("{}: unknown instruction '{}'", def.describe(), ops[j]);
    }
    FusedInstr in{info->op, -1, -1, params[2 * j], params[2 * j + 1]};
    for (int slot = 0; slot < 2; ++slot) {
      const int64_t ref = args[2 * j + slot];
      const bool valid =
          slot < info->operands ? ref >= 0 && ref < inputs + static_cast<int64_t>(j) : ref == -1;
      if (!valid) {
        return invalid_argument("{}: instruction {} ({}) has a bad operand {}: {}", def.describe(),
                                j, ops[j], slot, ref);
      }
      (slot == 0 ? in.a : in.b) = static_cast<int32_t>(ref);
    }
    code.push_back(in);
  }
  return code;
}

}  // namespace kestrel::runtime
