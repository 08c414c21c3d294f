// to_channels_last: runs the convolutional part of a model channels-last (NHWC, and NWC / NDHWC
// for 1 and 3 spatial axes), the layout the GPU's tensor cores want, while the graph keeps its
// NCHW inputs and outputs. Layouts of the channels-last operators: top of ir/ops/nn.cc.
//
// Rules, for activations of rank R = 3, 4 or 5 (1 to 3 spatial axes). "To channels-last" is
// Transpose perm P = [0, 2, ..., R-1, 1]; back is its inverse Q = [0, R-1, 1, ..., R-2].
//
// 1. Members: the nodes that can run channels-last, when their output has rank R, every
//    non-constant input listed here has rank R and every constant one at most R:
//    - Conv with constant weights: first becomes FusedConv with activation "" (as the fusions
//      spell a plain convolution); FusedConv with constant weights: channels_last=1, W transposed
//      to [K, k1, ..., kn, C/group] at build time. Inputs X and Z.
//    - MaxPool without the Indices output, AveragePool: kestrel_channels_last=1. Input X.
//    - GlobalAveragePool / GlobalMaxPool: become ReduceMean / ReduceMax over axes 1..R-2 with
//      keepdims=1, whose [N, 1, ..., 1, C] result is the channels-last form of theirs. Input X.
//    - Resize with constant (or omitted) roi, scales and sizes: those are permuted by P, or the
//      `axes` attribute renumbered. Input X.
//    - Concat (every input) and Split (input 0): `axis` renumbered; the channel axis becomes -1.
//    - elementwise: the unary operators (Relu, Sigmoid, Cast, Clip with its scalar bounds, ...)
//      on input 0; Add, Sub, Mul, Div, Pow, Min, Max, Sum, Mean, the comparisons, And/Or/Xor and
//      Where on every input.
//    Constants in those inputs are permuted once at build time, a lower-rank one after padding
//    its shape with leading ones ([1, C, 1, 1] and [C, 1, 1] -> [1, 1, 1, C]); one-element
//    constants stay as they are.
// 2. Regions: members joined by a value that one produces and another reads in an input listed
//    above. A region converts only if it holds a FusedConv or a pool (an "anchor"): elementwise
//    work alone is not worth a transpose.
// 3. Trimming: a member that is not an anchor leaves its region when converting it needs more
//    transposes than leaving it (counting its inputs from outside the region and its outputs
//    read outside, against its inputs from inside and its outputs read inside); ties stay. Steps
//    2 and 3 repeat until nothing changes.
// 4. Boundaries: a value entering a region (a graph input, or a non-member's output) gets one
//    Transpose P shared by all its region readers; a region value read outside (by a non-member,
//    e.g. YOLOv5's detection-head Reshape, in an input not listed above, or as a graph output)
//    gets one Transpose Q shared by those readers. Graph outputs keep their names and shapes.
// 5. Cleanup: a Transpose whose result only feeds a Reshape that only splits axes, read only by
//    Transposes, moves after that Reshape (YOLO's detection heads: [N,H,W,255] -> Q -> Reshape
//    [N,3,85,H,W] -> Transpose [N,3,H,W,85] becomes Reshape [N,H,W,3,85] -> one Transpose).
//    Then a Transpose of a Transpose becomes one Transpose of the composed permutation, and
//    disappears when that is the identity (an inverse pair).
//
// Value types stay consistent: rewritten values get their channels-last shapes.
#pragma once

#include "kestrel/base/status.h"
#include "kestrel/ir/graph.h"

namespace kestrel::optimize {

// Returns the number of nodes converted to channels-last.
// REQUIRES: value types annotated (ir::annotate_symbolic_shapes), for the ranks.
StatusOr<int> to_channels_last(ir::Graph& graph);

}  // namespace kestrel::optimize
