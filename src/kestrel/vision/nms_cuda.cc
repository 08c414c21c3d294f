// YoloNms on the GPU: checks and the engine kernel (see nms_cuda.h); the kernels are in
// nms_cuda.cu.
#include "kestrel/vision/nms_cuda.h"

#include "kestrel/runtime/cuda/cuda_check.h"
#include "kestrel/vision/nms_cuda_launch.h"

namespace kestrel::vision {
namespace {

class CudaYoloNmsKernel final : public runtime::Kernel {
 public:
  explicit CudaYoloNmsKernel(DetectionOptions options) : options_(options) {}
  Status run(runtime::KernelContext& ctx) override {
    NmsOutput out{ctx.output(0), ctx.output(1), ctx.output(2), ctx.output(3)};
    return cuda_batched_nms(ctx.input(0), options_, out, ctx.stream());
  }

 private:
  DetectionOptions options_;
};

}  // namespace

Status cuda_batched_nms(const Tensor& output, const DetectionOptions& options, NmsOutput& out,
                        void* stream) {
  if (!output.defined() || output.is_cpu() ||
      (output.dtype() != DType::kFloat32 && output.dtype() != DType::kFloat16)) {
    return invalid_argument("GPU NMS needs a float32 or float16 YOLO output in device memory");
  }
  if (options.max_detections < 1 || options.max_detections > (int64_t{1} << 24) ||
      options.top_k < 1) {
    return invalid_argument("NMS needs 1 <= max_detections <= 2^24 and top_k >= 1 (got {}, {})",
                            options.max_detections, options.top_k);
  }
  KS_ASSIGN_OR_RETURN(const YoloLayout layout,
                      resolve_yolo_layout(output.shape(), options.layout, options.num_classes));
  const Shape& shape = output.shape();
  const int64_t batch = shape[0], max_det = options.max_detections;
  const auto fits = [&](const Tensor& t, DType dtype, const Shape& s) {
    return t.defined() && t.device() == output.device() && t.dtype() == dtype && t.shape() == s;
  };
  if (!fits(out.boxes, DType::kFloat32, Shape{batch, max_det, 4}) ||
      !fits(out.scores, DType::kFloat32, Shape{batch, max_det}) ||
      !fits(out.classes, DType::kInt32, Shape{batch, max_det}) ||
      !fits(out.num_dets, DType::kInt32, Shape{batch})) {
    return invalid_argument(
        "GPU NMS outputs must be device tensors for a batch of {} with {} detections", batch,
        max_det);
  }
  if (batch == 0) return Status();
  cuda_nms::YoloNmsArgs args;
  args.data = output.raw_data();
  args.half = output.dtype() == DType::kFloat16;
  args.v5 = layout == YoloLayout::kV5;
  args.batch = batch;
  args.anchors = args.v5 ? shape[1] : shape[2];
  args.classes = yolo_num_classes(shape, layout);
  const int64_t per_image = args.anchors * (options.multi_label ? args.classes : 1);
  if (batch > 65535 || args.anchors * args.classes >= (int64_t{1} << 31) ||
      batch * per_image >= (int64_t{1} << 31)) {
    return invalid_argument(
        "GPU NMS handles up to 65535 images and 2^31 candidates per batch; {} images of {} "
        "anchors x {} classes is more (use smaller batches)",
        batch, args.anchors, args.classes);
  }
  args.score_threshold = options.score_threshold;
  args.multi_label = options.multi_label;
  args.iou_threshold = options.iou_threshold;
  args.agnostic = options.class_agnostic;
  args.top_k = options.top_k;
  args.max_det = static_cast<int>(max_det);
  args.boxes = static_cast<float*>(out.boxes.raw_data());
  args.scores = static_cast<float*>(out.scores.raw_data());
  args.classes_out = static_cast<int32_t*>(out.classes.raw_data());
  args.num_dets = static_cast<int32_t*>(out.num_dets.raw_data());
  const cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : cudaStreamPerThread;
  KS_CUDA_RETURN_IF_ERROR(cuda_nms::launch_yolo_nms(args, s));
  return Status();
}

StatusOr<std::unique_ptr<runtime::Kernel>> create_cuda_yolo_nms_kernel(
    const runtime::KernelDef& def) {
  if (def.input_dtypes.empty() ||
      (def.input_dtypes[0] != DType::kFloat32 && def.input_dtypes[0] != DType::kFloat16)) {
    return unimplemented("{}: the CUDA kernel takes float32 or float16", def.describe());
  }
  KS_ASSIGN_OR_RETURN(const DetectionOptions options, detection_options_from(def.attrs));
  return std::unique_ptr<runtime::Kernel>(std::make_unique<CudaYoloNmsKernel>(options));
}

}  // namespace kestrel::vision
