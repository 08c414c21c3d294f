#!/usr/bin/env bash
# The paper's experiment on one GPU machine: throughput and latency against concurrency for the
# deployment settings it compared (an ONNX baseline, TensorRT FP32, TensorRT FP16, TensorRT FP16
# with Triton's dynamic batching), here as Kestrel serves them:
#
#   cpu-fp32        Kestrel's CPU backend (in place of the paper's onnxruntime baseline)
#   gpu-fp32        CUDA engine, float32, each request executed alone (no dynamic batching)
#   gpu-fp16        CUDA engine, float16, each request executed alone
#   gpu-fp16-db     CUDA engine, float16, dynamic batching (max batch 32, queue delay 2 ms)
#
# for yolov5n (real weights) and yolov5s (random weights; its model file is exported in float16, and
# the float32 settings compute in float32 behind its float16 inputs and outputs: the builder
# converts it). Each setting gets its own model repository and server; `kestrel bench`
# sweeps the concurrency over gRPC and over HTTP with raw tensors (HTTP: the binary-data
# extension), and over HTTP /detect with JPEGs for gpu-fp16-db. Every run writes CSV and JSON; one
# HTML report overlays them.
#
# Last, the cold start of each GPU setting: `kestrel bench --cold-start -- kestrel serve ...` times
# process start -> ready -> first answer with an empty engine cache (the engine is built) and again
# with the cache the first start filled, with the peak host and GPU memory; cold-start.txt.
#
#   bench/paper/run.sh KESTREL MODELS_DIR IMAGES_DIR OUT_DIR [quick|cold]
#   (quick: fewer concurrency levels; cold: only the cold starts. scripts/gpu-check.sh runs it from
#   the GPU bundle: RUN is the bundle's runner. PAPER_MODELS="yolov5n" runs one model only, for
#   splitting the experiment over several sessions; `kestrel bench report` overlays the JSONs.
#   PAPER_COLD=no leaves out the cold starts.)
set -uo pipefail
kestrel=$1 models=$2 images=$3 out=$4 mode=${5:-}
run=${RUN:-}
paper_models=${PAPER_MODELS:-yolov5n yolov5s-randw-fp16}
selected() { [[ " $paper_models " == *" ${1%.onnx} "* ]]; }
mkdir -p "$out"
levels=1:128:x2
window=1500
[ "$mode" = quick ] && levels=1:16:x4 window=1000

make_repo() {  # name model precision batching -> prints the repository
  local name=$1 model=$2 precision=$3 batching=$4 repo="$out/repo-$1" stem
  stem=$(basename "$model" .onnx)
  rm -rf "$repo"; mkdir -p "$repo/$stem/1"
  cp "$model" "$repo/$stem/1/model.onnx"
  {
    echo "max_batch_size: 32"
    echo "parameters { key: \"precision\" value { string_value: \"$precision\" } }"
    [ "$batching" = yes ] && echo "dynamic_batching { max_queue_delay_microseconds: 2000 }"
    echo "instance_group [ { count: 2 } ]"
  } > "$repo/$stem/config.pbtxt"
  echo "$repo"
}

cold_starts() {
  mkdir -p "$out/cold"
  : > "$out/cold-start.txt"
  # The server command bench starts: through the bundle's runner when there is one.
  local server=("$kestrel")
  [ -n "$run" ] && server=("$run" "$kestrel")
  for spec in "yolov5n.onnx fp32" "yolov5n.onnx fp16" "yolov5s-randw-fp16.onnx fp32" \
              "yolov5s-randw-fp16.onnx fp16"; do
    set -- $spec
    selected "$1" || continue
    local stem=${1%.onnx} repo
    repo=$(make_repo "cold-${stem%%-*}-$2" "$models/$1" "$2" no)
    rm -rf "$out/cold/engines-$stem-$2"
    for cache in empty filled; do
      local name="${stem%%-*}-gpu-$2-$cache-cache"
      $run "$kestrel" bench --cold-start -m "$stem" -i grpc -u localhost:18101 \
        --concurrency-range 1:1 -p 500 -r 3 --no-progress --label "$name" \
        --json "$out/cold/$name.json" -- "${server[@]}" serve --model-repository "$repo" \
        --backend cuda --http-port 18100 --grpc-port 18101 --metrics-port 18102 \
        --engine-cache-dir "$out/cold/engines-$stem-$2" > "$out/cold/$name.txt" 2>&1
      echo "$name: $(grep -m1 'cold start:' "$out/cold/$name.txt")" | tee -a "$out/cold-start.txt"
    done
  done
}

if [ "$mode" = cold ]; then
  cold_starts
  exit 0
fi

serve_setting() {  # name model precision batching backend
  local name=$1 model=$2 precision=$3 batching=$4 backend=$5 repo
  repo=$(make_repo "$name" "$model" "$precision" "$batching")
  $run "$kestrel" serve --model-repository "$repo" --backend "$backend" --http-port 18100 \
    --grpc-port 18101 --metrics-port 18102 --engine-cache-dir "$out/engines" \
    > "$out/serve-$name.log" 2>&1 &
  server=$!
  for _ in $(seq 240); do
    grep -q "kestrel serve READY" "$out/serve-$name.log" && return 0
    kill -0 $server 2>/dev/null || break
    sleep 0.5
  done
  echo "server for $name did not become ready:"; tail -5 "$out/serve-$name.log"
  return 1
}

bench_setting() {  # name model-stem protocol levels [extra...]
  local name=$1 stem=$2 protocol=$3 range=$4; shift 4
  local url=localhost:18101
  [ "$protocol" = http ] && url=localhost:18100
  $run "$kestrel" bench -m "$stem" -i "$protocol" -u "$url" --concurrency-range "$range" \
    -p "$window" -r 4 -s 15 --no-progress --label "$name" -f "$out/$name.csv" \
    --json "$out/$name.json" "$@" 2>&1 | tail -n +2
}

for model in "$models/yolov5n.onnx" "$models/yolov5s-randw-fp16.onnx"; do
  stem=$(basename "$model" .onnx)
  selected "$stem" || continue
  short=${stem%%-*}
  settings="cpu-fp32 gpu-fp32 gpu-fp16 gpu-fp16-db"
  for setting in $settings; do
    name="$short-$setting"
    case $setting in
      cpu-fp32) serve_setting "$name" "$model" fp32 no cpu || continue ;;
      gpu-fp32) serve_setting "$name" "$model" fp32 no cuda || continue ;;
      gpu-fp16) serve_setting "$name" "$model" fp16 no cuda || continue ;;
      gpu-fp16-db) serve_setting "$name" "$model" fp16 yes cuda || continue ;;
    esac
    echo "== $name ($(grep -m1 -o 'READY in [0-9.]* s ([^)]*)' "$out/serve-$name.log"))"
    range=$levels
    [ "$setting" = cpu-fp32 ] && range=1:4:x2
    bench_setting "$name-grpc" "$stem" grpc "$range"
    bench_setting "$name-http" "$stem" http "$range"
    if [ "$setting" = gpu-fp16-db ]; then
      bench_setting "$name-http-detect" "$stem" http "$range" --images "$images"
    fi
    kill -TERM $server; wait $server
  done
done
$run "$kestrel" bench report "$out/paper.html" "$out"/*.json && echo "report: $out/paper.html"
[ "${PAPER_COLD:-yes}" = no ] || cold_starts
