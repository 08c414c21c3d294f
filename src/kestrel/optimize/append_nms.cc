// append_yolo_nms (see append_nms.h).
#include "kestrel/optimize/append_nms.h"

#include <fmt/format.h>

namespace kestrel::optimize {
namespace {

// "iou_threshold=0.45 layout=auto ..." for the graph's metadata (`kestrel inspect` shows it).
std::string describe(const Attributes& attrs) {
  std::string s;
  for (const auto& [name, value] : attrs.all()) {
    if (!s.empty()) s += ' ';
    if (const auto* i = std::get_if<int64_t>(&value)) {
      s += fmt::format("{}={}", name, *i);
    } else if (const auto* f = std::get_if<float>(&value)) {
      s += fmt::format("{}={}", name, *f);
    } else if (const auto* t = std::get_if<std::string>(&value)) {
      s += fmt::format("{}={}", name, *t);
    }
  }
  return s;
}

}  // namespace

Status append_yolo_nms(ir::Graph& graph, const Attributes& nms) {
  if (graph.outputs().empty()) return invalid_argument("the graph has no output to append NMS to");
  ir::Value* raw = graph.outputs().front();
  if (raw->producer() != nullptr && raw->producer()->op_type() == "YoloNms") {
    return invalid_argument("the graph already ends in YoloNms");
  }
  if (raw->shape().rank() != 3) {
    return invalid_argument(
        "NMS needs a YOLO output of rank 3 ([N, anchors, 5+classes] or [N, 4+classes, "
        "anchors]); the first output '{}' has shape {}",
        raw->name(), raw->shape().to_string());
  }
  // An FP16 engine ends in Cast(float16 -> float32): NMS reads the float16 tensor instead, which
  // halves what it reads, and the cast becomes dead.
  ir::Value* source = raw;
  if (ir::Node* cast = raw->producer();
      cast != nullptr && cast->op_type() == "Cast" && cast->input(0) != nullptr &&
      cast->input(0)->dtype() == DType::kFloat16 && raw->dtype() == DType::kFloat32) {
    source = cast->input(0);
  }
  std::vector<ir::Value*> outs;
  for (const char* name : kNmsOutputNames) {
    if (ir::Value* taken = graph.find_value(name); taken != nullptr) {
      return invalid_argument(
          "the graph already has a value named '{}', which NMS's output would take", name);
    }
    outs.push_back(graph.add_value(name));
  }
  graph.add_node("YoloNms", {source}, outs, nms, graph.unique_name("yolo_nms"));
  graph.clear_outputs();
  for (ir::Value* v : outs) graph.add_output(v);
  graph.remove_dead();
  graph.metadata["kestrel_nms"] = describe(nms);
  return Status();
}

}  // namespace kestrel::optimize
