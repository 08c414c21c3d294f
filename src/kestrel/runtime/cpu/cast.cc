// Reference Cast: every pair of element types. Float to integer is saturating and maps NaN to 0
// (ONNX leaves out-of-range values undefined; Kestrel defines them rather than invoke C++ UB).
#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

template <typename To, typename From>
To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, Half> || std::is_same_v<From, BFloat16>) {
    return convert<To>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, Half> || std::is_same_v<To, BFloat16>) {
    return To(static_cast<float>(v));
  } else if constexpr (std::is_floating_point_v<From> && !std::is_floating_point_v<To>) {
    return saturating_cast<To>(v);
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

StatusOr<std::unique_ptr<Kernel>> create_cast(const KernelDef& def) {
  return make_kernel([to = def.output_dtypes[0]](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.output(0);
    return dispatch_dtype<AllTypes>(x.dtype(), [&]<typename From>(TypeTag<From>) -> Status {
      return dispatch_dtype<AllTypes>(to, [&]<typename To>(TypeTag<To>) -> Status {
        const From* in = x.data<From>();
        To* out = y.data<To>();
        for (int64_t i = 0; i < x.num_elements(); ++i) out[i] = convert<To>(in[i]);
        return Status();
      });
    });
  });
}

}  // namespace

// CastLike converts input 0 to input 1's element type: the output type the engine gives us.
std::vector<KernelEntry> cast_kernels() {
  return {{"Cast", create_cast}, {"CastLike", create_cast}};
}

}  // namespace kestrel::runtime::cpu
