// Detector: letterbox, engine run, decode, NMS, map back (see detector.h).
#include "kestrel/vision/detector.h"

#ifdef KESTREL_WITH_CUDA
#include "kestrel/vision/letterbox_cuda.h"
#endif

#include <cctype>
#include <charconv>
#include <map>

namespace kestrel::vision {
namespace {

// A tiny reader for the two spellings of the names metadata: JSON and Python literals (quotes ' or
// ", integer keys bare or quoted). Only what those need: objects/lists of strings.
class NamesReader {
 public:
  explicit NamesReader(std::string_view text) : s_(text) {}

  StatusOr<std::vector<std::string>> read() {
    skip_space();
    if (eat('[')) {
      std::vector<std::string> names;
      skip_space();
      if (eat(']')) return finish(std::move(names));
      while (true) {
        KS_ASSIGN_OR_RETURN(std::string name, read_string());
        names.push_back(std::move(name));
        skip_space();
        if (eat(']')) return finish(std::move(names));
        if (!eat(',')) return error("expected ',' or ']'");
        skip_space();
      }
    }
    if (!eat('{')) return error("expected '{' or '['");
    std::map<int64_t, std::string> by_id;
    skip_space();
    if (!eat('}')) {
      while (true) {
        KS_ASSIGN_OR_RETURN(const int64_t id, read_key());
        skip_space();
        if (!eat(':')) return error("expected ':'");
        skip_space();
        KS_ASSIGN_OR_RETURN(std::string name, read_string());
        if (!by_id.emplace(id, std::move(name)).second) return error("duplicate class id");
        skip_space();
        if (eat('}')) break;
        if (!eat(',')) return error("expected ',' or '}'");
        skip_space();
      }
    }
    std::vector<std::string> names;
    if (!by_id.empty()) {
      if (by_id.rbegin()->first >= 100000) return error("class id over 100000");
      names.resize(static_cast<size_t>(by_id.rbegin()->first + 1));
      for (size_t i = 0; i < names.size(); ++i) names[i] = fmt::format("class{}", i);
      for (auto& [id, name] : by_id) names[static_cast<size_t>(id)] = std::move(name);
    }
    return finish(std::move(names));
  }

