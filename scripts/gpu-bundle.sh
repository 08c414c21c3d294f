#!/usr/bin/env bash
# Builds what the GPU machine runs and packs it, with the models and reference data, into .dev/bundle
# (git-ignored; name it in the device tool's `carry`). Release build without oneDNN (the GPU
# machine needs no fast CPU path, and oneDNN alone is 40 MB of the 64 MB a call may carry).
#   scripts/gpu-bundle.sh           then on the GPU machine:  .dev/bundle/gpu-check.sh
#   scripts/gpu-bundle.sh detect    then:  .dev/bundle/gpu-detect-check.sh (coco-val instead of
#                                   the float64 reference output, to stay within what a call carries)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${KESTREL_SHARED:-../shared}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKESTREL_ONEDNN=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build-gpu --target kestrel gpu_tests fake_kserve_server
rm -rf .dev/bundle
"$shared/tools/device-bundle" .dev/bundle build-gpu/src/kestrel build-gpu/tests/gpu_tests \
  build-gpu/tests/fake_kserve_server >/dev/null
strip .dev/bundle/bin/*
mkdir -p .dev/bundle/shared/models .dev/bundle/shared/reference
cp "$shared"/models/yolov5n.onnx "$shared"/models/yolov5s-randw-fp16.onnx .dev/bundle/shared/models/
cp "$shared"/reference/bus_input_rgb_u8.npy "$shared"/reference/zidane_input_rgb_u8.npy \
  .dev/bundle/shared/reference/
if [ "${1:-}" = detect ]; then
  cp -r "$shared"/coco-val .dev/bundle/shared/
else
  cp "$shared"/reference/bus_output.npy .dev/bundle/shared/reference/
fi
mkdir -p .dev/bundle/shared/images
cp "$shared"/images/*.jpg .dev/bundle/shared/images/
cp scripts/gpu-check.sh scripts/gpu-detect-check.sh scripts/roofline.py tests/bench/overhead.sh \
  tests/bench/request_overhead.sh tests/server/data/tiny.onnx bench/paper/run.sh .dev/bundle/
du -sh .dev/bundle
