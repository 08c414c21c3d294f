// Letterbox on the GPU: uint8 [H, W, 3] images in, the model's [N, 3, H, W] float32 or float16
// input out, bit for bit what letterbox() followed by write_model_input() (letterbox.h) computes on
// the CPU.
//
// Why: uint8 pixels are 4x fewer bytes over PCIe than a float32 input (2x fewer than float16), and
// the resize, the padding, the HWC -> CHW transpose, the / 255 and the conversion to float16 all
// happen in one kernel launch for the whole batch, writing the engine's input directly.
//
//   KS_ASSIGN_OR_RETURN(auto letterbox, vision::GpuLetterbox::create(/*device=*/0));
//   std::vector<LetterboxParams> params;  // compute_letterbox(W_i, H_i, 640, 640) for each image
//   // input: a float16 [32, 3, 640, 640] tensor on CUDA device 0
//   KS_RETURN_IF_ERROR(letterbox->run(images, params, input, stream));
//   // ... enqueue the engine on the same stream ...
//
// Exactness: the same integer arithmetic as resize_linear_u8() (OpenCV's fixed point), with the
// per-column and per-row tables computed on the host by the very functions the CPU path uses
// (resize_method(), linear_resize_taps()); value / 255 is an IEEE float32 division on both sides
// and float16 rounds to nearest even on both sides.
//
// This header is plain C++ (no CUDA headers), so detector.cc and other host code can include it;
// streams are passed as void* (a cudaStream_t; null means cudaStreamPerThread). Only in builds with
// CUDA (KESTREL_WITH_CUDA).
//
// Thread safety: none; use one GpuLetterbox per execution stream.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/vision/letterbox.h"

namespace kestrel::vision {

class GpuLetterbox {
 public:
  // UNAVAILABLE when `device` is not a usable CUDA device.
  static StatusOr<std::unique_ptr<GpuLetterbox>> create(int device);
  // Waits for the work it queued (cudaFree and cudaFreeHost synchronize).
  ~GpuLetterbox();
  GpuLetterbox(const GpuLetterbox&) = delete;
  GpuLetterbox& operator=(const GpuLetterbox&) = delete;

  int device() const { return device_; }

  // Letterboxes host images[i] (uint8 [H_i, W_i, 3], any sizes) into slot i of `output`, a tensor
  // [N, 3, target_h, target_w] of float32 or float16 on this object's device, N >= images.size()
  // (slots beyond images.size() are left alone). params[i] must be
  // compute_letterbox(W_i, H_i, target_w, target_h). `pad` fills what no image covers.
  //
  // The pixels are copied into a pinned staging buffer (grown as needed; two are used in turn, so
  // the host can fill one while the other is still being uploaded), then the upload and one kernel
  // are queued on `stream`. Returns once they are queued: the images may then be reused, `output`
  // is ready when the stream reaches that point. It blocks only while the staging buffer it needs
  // is still being uploaded from two calls ago.
  //
  // INVALID_ARGUMENT for images that are not uint8 [H, W, 3] host tensors with sides below 2^31,
  // params that do not match, an output of another type, shape or device (or taller than
  // 2,097,120 rows or wider than 2^30 columns), or more than 65535 images. REQUIRES: successive
  // calls use the same stream (or the caller orders their streams): the device-side buffers are
  // reused from call to call.
  Status run(std::span<const Tensor> images, std::span<const LetterboxParams> params,
             Tensor& output, void* stream, uint8_t pad = 114);

  // run() into a new [images.size(), 3, target_height, target_width] tensor of `dtype` on this
  // device, on the calling thread's default stream, and waits until it is written: what a caller
  // that hands the input to an engine (which runs on its own streams) needs.
  StatusOr<Tensor> run_to_new(std::span<const Tensor> images,
                              std::span<const LetterboxParams> params, DType dtype,
                              int64_t target_width, int64_t target_height, uint8_t pad = 114);

  // The same for images already in this device's memory (decoded on the GPU, or for the
  // benchmark): only the small per-image tables go through the staging buffer. The images must
  // stay unchanged until the stream has run the kernel.
  Status run_device(std::span<const Tensor> images, std::span<const LetterboxParams> params,
                    Tensor& output, void* stream, uint8_t pad = 114);

 private:
  struct Buffers;  // pinned staging, device buffer, CUDA events (letterbox_cuda.cc)

  GpuLetterbox(int device, std::unique_ptr<Buffers> buffers);
  Status enqueue(std::span<const Tensor> images, std::span<const LetterboxParams> params,
                 Tensor& output, void* stream, uint8_t pad, bool host_images);

  int device_;
  std::unique_ptr<Buffers> buffers_;
};

}  // namespace kestrel::vision
