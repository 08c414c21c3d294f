// GpuLetterbox (letterbox_cuda.h): checks, the per-image tables, pinned staging and the upload. The
// kernel is in letterbox_cuda.cu, behind letterbox_launch.h.
#include "kestrel/vision/letterbox_cuda.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kestrel/runtime/cuda/cuda_backend.h"
#include "kestrel/runtime/cuda/cuda_check.h"
#include "kestrel/vision/letterbox_launch.h"

namespace kestrel::vision {
namespace {

// Sections of the staging area start on this boundary (what cudaMalloc guarantees for the whole).
constexpr size_t kAlignment = 256;

size_t align_up(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

// "uint8[1080,1920,3] in host memory", without reading the values.
std::string describe(const Tensor& t) {
  if (!t.defined()) return "an undefined tensor";
  return fmt::format(
      "{}{} in {}", t.dtype(), t.shape(),
      t.is_cpu() ? "host memory" : fmt::format("the memory of CUDA device {}", t.device().index));
}

Status check_image(const Tensor& image, size_t i, int device, bool host) {
  const bool on_place = host ? image.is_cpu() : image.device() == Device::cuda(device);
  if (!image.defined() || !on_place || image.dtype() != DType::kUInt8 || image.rank() != 3 ||
      image.shape()[2] != 3 || image.shape()[0] <= 0 || image.shape()[1] <= 0 ||
      image.shape()[0] > INT32_MAX || image.shape()[1] > INT32_MAX) {
    return invalid_argument(
        "GPU letterbox: image {} must be a uint8 [H, W, 3] tensor in {} with sides below 2^31, "
        "got {}",
        i, host ? "host memory" : fmt::format("the memory of CUDA device {}", device),
        describe(image));
  }
  return Status();
}

Status check_params(const LetterboxParams& p, size_t i, int64_t width, int64_t height,
                    int64_t target_width, int64_t target_height) {
  KS_ASSIGN_OR_RETURN(const LetterboxParams want,
                      compute_letterbox(width, height, target_width, target_height));
  if (p.source_width != width || p.source_height != height || p.target_width != target_width ||
      p.target_height != target_height || p.resized_width != want.resized_width ||
      p.resized_height != want.resized_height || p.pad_left != want.pad_left ||
      p.pad_top != want.pad_top || p.pad_right != want.pad_right ||
      p.pad_bottom != want.pad_bottom) {
    return invalid_argument(
        "GPU letterbox: parameters {} place a {}x{} image into {}x{}, but the image is {}x{} and "
        "the output {}x{}: use compute_letterbox()",
        i, p.source_width, p.source_height, p.target_width, p.target_height, width, height,
        target_width, target_height);
  }
  return Status();
}

LetterboxTap narrow(const ResizeTaps& t) {
  return {static_cast<int32_t>(t.i0), static_cast<int32_t>(t.i1), static_cast<int16_t>(t.w0),
          static_cast<int16_t>(t.w1)};
}

}  // namespace

struct GpuLetterbox::Buffers {
  // Pinned host memory for one call's upload, and the event recorded after that upload: the next
  // call that uses this area waits for it before overwriting.
  struct Staging {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t uploaded = nullptr;
  };
  Staging staging[2];
  int next = 0;  // the staging area the next call uses
  // Where the staging area lands: jobs, tables, pixels. One for both staging areas: successive
  // calls are ordered on one stream, so an upload never overtakes the previous kernel.
  void* device = nullptr;
  size_t device_capacity = 0;

  ~Buffers() {
    for (Staging& s : staging) {
      if (s.uploaded) {
        cudaEventSynchronize(s.uploaded);
        cudaEventDestroy(s.uploaded);
      }
      if (s.host) cudaFreeHost(s.host);
    }
    if (device) cudaFree(device);  // waits for the kernels that read it
  }
};

StatusOr<std::unique_ptr<GpuLetterbox>> GpuLetterbox::create(int device) {
  const int count = runtime::cuda_device_count();
  if (device < 0 || device >= count) {
    return unavailable("GPU letterbox: CUDA device {} does not exist ({} present)", device, count);
  }
  KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  auto buffers = std::make_unique<Buffers>();
  for (Buffers::Staging& s : buffers->staging) {
    KS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&s.uploaded, cudaEventDisableTiming));
  }
  return std::unique_ptr<GpuLetterbox>(new GpuLetterbox(device, std::move(buffers)));
}

