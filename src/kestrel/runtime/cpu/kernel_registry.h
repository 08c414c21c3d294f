// The CPU kernel table: one entry per (operator, implementation). Internal to runtime/cpu/.
//
// Each file below exports its entries; cpu_backend.cc lists the files. A factory returns
// UNIMPLEMENTED when it cannot handle a KernelDef (an element type, an attribute value), and the
// backend then tries the next implementation of the operator, reference last.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "kestrel/runtime/kernel.h"

namespace kestrel::runtime::cpu {

using KernelFactory = StatusOr<std::unique_ptr<Kernel>> (*)(const KernelDef& def);

struct KernelEntry {
  std::string_view op_type;
  KernelFactory create;
  bool reference = true;  // false for fast implementations (oneDNN)
};

std::vector<KernelEntry> unary_kernels();      // unary.cc
std::vector<KernelEntry> cast_kernels();       // cast.cc
std::vector<KernelEntry> binary_kernels();     // binary.cc: Add, Equal, Where, Min, ...
std::vector<KernelEntry> reshape_kernels();    // reshape.cc: Reshape, Flatten, Squeeze, ...
std::vector<KernelEntry> transpose_kernels();  // transpose.cc
std::vector<KernelEntry> concat_kernels();     // concat.cc
std::vector<KernelEntry> split_kernels();      // split.cc
std::vector<KernelEntry> slice_kernels();      // slice.cc
std::vector<KernelEntry> gather_kernels();     // gather.cc
std::vector<KernelEntry> expand_kernels();     // expand.cc: Expand, Tile
std::vector<KernelEntry> pad_kernels();        // pad.cc
std::vector<KernelEntry>
generator_kernels();                        // generator.cc: Constant, ConstantOfShape, Range, Shape
std::vector<KernelEntry> conv_kernels();    // conv.cc: Conv, ConvTranspose (reference)
std::vector<KernelEntry> onednn_kernels();  // onednn_conv.cc: Conv through oneDNN
// onednn_pool.cc: MaxPool and nearest-neighbour upsampling through oneDNN.
std::vector<KernelEntry> onednn_pool_kernels();
std::vector<KernelEntry> pool_kernels();        // pool.cc
std::vector<KernelEntry> batch_norm_kernels();  // batch_norm.cc
std::vector<KernelEntry> matmul_kernels();      // matmul.cc: Gemm, MatMul
std::vector<KernelEntry> softmax_kernels();     // softmax.cc
std::vector<KernelEntry> resize_kernels();      // resize.cc
std::vector<KernelEntry> reduce_kernels();      // reduce.cc: ReduceMean, ReduceMax, ArgMax
std::vector<KernelEntry> top_k_kernels();       // top_k.cc
std::vector<KernelEntry> nms_kernels();         // non_max_suppression.cc

// fused_elementwise.cc: Kestrel's FusedElementwise.
std::vector<KernelEntry> fused_elementwise_kernels();

}  // namespace kestrel::runtime::cpu