 private:
  Status error(std::string_view what) const {
    return invalid_argument("class names metadata: {} at offset {}", what, pos_);
  }
  StatusOr<std::vector<std::string>> finish(std::vector<std::string> names) {
    skip_space();
    if (pos_ != s_.size()) return error("trailing characters");
    return names;
  }
  void skip_space() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  StatusOr<int64_t> read_key() {
    const bool quoted = pos_ < s_.size() && (s_[pos_] == '"' || s_[pos_] == '\'');
    const char quote = quoted ? s_[pos_++] : 0;
    int64_t id = -1;
    const auto [ptr, ec] = std::from_chars(s_.data() + pos_, s_.data() + s_.size(), id);
    if (ec != std::errc() || id < 0) return error("expected a non-negative integer class id");
    pos_ = static_cast<size_t>(ptr - s_.data());
    if (quoted && !eat(quote)) return error("unterminated key");
    return id;
  }
  StatusOr<std::string> read_string() {
    if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\'')) {
      return error("expected a quoted name");
    }
    const char quote = s_[pos_++];
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      char c = s_[pos_++];
      if (c == '\\') {
        if (pos_ >= s_.size()) break;
        c = s_[pos_++];
        if (c == 'n') c = '\n';
        if (c == 't') c = '\t';
        // Other escapes (\uXXXX) are kept as the escaped character; names are for display.
      }
      out += c;
    }
    if (!eat(quote)) return error("unterminated string");
    return out;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

StatusOr<std::vector<std::string>> parse_class_names(std::string_view metadata) {
  return NamesReader(metadata).read();
}

StatusOr<std::unique_ptr<Detector>> Detector::create(const engine::Engine& engine,
                                                     YoloLayout layout) {
  if (engine.inputs().empty() || engine.outputs().empty()) {
    return invalid_argument("a detector needs a model with an input and an output");
  }
  const engine::TensorInfo& input = engine.inputs()[0];
  const ir::SymShape& shape = input.type.shape;
  if (!shape.has_rank() || shape.rank() != 4 || !shape[1].is_known() || shape[1].value() != 3 ||
      !shape[2].is_known() || !shape[3].is_known() ||
      (input.type.dtype != DType::kFloat32 && input.type.dtype != DType::kFloat16)) {
    return invalid_argument(
        "a detector needs a model whose first input is float32 or float16 [N, 3, H, W] with H and "
        "W fixed; '{}' is {}",
        input.name, input.type.to_string());
  }
  std::unique_ptr<Detector> d(new Detector());
  d->engine_ = &engine;
  d->input_name_ = input.name;
  d->input_height_ = shape[2].value();
  d->input_width_ = shape[3].value();
  d->input_dtype_ = input.type.dtype;
  d->layout_ = layout;
  d->gpu_letterboxes_ = std::make_shared<GpuLetterboxes>();
  const auto names = engine.graph().metadata.find("names");
  if (names != engine.graph().metadata.end()) {
    KS_ASSIGN_OR_RETURN(d->class_names_, parse_class_names(names->second));
  }
  // An engine built with NMS ends in YoloNms, whose four outputs are the engine's.
  const ir::Value* first = engine.graph().outputs().front();
  if (first->producer() != nullptr && first->producer()->op_type() == "YoloNms") {
    if (engine.outputs().size() != 4) {
      return invalid_argument(
          "an engine with NMS has 4 outputs (boxes, scores, classes, "
          "num_dets), this one {}",
          engine.outputs().size());
    }
    d->has_nms_ = true;
    KS_ASSIGN_OR_RETURN(d->nms_options_, detection_options_from(first->producer()->attrs()));
    for (const engine::TensorInfo& o : engine.outputs()) d->output_names_.push_back(o.name);
    return d;
  }
  // The output's layout, as far as its declared shape tells (exports often leave it symbolic).
  const engine::TensorInfo& output = engine.outputs()[0];
  d->output_names_ = {output.name};
  const ir::SymShape& out_shape = output.type.shape;
  if (out_shape.has_rank() && out_shape.rank() != 3) {
    return invalid_argument(
        "'{}' is {}, not a YOLO output [N, anchors, 5+classes] or "
        "[N, 4+classes, anchors]",
        output.name, output.type.to_string());
  }
  if (out_shape.has_rank() && out_shape[1].is_known() && out_shape[2].is_known()) {
    const int64_t classes = d->class_names_.empty() ? -1 : int64_t(d->class_names_.size());
    KS_ASSIGN_OR_RETURN(
        d->layout_,
        resolve_yolo_layout(Shape{1, out_shape[1].value(), out_shape[2].value()}, layout, classes));
  }
  return d;
}

StatusOr<Tensor> Detector::preprocess(std::span<const Tensor> images,
                                      std::vector<LetterboxParams>* params) const {
  if (images.empty()) return invalid_argument("no images to detect objects in");
  KS_ASSIGN_OR_RETURN(Tensor batch,
                      Tensor::allocate(input_dtype_, Shape{static_cast<int64_t>(images.size()), 3,
                                                           input_height_, input_width_}));
  if (params) params->clear();
  for (size_t i = 0; i < images.size(); ++i) {
    LetterboxParams p;
    StatusOr<Tensor> boxed = letterbox(images[i], input_width_, input_height_, &p);
    if (!boxed.ok()) return boxed.status().with_context(fmt::format("image {}", i));
    KS_RETURN_IF_ERROR(write_model_input(*boxed, static_cast<int64_t>(i), batch));
    if (params) params->push_back(p);
  }
  return batch;
}

#ifdef KESTREL_WITH_CUDA
struct Detector::GpuLetterboxes {
  std::mutex mutex;
  std::vector<std::unique_ptr<GpuLetterbox>> idle;
};
#else
struct Detector::GpuLetterboxes {};
#endif

StatusOr<Tensor> Detector::preprocess_on_device(std::span<const Tensor> images,
                                                std::vector<LetterboxParams>* params) const {
#ifdef KESTREL_WITH_CUDA
  const Device device = engine_->device();
  if (device.is_cpu()) return unimplemented("the engine runs on the CPU");
  if (images.empty()) return invalid_argument("no images to detect objects in");
  std::vector<LetterboxParams> placements;
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].rank() != 3) {
      return invalid_argument("image {}: expected uint8 [H, W, 3], got {}", i,
                              images[i].debug_string(0));
    }
    StatusOr<LetterboxParams> p =
        compute_letterbox(images[i].shape()[1], images[i].shape()[0], input_width_, input_height_);
    if (!p.ok()) return p.status().with_context(fmt::format("image {}", i));
    placements.push_back(*p);
  }
  std::unique_ptr<GpuLetterbox> letterbox;
  {
    std::lock_guard lock(gpu_letterboxes_->mutex);
    if (!gpu_letterboxes_->idle.empty()) {
      letterbox = std::move(gpu_letterboxes_->idle.back());
      gpu_letterboxes_->idle.pop_back();
    }
  }
  if (!letterbox) {
    KS_ASSIGN_OR_RETURN(letterbox, GpuLetterbox::create(device.index));
  }
  StatusOr<Tensor> input =
      letterbox->run_to_new(images, placements, input_dtype_, input_width_, input_height_);
  {
    std::lock_guard lock(gpu_letterboxes_->mutex);
    gpu_letterboxes_->idle.push_back(std::move(letterbox));
  }
  if (input.ok() && params) *params = std::move(placements);
  return input;
