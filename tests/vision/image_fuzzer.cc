// libFuzzer target: arbitrary bytes as an image file and as a YOLO label file. Decoding (JPEG, PNG,
// EXIF), letterboxing the result and label parsing must return an error or succeed; they must never
// crash, hang, leak or touch memory they do not own. Built with -DKESTREL_FUZZ=ON (clang).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kestrel/vision/coco_eval.h"
#include "kestrel/vision/image.h"
#include "kestrel/vision/letterbox.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // A small pixel limit keeps each run fast; the limit check itself is what a bomb exercises.
  const kestrel::vision::DecodeOptions options{.max_pixels = int64_t{4} << 20};
  (void)kestrel::vision::jpeg_exif_orientation(bytes);
  (void)kestrel::vision::read_image_info(bytes, options);
  auto image = kestrel::vision::decode_image(bytes, options);
  if (image.ok()) (void)kestrel::vision::letterbox(*image, 64, 48, nullptr);
  (void)kestrel::vision::parse_yolo_labels(bytes, 640, 480);
  return 0;
}
