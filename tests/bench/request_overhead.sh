#!/bin/bash
# Per-request server overhead (issue 5: "tiny model, gRPC, concurrency 1: <= 50 us"): the latency
# one client sees against `kestrel serve` running tests/server/data/tiny.onnx (y = 2x + 1 on four
# floats), next to the same client against fake_kserve_server, which answers from the frontend
# without queue, scheduler or engine. The difference is what Kestrel's request path costs; the
# server's own counters (request duration, queue, compute) split it. Not a CI test: figures are
# for the GPU machine.
#
#   tests/bench/request_overhead.sh build/src/kestrel build/tests/fake_kserve_server \
#     tests/server/data/tiny.onnx [cpu] [cuda]
#
# RUN: a prefix for both binaries (the device bundle's `./run`). FAKE_ARGS: more flags for the fake
# server (--grpc-cqs N, --grpc-max-pollers N).
set -u
KESTREL=$1
FAKE=$2
TINY=$3
shift 3
BACKENDS=${*:-cpu}
RUN=${RUN:-}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
lscpu | grep "Model name"; nproc

wait_file() { for _ in $(seq 600); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }
# One closed-loop measurement at concurrency 1; prints throughput and latencies in microseconds
# (from the CSV, which has perf_analyzer's microsecond columns).
measure() {  # model protocol url
  $RUN "$KESTREL" bench -m "$1" -i "$2" -u "$3" --concurrency-range 1 -p 3000 -r 3 -s 20 \
    --no-progress -f "$WORK/m.csv" > "$WORK/m.txt" 2>&1 || { cat "$WORK/m.txt"; return; }
  tail -1 "$WORK/m.csv" | awk -F, '{ printf "%8.0f req/s  p50 %5d us  p90 %5d us  p99 %5d us\n", $2, $10, $11, $13 }'
}

echo "== fake_kserve_server (frontend only)"
$RUN "$FAKE" --port-file "$WORK/fake_ports" --service-us 0 ${FAKE_ARGS:-} > "$WORK/fake.log" 2>&1 &
wait_file "$WORK/fake_ports" || { echo "fake server did not start"; exit 1; }
read -r FHTTP FGRPC < "$WORK/fake_ports"
echo "grpc $(measure fake grpc 127.0.0.1:$FGRPC)"
echo "http $(measure fake http 127.0.0.1:$FHTTP)"
kill %1; wait %1 2>/dev/null

for backend in $BACKENDS; do
  echo "== kestrel serve --backend $backend"
  $RUN "$KESTREL" serve --model "$TINY" --backend "$backend" --http-port 18500 --grpc-port 18501 \
    --metrics-port 18502 --engine-cache-dir none > "$WORK/serve_$backend.log" 2>&1 &
  for _ in $(seq 600); do grep -q "serve READY" "$WORK/serve_$backend.log" && break; sleep 0.05; done
  grep -q "serve READY" "$WORK/serve_$backend.log" || { cat "$WORK/serve_$backend.log"; exit 1; }
  for proto in grpc http; do
    port=18501; [ $proto = http ] && port=18500
    before=$(curl -s 127.0.0.1:18502/metrics | grep -E '^nv_inference_(count|request_duration_us|queue_duration_us|compute_infer_duration_us)\{')
    echo "$proto $(measure tiny $proto 127.0.0.1:$port)"
    after=$(curl -s 127.0.0.1:18502/metrics | grep -E '^nv_inference_(count|request_duration_us|queue_duration_us|compute_infer_duration_us)\{')
    # Server-side means over this protocol's requests (warm-up included).
    printf '%s\n%s\n' "$before" "$after" | awk '
      { split($1, k, "{"); v[k[1]] = (k[1] in v) ? $2 - v[k[1]] : $2 }
      END { n = v["nv_inference_count"]; if (n > 0)
        printf "  server, per request: duration %.1f us = queue %.1f us + compute infer %.1f us + rest\n",
          v["nv_inference_request_duration_us"] / n, v["nv_inference_queue_duration_us"] / n,
          v["nv_inference_compute_infer_duration_us"] / n }'
  done
  kill %1; wait %1 2>/dev/null
done