#else
  (void)images;
  (void)params;
  return unimplemented("this build has no CUDA");
#endif
}

StatusOr<std::vector<Tensor>> Detector::infer(const Tensor& input) const {
  KS_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, engine_->run({{input_name_, input}}));
  outputs.resize(output_names_.size());  // the raw output is the first
  return outputs;
}

StatusOr<std::vector<std::vector<Detection>>> Detector::postprocess(
    std::span<const Tensor> outputs, std::span<const LetterboxParams> params,
    const DetectionOptions& options) const {
  if (outputs.size() != output_names_.size()) {
    return invalid_argument("postprocess takes {} output tensors, got {}", output_names_.size(),
                            outputs.size());
  }
  std::vector<std::vector<Detection>> out;
  if (has_nms_) {
    const NmsOutput nms{outputs[0], outputs[1], outputs[2], outputs[3]};
    const int64_t batch = nms.num_dets.rank() == 1 ? nms.num_dets.shape()[0] : -1;
    const int64_t max_det = nms_options_.max_detections;
    const auto fits = [&](const Tensor& t, DType dtype, const Shape& shape) {
      return t.is_cpu() && t.dtype() == dtype && t.shape() == shape;
    };
    if (batch < 0 || !fits(nms.boxes, DType::kFloat32, Shape{batch, max_det, 4}) ||
        !fits(nms.scores, DType::kFloat32, Shape{batch, max_det}) ||
        !fits(nms.classes, DType::kInt32, Shape{batch, max_det}) ||
        !fits(nms.num_dets, DType::kInt32, Shape{batch})) {
      return invalid_argument("NMS outputs of unexpected types or shapes");
    }
    if (!params.empty() && static_cast<int64_t>(params.size()) != batch) {
      return invalid_argument("{} letterbox placements for a batch of {}", params.size(), batch);
    }
    for (int64_t i = 0; i < batch; ++i) {
      const int32_t n = nms.num_dets.data<int32_t>()[i];
      if (n < 0 || n > max_det) return internal_error("NMS reported {} detections", n);
      std::vector<Detection> dets;
      for (Detection& d : unpack_detections(nms, i)) {
        if (!(d.score > options.score_threshold)) continue;
        if (static_cast<int64_t>(dets.size()) >= options.max_detections) break;
        dets.push_back(params.empty() ? d : map_to_source(d, params[i]));
      }
      out.push_back(std::move(dets));
    }
    return out;
  }
  const Tensor& output = outputs[0];
  DetectionOptions o = options;
  if (o.layout == YoloLayout::kAuto) o.layout = layout_;
  if (o.num_classes < 0 && !class_names_.empty()) {
    o.num_classes = static_cast<int64_t>(class_names_.size());
  }
  KS_ASSIGN_OR_RETURN(const NmsOutput nms, batched_nms(output, o, params));
  for (int64_t i = 0; i < output.shape()[0]; ++i) out.push_back(unpack_detections(nms, i));
  return out;
}

StatusOr<std::vector<std::vector<Detection>>> Detector::detect(
    std::span<const Tensor> images, const DetectionOptions& options) const {
  std::vector<LetterboxParams> params;
  Tensor input;
  if (engine_->device().is_cpu()) {
    KS_ASSIGN_OR_RETURN(input, preprocess(images, &params));
  } else {
    KS_ASSIGN_OR_RETURN(input, preprocess_on_device(images, &params));
  }
  KS_ASSIGN_OR_RETURN(const std::vector<Tensor> outputs, infer(input));
  return postprocess(outputs, params, options);
}

}  // namespace kestrel::vision