GpuLetterbox::GpuLetterbox(int device, std::unique_ptr<Buffers> buffers)
    : device_(device), buffers_(std::move(buffers)) {}

GpuLetterbox::~GpuLetterbox() {
  cudaSetDevice(device_);
  buffers_.reset();
}

Status GpuLetterbox::run(std::span<const Tensor> images, std::span<const LetterboxParams> params,
                         Tensor& output, void* stream, uint8_t pad) {
  return enqueue(images, params, output, stream, pad, /*host_images=*/true);
}

StatusOr<Tensor> GpuLetterbox::run_to_new(std::span<const Tensor> images,
                                          std::span<const LetterboxParams> params, DType dtype,
                                          int64_t target_width, int64_t target_height,
                                          uint8_t pad) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16) {
    return invalid_argument("GPU letterbox writes float32 or float16, not {}", dtype);
  }
  const Shape shape{static_cast<int64_t>(images.size()), 3, target_height, target_width};
  KS_ASSIGN_OR_RETURN(const int64_t n, checked_num_elements(shape.dims()));
  KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  void* p = nullptr;
  const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
  KS_CUDA_RETURN_IF_ERROR(cudaMallocAsync(&p, bytes == 0 ? 1 : bytes, cudaStreamPerThread));
  const int device = device_;
  std::shared_ptr<void> storage(p, [device](void* q) {
    cudaSetDevice(device);
    cudaFreeAsync(q, cudaStreamPerThread);
  });
  Tensor out = Tensor::wrap(dtype, shape, std::move(storage), p, Device::cuda(device_));
  KS_RETURN_IF_ERROR(run(images, params, out, nullptr, pad));
  KS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cudaStreamPerThread));
  return out;
}

Status GpuLetterbox::run_device(std::span<const Tensor> images,
                                std::span<const LetterboxParams> params, Tensor& output,
                                void* stream, uint8_t pad) {
  return enqueue(images, params, output, stream, pad, /*host_images=*/false);
}

