// Shape rule of Kestrel's FusedElementwise operator (not ONNX; written by
// optimize/fuse_elementwise.h): a chain of elementwise operators run as one straight-line program,
// one output element at a time, so the intermediate tensors never reach memory.
//
//   FusedElementwise(X0, ..., X{N-1}) -> Y
//   ops    strings, required: the K instructions in order, named as in the table below
//   args   ints, required: 2*K operand references, two per instruction. r < N names input r,
//          N + j the result of instruction j (an earlier one); -1 fills the slots of an
//          instruction with fewer than two operands
//   params floats, optional: 2*K constants, two per instruction (alpha, beta); absent: all 0
//   Y is the result of the last instruction.
//
// The inputs share one element type (float32, float16 or bfloat16) and broadcast, numpy rules, to
// Y's shape, the broadcast of them all: each element of Y is the program run on the elements of
// the inputs that broadcast to it. The program computes in float32 whatever the storage type and
// rounds once, when Y is stored; in float16 it can therefore differ from the unfused operators by
// the intermediate roundings it skips.
//
// Instructions, a and b being the operands, each as the ONNX operator of that name defines it:
//   two operands  Add, Sub, Mul, Div, Pow, Min, Max (NaN propagates, as in numpy.minimum)
//   one operand   Sigmoid, Relu, Tanh, Exp, Log, Neg, Abs, Sqrt, Reciprocal, Floor, Ceil, Round,
//                 HardSwish, LeakyRelu (slope alpha), HardSigmoid (alpha, beta),
//                 Clip (min alpha, max beta; min > max gives max, as ONNX's Clip)
//   no operand    Const (the value alpha: scalar constants of the fused chain)
//
// Example, y = x * sigmoid(x) + bias with x input 0 and bias input 1 (N = 2):
//   ops = [Sigmoid, Mul, Add]   args = [0, -1,  0, 2,  3, 1]   (Sigmoid -> 2, Mul -> 3, Add -> Y)
#include <algorithm>
#include <array>
#include <limits>

#include "kestrel/ir/op_families.h"
#include "kestrel/ir/op_rules.h"

namespace kestrel::ir {
namespace {

using FusedTypes = TypeList<float, Half, BFloat16>;

struct Instruction {
  std::string_view name;
  int operands;
};

constexpr std::array<Instruction, 24> kInstructions = {{
    {"Add", 2},        {"Sub", 2},         {"Mul", 2},     {"Div", 2},   {"Pow", 2},
    {"Min", 2},        {"Max", 2},         {"Sigmoid", 1}, {"Relu", 1},  {"Tanh", 1},
    {"Exp", 1},        {"Log", 1},         {"Neg", 1},     {"Abs", 1},   {"Sqrt", 1},
    {"Reciprocal", 1}, {"Floor", 1},       {"Ceil", 1},    {"Round", 1}, {"HardSwish", 1},
    {"LeakyRelu", 1},  {"HardSigmoid", 1}, {"Clip", 1},    {"Const", 0},
}};

// Checks the program in the attributes against the node's input count (see the top of the file).
Status check_program(const InferContext& ctx) {
  const std::vector<std::string> ops = ctx.attrs().get_strings("ops");
  const std::vector<int64_t> args = ctx.attrs().get_ints("args");
  const size_t k = ops.size();
  if (k == 0) return ctx.error("the program (attribute ops) is empty");
  if (args.size() != 2 * k) {
    return ctx.error("args has {} entries, expected 2 per instruction: {}", args.size(), 2 * k);
  }
  if (ctx.attrs().has("params") && ctx.attrs().get_floats("params").size() != 2 * k) {
    return ctx.error("params has {} entries, expected 2 per instruction: {}",
                     ctx.attrs().get_floats("params").size(), 2 * k);
  }
  const auto n = static_cast<int64_t>(ctx.num_inputs());
  for (size_t j = 0; j < k; ++j) {
    const auto it = std::find_if(kInstructions.begin(), kInstructions.end(),
                                 [&](const Instruction& i) { return i.name == ops[j]; });
    if (it == kInstructions.end()) return ctx.error("instruction {} is unknown: '{}'", j, ops[j]);
    for (int slot = 0; slot < 2; ++slot) {
      const int64_t ref = args[2 * j + slot];
      if (slot >= it->operands) {
        if (ref != -1) {
          return ctx.error("instruction {} ({}) has {} operand(s), but args gives operand {} as {}",
                           j, ops[j], it->operands, slot, ref);
        }
      } else if (ref < 0 || ref >= n + static_cast<int64_t>(j)) {
        return ctx.error(
            "instruction {} ({}) reads value {}, which is neither an input (0..{}) nor an "
            "earlier instruction's result",
            j, ops[j], ref, n - 1);
      }
    }
  }
  return Status();
}

Status fused_elementwise_rule(InferContext& ctx) {
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.error("input {} is missing", i);
  }
  KS_RETURN_IF_ERROR(require_dtype<FusedTypes>(ctx, 0));
  Shape shape = ctx.input_shape(0);
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    KS_RETURN_IF_ERROR(require_same_dtype(ctx, 0, i));
    StatusOr<Shape> s = broadcast_shapes(shape, ctx.input_shape(i));
    if (!s.ok()) return ctx.error("{}", s.status().message());
    shape = *s;
  }
  KS_RETURN_IF_ERROR(check_program(ctx));
  ctx.set_output(0, ctx.input_dtype(0), std::move(shape));
  return Status();
}

// One operation per instruction (Consts excluded) and output element.
int64_t fused_elementwise_flops(const InferContext& ctx) {
  int64_t ops = 0;
  for (const std::string& op : ctx.attrs().get_strings("ops")) ops += op != "Const";
  const int64_t elements = Shape(ctx.outputs()[0].dims).num_elements();
  if (elements > 0 && ops > std::numeric_limits<int64_t>::max() / elements) {
    return std::numeric_limits<int64_t>::max();
  }
  return ops * elements;
}

}  // namespace

std::vector<OpSchema> fused_op_schemas() {
  OpSchema s;
  s.op_type = "FusedElementwise";
  s.min_inputs = 1;
  s.max_inputs = kVariadic;
  s.attributes = {{"ops", AttributeType::kStrings, true},
                  {"args", AttributeType::kInts, true},
                  {"params", AttributeType::kFloats}};
  s.infer = fused_elementwise_rule;
  s.flops = fused_elementwise_flops;
  return {std::move(s)};
}

}  // namespace kestrel::ir
