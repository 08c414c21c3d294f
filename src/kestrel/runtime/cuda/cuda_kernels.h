// The CUDA kernel table and helpers shared by the kernel files. Internal to runtime/cuda/.
//
// Kernels launch on the stream of their KernelContext (cudaStreamPerThread when none is given) and
// never synchronize: the engine synchronizes once per run. Inputs listed in an operator's
// value_inputs (Reshape's shape, Slice's starts, ...) arrive as host tensors, everything else in
// device memory.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string_view>
#include <vector>

#include "kestrel/runtime/cuda/cuda_check.h"
#include "kestrel/runtime/cuda/launch.h"
#include "kestrel/runtime/kernel.h"

namespace kestrel::runtime::cuda {

using KernelFactory = StatusOr<std::unique_ptr<Kernel>> (*)(const KernelDef& def);

struct KernelEntry {
  std::string_view op_type;
  KernelFactory create;
};

std::vector<KernelEntry> elementwise_kernels();   // elementwise.cu
std::vector<KernelEntry> movement_kernels();      // movement.cu
std::vector<KernelEntry> pool_kernels();          // pool.cu
std::vector<KernelEntry> resize_kernels();        // resize.cu
std::vector<KernelEntry> conv_kernels();          // conv.cc + conv_epilogue.cu
std::vector<KernelEntry> fused_concat_kernels();  // fused_concat.cc + .cu

// fused_elementwise.cc + .cu: Kestrel's FusedElementwise.
std::vector<KernelEntry> fused_elementwise_kernels();

inline cudaStream_t stream_of(const KernelContext& ctx) {
  return ctx.stream() ? static_cast<cudaStream_t>(ctx.stream()) : cudaStreamPerThread;
}

// The Status of a launch (configuration errors surface here, not at the next synchronization).
inline Status check_launch(const char* what, cudaError_t error) {
  if (error == cudaSuccess) return Status();
  return cuda_status(error, what, __FILE__, __LINE__);
}

// float32 -> kFloat32, float16 -> kFloat16; UNIMPLEMENTED for other types (the CPU runs those).
inline StatusOr<FloatType> float_type(const KernelDef& def, DType dtype) {
  if (dtype == DType::kFloat32) return FloatType::kFloat32;
  if (dtype == DType::kFloat16) return FloatType::kFloat16;
  return unimplemented("{}: no CUDA kernel for {}", def.describe(), dtype);
}

// A kernel whose run() is a callable, like the CPU backend's.
template <typename F>
class FunctionKernel final : public Kernel {
 public:
  explicit FunctionKernel(F f) : f_(std::move(f)) {}
  Status run(KernelContext& ctx) override { return f_(ctx); }

 private:
  F f_;
};
template <typename F>
std::unique_ptr<Kernel> make_kernel(F f) {
  return std::make_unique<FunctionKernel<F>>(std::move(f));
}

}  // namespace kestrel::runtime::cuda
