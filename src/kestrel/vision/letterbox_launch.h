// The launcher of the CUDA letterbox kernel (letterbox_cuda.cu), internal to letterbox_cuda.cc.
//
// Plain C++ and CUDA runtime types only: nvcc cannot compile Kestrel's host headers (fmt), so the
// kernel file sees nothing but this (the same split as runtime/cuda/launch.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kestrel::vision {

// ResizeTaps (letterbox.h) narrowed for the device. Indices fit int32 because letterbox_cuda.cc
// refuses images with a side of 2^31 pixels or more; weights are in [0, 2048].
struct LetterboxTap {
  int32_t i0, i1;
  int16_t w0, w1;
};

// How one image is resized, as ResizeMethod (letterbox.h).
enum class LetterboxResize : int32_t { kCopy, kHalfArea, kLinear };

// Limits of one launch: blockIdx.z is the image, blockIdx.y covers kLetterboxRowsPerBlock rows, and
// column indices stay below 2^31 with room for a block.
inline constexpr int32_t kLetterboxRowsPerBlock = 32;
inline constexpr int32_t kMaxLetterboxImages = 65535;
inline constexpr int32_t kMaxLetterboxHeight = 65535 * kLetterboxRowsPerBlock;
inline constexpr int32_t kMaxLetterboxWidth = (int32_t{1} << 30);

// One image of the batch, in device memory.
struct LetterboxJob {
  const uint8_t* pixels;       // uint8 [source_height, source_width, 3]
  const LetterboxTap* x_taps;  // resized_width entries (kLinear only)
  const LetterboxTap* y_taps;  // resized_height entries (kLinear only)
  int32_t source_width, source_height;
  int32_t resized_width, resized_height;
  int32_t pad_left, pad_top;
  LetterboxResize resize;
};

// Letterboxes jobs[0..count) (an array in device memory) into slots 0..count of `output`, a device
// tensor [>= count, 3, target_height, target_width] of float16 (`half`) or float32: value / 255,
// `pad` where no image is. Queues one kernel on `stream`; returns the launch's error.
// REQUIRES: 0 < count <= kMaxLetterboxImages, target sides within the limits above.
cudaError_t launch_letterbox(const LetterboxJob* jobs, int32_t count, void* output, bool half,
                             int32_t target_width, int32_t target_height, uint8_t pad,
                             cudaStream_t stream);

}  // namespace kestrel::vision
