#include "kestrel/runtime/cpu/kernel_registry.h"

namespace kestrel::runtime::cpu {

std::vector<KernelEntry> conv_kernels() { return {}; }

}  // namespace kestrel::runtime::cpu
