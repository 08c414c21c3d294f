#!/usr/bin/env bash
# Kestrel's main job on a fresh Debian 12 machine: installs what it needs, builds, and runs a model.
#   ./run.sh [MODEL.onnx]      (default: ../shared/models/yolov5n.onnx)
# Uses the GPU when there is one, the CPU otherwise.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target kestrel
model=${1:-../shared/models/yolov5n.onnx}
if [ ! -f "$model" ]; then
  echo "model $model not found: pass an ONNX model as the first argument" >&2
  exit 2
fi
./build/src/kestrel inspect "$model"
./build/src/kestrel run "$model" --random --batch 1 --output-dir out
