#!/usr/bin/env bash
# Kestrel's main job on a fresh Debian 12 machine: installs what it needs, builds, and serves a
# model over KServe v2 (HTTP :8000, gRPC :8001, metrics :8002), on the GPU when there is one and
# on the CPU otherwise. Ctrl-C (SIGINT) or SIGTERM stops it gracefully.
#   ./run.sh [MODEL.onnx|MODEL.kplan] [more `kestrel serve` flags]
#   (default model: ../shared/models/yolov5n.onnx)
# Then, from another shell:
#   curl localhost:8000/v2/health/ready
#   curl --data-binary @../shared/images/bus.jpg localhost:8000/v2/models/yolov5n/detect
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target kestrel
model=${1:-../shared/models/yolov5n.onnx}
[ $# -gt 0 ] && shift
if [ ! -f "$model" ]; then
  echo "model $model not found: pass an ONNX model as the first argument" >&2
  exit 2
fi
./build/src/kestrel inspect "$model" | head -12
exec ./build/src/kestrel serve --model "$model" "$@"
