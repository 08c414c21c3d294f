#!/usr/bin/env bash
# The detection pipeline on the GPU machine, in one go: the GPU NMS and GPU letterbox against the
# CPU (exactness tests) and their timings, the mAP of the whole GPU path on coco-val (FP32, FP16),
# `kestrel detect` throughput on a folder of JPEGs, and the server with NMS in the engine.
# Runs from the bundle that `scripts/gpu-bundle.sh detect` makes; full logs go to $OUT (or ./out).
#   .dev/bundle/gpu-detect-check.sh [serve]      (serve: only the server section)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out" "$here/tmp"
export KESTREL_SHARED=$here/shared
models=$here/shared/models
run() { "$here/run" "$@"; }
{
  echo "== device"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  echo "$(nproc) CPU cores"; date -u +%Y-%m-%dT%H:%M:%SZ
} 2>&1 | tee "$out/device.txt"

if [ "${1:-}" != serve ]; then
echo "== GPU NMS and letterbox against the CPU"
run gpu_tests --gtest_filter='GpuNms*:GpuLetterbox*' 2>&1 | tee "$out/gpu_vision_tests.txt" |
  grep -E "^\[  (PASSED|FAILED)|Failure|SKIPPED|error" | head -30
echo "== timings (CUDA events)"
run gpu_tests --perf --gtest_filter='GpuNmsTest.Perf:GpuLetterboxTest.PerfBatch32Of1080p' 2>&1 |
  tee "$out/gpu_vision_perf.txt" | grep -E "^NMS |letterbox b32"

echo "== mAP on coco-val, the GPU path (GPU letterbox, engine, GPU NMS)"
for precision in fp32 fp16; do
  flag=""; [ $precision = fp16 ] && flag=--fp16
  run kestrel eval "$models/yolov5n.onnx" --images "$here/shared/coco-val/images" \
    --labels "$here/shared/coco-val/labels" --backend cuda $flag --batch 32 \
    > "$out/eval_yolov5n_$precision.txt" 2>&1
  echo "-- yolov5n $precision: $(tail -2 "$out/eval_yolov5n_$precision.txt" | tr '\n' ' ')"
done

echo "== kestrel detect on a folder of JPEGs (coco-val x32 = 4096 files), FP16, batch 32"
mkdir -p "$here/tmp/jpegs"
for k in $(seq 32); do
  for f in "$here"/shared/coco-val/images/*.jpg; do
    ln -sf "$f" "$here/tmp/jpegs/${k}_$(basename "$f")"
  done
done
for m in yolov5n.onnx yolov5s-randw-fp16.onnx; do
  /usr/bin/time -f "%e s wall, %P CPU, %M KB max RSS" "$here/run" kestrel detect "$models/$m" \
    "$here/tmp/jpegs" --backend cuda --fp16 --batch 32 -o "$here/tmp/detections.json" \
    > "$out/detect_$m.txt" 2>&1
  echo "-- $m: $(tr '\r' '\n' < "$out/detect_$m.txt" | grep -E "images/s|wall" | tail -2 | tr '\n' ' ')"
done

fi  # not "serve" only

echo "== server: yolov5s FP16 with NMS in the engine against raw outputs (gRPC, random input)"
repo=$here/tmp/repo
for name in raw nms; do
  mkdir -p "$repo/yolov5s_$name/1"
  ln -sf "$models/yolov5s-randw-fp16.onnx" "$repo/yolov5s_$name/1/model.onnx"
  {
    echo 'max_batch_size: 32'
    echo 'dynamic_batching { max_queue_delay_microseconds: 500 }'
    echo 'instance_group [ { count: 2 kind: KIND_GPU } ]'
    echo 'parameters { key: "precision" value { string_value: "fp16" } }'
    [ $name = nms ] && echo 'parameters { key: "nms" value { string_value: "true" } }'
  } > "$repo/yolov5s_$name/config.pbtxt"
done
run kestrel serve --model-repository "$repo" --backend cuda --http-port 18000 --grpc-port 18001 \
  --metrics-port 18002 > "$out/serve.log" 2>&1 &
server=$!
for _ in $(seq 240); do curl -sf localhost:18000/v2/health/ready >/dev/null && break; sleep 0.5; done
grep -m1 READY "$out/serve.log"
for name in raw nms; do
  echo "-- yolov5s_$name"
  run kestrel bench -m "yolov5s_$name" -i grpc -u localhost:18001 -b 8 \
    --concurrency-range 4:16:x2 -p 2000 -r 3 --no-progress -f "$out/bench_grpc_$name.csv" 2>&1 |
    tail -4
done
echo "-- yolov5s_nms /detect with JPEGs"
run kestrel bench -m yolov5s_nms -u localhost:18000 --images "$here/shared/coco-val/images" \
  --concurrency-range 16:64:x2 -p 2000 -r 3 --no-progress -f "$out/bench_detect_nms.csv" 2>&1 |
  tail -4
curl -s localhost:18002/metrics | grep -E "^nv_gpu_" | head -4
kill -TERM $server; wait $server; echo "server exit code $?"
