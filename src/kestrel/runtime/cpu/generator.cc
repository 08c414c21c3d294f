// Reference kernels of the generator operators: Constant, ConstantOfShape, Range, Shape and Size.
// Their output shapes come from the shape rules (ir/ops/generator.cc); these fill the values.
#include <algorithm>
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

// ONNX allows int16..int64, float and double; float16 and bfloat16 are accepted too, because
// exporters that convert a whole model to half precision produce them (yolov5s exported with
// --half has a float16 Range building its grid).
using RangeTypes = TypeList<int16_t, int32_t, int64_t, float, double, Half, BFloat16>;

template <typename T>
void copy_values(const std::vector<T>& from, Tensor& out) {
  if (!from.empty()) std::memcpy(out.raw_data(), from.data(), from.size() * sizeof(T));
}

// The output is copied from the attribute rather than aliased, so that nobody holding the output
// (a caller of Engine::run) can change the constant for later runs.
StatusOr<std::unique_ptr<Kernel>> create_constant(const KernelDef& def) {
  const Attributes attrs = def.attrs;
  return make_kernel([attrs](KernelContext& ctx) -> Status {
    Tensor& out = ctx.output(0);
    if (const Tensor* t = attrs.get_tensor("value")) {
      if (t->nbytes() > 0) std::memcpy(out.raw_data(), t->raw_data(), t->nbytes());
    } else if (attrs.has("value_float")) {
      out.data<float>()[0] = attrs.get_float("value_float", 0.0f);
    } else if (attrs.has("value_floats")) {
      copy_values(attrs.get_floats("value_floats"), out);
    } else if (attrs.has("value_int")) {
      out.data<int64_t>()[0] = attrs.get_int("value_int", 0);
    } else {
      copy_values(attrs.get_ints("value_ints"), out);
    }
    return Status();
  });
}

// The element type comes from the value attribute (the shape rule checked it), not from the
// KernelDef: the output type is unknown when the engine is built if the shape input is computed.
StatusOr<std::unique_ptr<Kernel>> create_constant_of_shape(const KernelDef& def) {
  // Default: float32 zero, which is all zero bytes like the zero of every type.
  std::array<std::byte, 8> value{};
  if (const Tensor* t = def.attrs.get_tensor("value"); t && t->nbytes() <= value.size()) {
    std::memcpy(value.data(), t->raw_data(), t->nbytes());
  }
  return make_kernel([value](KernelContext& ctx) -> Status {
    Tensor& out = ctx.output(0);
    const size_t element = dtype_size(out.dtype());
    auto* dst = static_cast<std::byte*>(out.raw_data());
    for (int64_t i = 0; i < out.num_elements(); ++i) {
      std::memcpy(dst + i * element, value.data(), element);
    }
    return Status();
  });
}

// output[i] = start + i * delta. Integers accumulate in unsigned 64-bit arithmetic, which is
// exact because every value lies between start and limit; floats are computed in double from i.
StatusOr<std::unique_ptr<Kernel>> create_range(const KernelDef& def) {
  if (def.input_dtypes[0] != DType::kUndefined && !dtype_in<RangeTypes>(def.input_dtypes[0])) {
    return unimplemented("{}: no CPU kernel for {}", def.describe(), def.input_dtypes[0]);
  }
  return make_kernel([](KernelContext& ctx) -> Status {
    Tensor& out = ctx.output(0);
    return dispatch_dtype<RangeTypes>(out.dtype(), [&]<typename T>(TypeTag<T>) -> Status {
      const T start = ctx.input(0).data<T>()[0];
      const T delta = ctx.input(2).data<T>()[0];
      T* o = out.data<T>();
      const int64_t n = out.num_elements();
      if constexpr (std::is_integral_v<T>) {
        auto value = static_cast<uint64_t>(static_cast<int64_t>(start));
        const auto step = static_cast<uint64_t>(static_cast<int64_t>(delta));
        for (int64_t i = 0; i < n; ++i, value += step) {
          o[i] = static_cast<T>(static_cast<int64_t>(value));
        }
      } else {
        for (int64_t i = 0; i < n; ++i) {
          o[i] = static_cast<T>(static_cast<double>(start) + static_cast<double>(i) * delta);
        }
      }
      return Status();
    });
  });
}

// Opset 15: dimensions [start, end) of the input's shape, both clamped to [0, rank].
StatusOr<std::unique_ptr<Kernel>> create_shape(const KernelDef& def) {
  const int64_t start_attr = def.attrs.get_int("start", 0);
  return make_kernel([start_attr](KernelContext& ctx) -> Status {
    const Shape& shape = ctx.input(0).shape();
    const auto rank = static_cast<int64_t>(shape.rank());
    int64_t start = start_attr < 0 ? start_attr + rank : start_attr;
    start = std::clamp<int64_t>(start, 0, rank);
    Tensor& out = ctx.output(0);
    int64_t* o = out.data<int64_t>();
    for (int64_t i = 0; i < out.num_elements(); ++i) o[i] = shape[static_cast<size_t>(start + i)];
    return Status();
  });
}

StatusOr<std::unique_ptr<Kernel>> create_size(const KernelDef&) {
  return make_kernel([](KernelContext& ctx) -> Status {
    ctx.output(0).data<int64_t>()[0] = ctx.input(0).num_elements();
    return Status();
  });
}

}  // namespace

std::vector<KernelEntry> generator_kernels() {
  return {
      KernelEntry{"Constant", create_constant},
      KernelEntry{"ConstantOfShape", create_constant_of_shape},
      KernelEntry{"Range", create_range},
      KernelEntry{"Shape", create_shape},
      KernelEntry{"Size", create_size},
  };
}

}  // namespace kestrel::runtime::cpu
