#!/usr/bin/env bash
# Every GPU test and benchmark, in one go, on the GPU machine; a short table last.
# Runs from the bundle that scripts/gpu-bundle.sh makes; writes full logs to $OUT (or ./out).
#   .dev/bundle/gpu-check.sh [quick]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export KESTREL_SHARED=$here/shared
run() { "$here/run" "$@"; }
{
  echo "== device"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  date -u +%Y-%m-%dT%H:%M:%SZ
} 2>&1 | tee "$out/device.txt"
echo "== GPU tests"
run gpu_tests 2>&1 | tee "$out/gpu_tests.txt" | grep -E "^\[  (PASSED|FAILED)|Failure|relative L2|runs on|SKIPPED|error" | head -60
echo "== op harness timings"
run gpu_tests --perf --gtest_filter='*CudaOps*' > "$out/ops_perf.txt" 2>&1
grep -E "^(Conv|MaxPool|Resize|Transpose|Concat|Add |Mul |Sigmoid)" "$out/ops_perf.txt" | head -40
[ "${1:-}" = quick ] && exit 0
echo "== engine throughput (model forward, input on the GPU)"
# model precision layout [extra flags]
for spec in "yolov5n.onnx fp32 nhwc" "yolov5n.onnx fp32 nchw" "yolov5n.onnx fp16 nhwc" \
            "yolov5n.onnx fp16 nchw" "yolov5s-randw-fp16.onnx fp16 nhwc" \
            "yolov5s-randw-fp16.onnx fp16 nchw"; do
  set -- $spec
  flag=""; [ "$2" = fp16 ] && flag=--fp16
  name="${1%.onnx}_$2_$3"
  echo "-- $name"
  run kestrel perf "$here/shared/models/$1" --backend cuda $flag --layout "$3" --batch 1,8,32,64 \
    -n 50 --profile-csv "$out/layers_$name.csv" 2>&1 | tee "$out/perf_$name.txt" | sed -n 2,7p
done
echo "== engine files: build without and with a timing cache, then load"
mkdir -p "$here/tmp"; rm -f "$here/tmp/timing.txt"
for pass in cold cached; do
  run kestrel build "$here/shared/models/yolov5s-randw-fp16.onnx" --fp16 --max-batch 64 \
    -o "$here/tmp/yolov5s.kplan" --timing-cache "$here/tmp/timing.txt" 2>&1 \
    | tee "$out/build_yolov5s_$pass.txt" | tail -1
done
run kestrel perf "$here/tmp/yolov5s.kplan" --batch 1,32 -n 50 2>&1 | tee "$out/perf_yolov5s_kplan.txt"
echo "== per-layer profile (batch 32, NHWC FP16)"
for m in yolov5n.onnx yolov5s-randw-fp16.onnx; do
  run kestrel perf "$here/shared/models/$m" --backend cuda --fp16 --batch 32 -n 20 --profile \
    --top 25 > "$out/profile_${m%.onnx}.txt" 2>&1
  sed -n '/^batch 32:/,$p' "$out/profile_${m%.onnx}.txt" | head -22
done
echo "== server on the GPU: kestrel serve + kestrel bench (HTTP /detect with JPEGs, gRPC infer)"
run kestrel serve --model "$here/shared/models/yolov5s-randw-fp16.onnx" --backend cuda \
  --engine-cache-dir "$here/tmp/engines" --http-port 18000 --grpc-port 18001 --metrics-port 18002 \
  > "$out/serve.log" 2>&1 &
server=$!
for _ in $(seq 120); do curl -sf localhost:18000/v2/health/ready >/dev/null && break; sleep 0.5; done
grep -m1 READY "$out/serve.log"
run kestrel bench -m yolov5s-randw-fp16 -u localhost:18000 --images "$here/shared/images" \
  --concurrency-range 1:16:x4 -p 2000 -r 4 --no-progress -f "$out/bench_detect.csv" 2>&1 | tail -6
run kestrel bench -m yolov5s-randw-fp16 -i grpc -u localhost:18001 --concurrency-range 1:32:x4 \
  -p 2000 -r 4 --no-progress -f "$out/bench_grpc.csv" 2>&1 | tail -6
curl -s localhost:18002/metrics | grep -E "^nv_inference_(count|exec_count)" | head -4
kill -TERM $server; wait $server; echo "server exit code $?"
echo "== the bench's own overhead (gRPC, trivial model)"
RUN="$here/run" bash "$here/overhead.sh" kestrel fake_kserve_server 2>&1 | tail -12