Status GpuLetterbox::enqueue(std::span<const Tensor> images,
                             std::span<const LetterboxParams> params, Tensor& output,
                             void* stream_handle, uint8_t pad, bool host_images) {
  if (!output.defined() || output.device() != Device::cuda(device_) || output.rank() != 4 ||
      (output.dtype() != DType::kFloat32 && output.dtype() != DType::kFloat16) ||
      output.shape()[1] != 3 || output.shape()[2] <= 0 || output.shape()[3] <= 0 ||
      output.shape()[2] > kMaxLetterboxHeight || output.shape()[3] > kMaxLetterboxWidth) {
    return invalid_argument(
        "GPU letterbox: the output must be a float32 or float16 [N, 3, H, W] tensor on CUDA "
        "device {} with H <= {} and W <= {}, got {}",
        device_, kMaxLetterboxHeight, kMaxLetterboxWidth, describe(output));
  }
  const int64_t target_height = output.shape()[2], target_width = output.shape()[3];
  if (images.size() != params.size()) {
    return invalid_argument("GPU letterbox: {} images but {} letterbox parameters", images.size(),
                            params.size());
  }
  const size_t max_images = kMaxLetterboxImages;
  if (static_cast<int64_t>(images.size()) > output.shape()[0] || images.size() > max_images) {
    return invalid_argument("GPU letterbox: {} images do not fit an output batch of {}{}",
                            images.size(), output.shape()[0],
                            images.size() > max_images ? " (at most 65535 per call)" : "");
  }
  if (images.empty()) return Status();

  // Lay out the upload: the jobs, one pair of tap tables per distinct image size (kLinear only),
  // then (host images) the pixels. Offsets are relative to the start of the staging area.
  const size_t n = images.size();
  std::vector<LetterboxJob> jobs(n);
  std::vector<size_t> tap_offset(n, 0), pixel_offset(n, 0);
  struct Tables {
    size_t offset;
    std::vector<ResizeTaps> x, y;
  };
  std::map<std::pair<int64_t, int64_t>, Tables> tables;  // by source (width, height)
  size_t size = align_up(n * sizeof(LetterboxJob));
  for (size_t i = 0; i < n; ++i) {
    const Tensor& image = images[i];
    KS_RETURN_IF_ERROR(check_image(image, i, device_, host_images));
    const int64_t h = image.shape()[0], w = image.shape()[1];
    const LetterboxParams& p = params[i];
    KS_RETURN_IF_ERROR(check_params(p, i, w, h, target_width, target_height));
    LetterboxJob& job = jobs[i];
    job.source_width = static_cast<int32_t>(w);
    job.source_height = static_cast<int32_t>(h);
    job.resized_width = static_cast<int32_t>(p.resized_width);
    job.resized_height = static_cast<int32_t>(p.resized_height);
    job.pad_left = static_cast<int32_t>(p.pad_left);
    job.pad_top = static_cast<int32_t>(p.pad_top);
    switch (resize_method(w, h, p.resized_width, p.resized_height)) {
      case ResizeMethod::kCopy:
        job.resize = LetterboxResize::kCopy;
        break;
      case ResizeMethod::kHalfArea:
        job.resize = LetterboxResize::kHalfArea;
        break;
      case ResizeMethod::kLinear: {
        job.resize = LetterboxResize::kLinear;
        auto [it, added] = tables.try_emplace({w, h});
        if (added) {
          it->second.offset = size;
          it->second.x = linear_resize_taps(w, p.resized_width, /*horizontal=*/true);
          it->second.y = linear_resize_taps(h, p.resized_height, /*horizontal=*/false);
          size += align_up((it->second.x.size() + it->second.y.size()) * sizeof(LetterboxTap));
        }
        tap_offset[i] = it->second.offset;
        break;
      }
    }
    if (host_images) {
      pixel_offset[i] = size;
      size += align_up(image.nbytes());
    }
  }

  KS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  const cudaStream_t stream =
      stream_handle ? static_cast<cudaStream_t>(stream_handle) : cudaStreamPerThread;
  Buffers& b = *buffers_;
  if (b.device_capacity < size) {
    if (b.device) {
      KS_CUDA_RETURN_IF_ERROR(cudaFree(b.device));  // waits for the kernels that read it
      b.device = nullptr;
      b.device_capacity = 0;
    }
    KS_CUDA_RETURN_IF_ERROR(cudaMalloc(&b.device, size));
    b.device_capacity = size;
  }
  Buffers::Staging& staging = b.staging[b.next];
  b.next ^= 1;
  KS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(staging.uploaded));
  if (staging.capacity < size) {
    if (staging.host) {
      KS_CUDA_RETURN_IF_ERROR(cudaFreeHost(staging.host));
      staging.host = nullptr;
      staging.capacity = 0;
    }
    KS_CUDA_RETURN_IF_ERROR(cudaMallocHost(&staging.host, size));
    staging.capacity = size;
  }

  // Fill the staging area with device addresses, then upload it in one copy.
  auto* host = static_cast<std::byte*>(staging.host);
  auto* device = static_cast<const std::byte*>(b.device);
  for (const auto& [image_size, t] : tables) {
    auto* taps = reinterpret_cast<LetterboxTap*>(host + t.offset);
    for (const ResizeTaps& tap : t.x) *taps++ = narrow(tap);
    for (const ResizeTaps& tap : t.y) *taps++ = narrow(tap);
  }
  for (size_t i = 0; i < n; ++i) {
    LetterboxJob& job = jobs[i];
    if (job.resize == LetterboxResize::kLinear) {
      job.x_taps = reinterpret_cast<const LetterboxTap*>(device + tap_offset[i]);
      job.y_taps = job.x_taps + job.resized_width;
    } else {
      job.x_taps = job.y_taps = nullptr;
    }
    if (host_images) {
      std::memcpy(host + pixel_offset[i], images[i].raw_data(), images[i].nbytes());
      job.pixels = reinterpret_cast<const uint8_t*>(device + pixel_offset[i]);
    } else {
      job.pixels = static_cast<const uint8_t*>(images[i].raw_data());
    }
  }
  std::memcpy(host, jobs.data(), n * sizeof(LetterboxJob));
  KS_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(b.device, staging.host, size, cudaMemcpyHostToDevice, stream));
  KS_CUDA_RETURN_IF_ERROR(cudaEventRecord(staging.uploaded, stream));
  KS_CUDA_RETURN_IF_ERROR(launch_letterbox(
      static_cast<const LetterboxJob*>(b.device), static_cast<int32_t>(n), output.raw_data(),
      output.dtype() == DType::kFloat16, static_cast<int32_t>(target_width),
      static_cast<int32_t>(target_height), pad, stream));
  return Status();
}

}  // namespace kestrel::vision
