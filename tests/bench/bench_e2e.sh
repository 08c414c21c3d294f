#!/bin/bash
# kestrel bench end to end (see tests.cmake): against the fake KServe server over HTTP and gRPC,
# closed and open loop, errors, --accuracy, --cold-start, the report overlay, the HTML report
# in headless Chromium, and tensors through system shared memory against kestrel serve.  Usage: bench_e2e.sh KESTREL FAKE_SERVER
set -u
KESTREL=$1
FAKE=$2
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$WORK"

# Wait for a fake server's port file; prints "HTTP GRPC".
start_fake() {  # name args...
  local name=$1; shift
  "$FAKE" --port-file "$name.ports" "$@" > "$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$name.ports" ] && break; sleep 0.05; done
  [ -s "$name.ports" ] || fail "fake server $name did not start: $(cat "$name.log")"
}

# A few labelled images for --accuracy (skipped without ../shared).
ACCURACY=0
if [ -d "${KESTREL_SHARED:-}/coco-val/images" ]; then
  mkdir images labels
  for f in $(ls "$KESTREL_SHARED/coco-val/images" | head -4); do
    cp "$KESTREL_SHARED/coco-val/images/$f" images/
    cp "$KESTREL_SHARED/coco-val/labels/${f%.*}.txt" labels/ 2>/dev/null
  done
  ACCURACY=1
fi

if [ $ACCURACY = 1 ]; then start_fake main --images images --labels labels; else start_fake main; fi
read HTTP GRPC < main.ports
COMMON=(-m fake -p 150 -r 6 -s 60 --no-progress)
HEADER='Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency'

echo "== HTTP, closed loop, concurrency 1:4:x2"
"$KESTREL" bench "${COMMON[@]}" -u 127.0.0.1:$HTTP --concurrency-range 1:4:x2 -f http.csv \
  --json http.json --label "HTTP binary" || fail "kestrel bench over HTTP"
[ "$(head -1 http.csv)" = "$HEADER" ] || fail "CSV header: $(head -1 http.csv)"
[ "$(wc -l < http.csv)" = 4 ] || fail "CSV rows: $(cat http.csv)"
cat http.csv
python3 - http.json <<'PY' || fail "HTTP JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert [p["level"] for p in d["points"]] == [1, 2, 4], d["points"]
for p in d["points"]:
    s = p["summary"]
    assert s["throughput"] > 0 and s["requests"] > 0 and s["errors"] == 0, s
    assert 0 < s["latency_us"]["p50"] <= s["latency_us"]["p99"] <= s["latency_us"]["max"], s
    assert s["server"]["compute_infer_us"] > 0 and s["server"]["queue_us"] == 10.0, s
    assert len(p["windows"]) >= 3
PY

echo "== HTTP, JSON tensors"
"$KESTREL" bench "${COMMON[@]}" -u 127.0.0.1:$HTTP --input-tensor-format json -b 2 \
  -f json_tensors.csv || fail "kestrel bench with JSON tensors"

echo "== gRPC, closed loop"
"$KESTREL" bench "${COMMON[@]}" -i grpc -u 127.0.0.1:$GRPC --concurrency-range 1:3 \
  -f grpc.csv --json grpc.json --label gRPC --report grpc.html http.json \
  || fail "kestrel bench over gRPC"
grep -q 'id="latency-plot"' grpc.html || fail "--report of a run"
[ "$(grep -c '<polyline class="series"' grpc.html)" = 6 ] || fail "--report overlay of 2 runs"
[ "$(head -1 grpc.csv)" = "$HEADER" ] || fail "gRPC CSV header"
[ "$(wc -l < grpc.csv)" = 4 ] || fail "gRPC CSV rows"

echo "== HTTP, open loop, constant and Poisson"
"$KESTREL" bench "${COMMON[@]}" -u 127.0.0.1:$HTTP --request-rate-range 100:200:100 \
  --request-distribution constant -f rate.csv --json rate.json || fail "open loop"
[ "$(head -1 rate.csv)" = "Request Rate${HEADER#Concurrency}" ] || fail "rate CSV header"
"$KESTREL" bench "${COMMON[@]}" -u 127.0.0.1:$HTTP --request-rate-range 300 \
  --percentile 95 || fail "Poisson open loop"

echo "== errors are counted and shown"
start_fake failing --fail-every 4
read FHTTP FGRPC < failing.ports
"$KESTREL" bench "${COMMON[@]}" -u 127.0.0.1:$FHTTP --json errors.json > errors.out \
  || fail "bench against a failing server"
cat errors.out
grep -q "UNAVAILABLE: HTTP 503: injected failure" errors.out || fail "errors not shown"
python3 -c "import json,sys; s=json.load(open('errors.json'))['points'][0]['summary']; \
assert s['errors'] > 0 and abs(s['errors']/(s['errors']+s['requests']) - 0.25) < 0.1, s" \
  || fail "errors not counted"
"$KESTREL" bench -m missing -u 127.0.0.1:$HTTP -p 100 --no-progress 2> missing.err \
  && fail "a missing model must fail"
grep -q "NOT_FOUND" missing.err || fail "missing model: $(cat missing.err)"

echo "== --timeout-ms: an answer later than the timeout is a DEADLINE_EXCEEDED error"
start_fake slow --service-us 400000
read SHTTP SGRPC < slow.ports
for proto in http grpc; do
  port=$SHTTP; [ $proto = grpc ] && port=$SGRPC
  timeout 60 "$KESTREL" bench -m fake -i $proto -u 127.0.0.1:$port -p 200 -r 3 -s 100 \
    --no-progress --timeout-ms 50 > slow_$proto.out 2>&1
  [ $? = 124 ] && fail "$proto: --timeout-ms did not end a request that takes 400 ms"
  grep -q "DEADLINE_EXCEEDED" slow_$proto.out || fail "$proto timeout not shown: $(cat slow_$proto.out)"
done

if [ $ACCURACY = 1 ]; then
  echo "== --accuracy over /detect"
  "$KESTREL" bench "${COMMON[@]}" -u 127.0.0.1:$HTTP --images images --accuracy --labels labels \
    --concurrency-range 2 --json accuracy.json > accuracy.out || fail "accuracy run"
  cat accuracy.out
  # Exact answers score YOLOv5's perfect 0.995 (its sentinel halves the last trapezoid).
  grep -q "mAP@0.5 = 0.9950, mAP@0.5:0.95 = 0.9950" accuracy.out || fail "mAP of exact answers"
else
  echo "SKIP --accuracy: no \$KESTREL_SHARED/coco-val"
fi

echo "== --cold-start"
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$KESTREL" bench -m fake -p 100 -r 3 --no-progress -u 127.0.0.1:$PORT --cold-start --json cold.json \
  -- "$FAKE" --http-port "$PORT" --startup-ms 300 > cold.out || fail "cold start"
cat cold.out
python3 -c "import json; c=json.load(open('cold.json'))['cold_start']; \
assert 0.3 <= c['ready_s'] <= c['first_answer_s'] < 30 and c['peak_rss_bytes'] > 1e6, c" \
  || fail "cold start figures"

echo "== report overlay"
"$KESTREL" bench report overlay.html http.json grpc.json --title "HTTP vs gRPC" \
  || fail "kestrel bench report"
[ "$(grep -c '<polyline class="series"' overlay.html)" = 6 ] || fail "overlay: 2 + 4 lines"

if command -v chromium > /dev/null; then
  echo "== the report in headless Chromium"
  CHROME=(chromium --headless --disable-gpu --no-sandbox --no-first-run
          --user-data-dir="$WORK/chrome" --enable-logging=stderr --v=0)
  timeout 60 "${CHROME[@]}" --dump-dom "file://$WORK/overlay.html" > dom.html 2> console.log \
    || fail "chromium --dump-dom: $(tail -5 console.log)"
  grep -q 'id="throughput-plot"' dom.html || fail "no throughput plot in the DOM"
  grep -q 'id="latency-plot"' dom.html || fail "no latency plot in the DOM"
  if grep -E "CONSOLE|Uncaught|Failed to load" console.log; then fail "console errors"; fi
  timeout 60 "${CHROME[@]}" --hide-scrollbars --window-size=1600,1000 \
    --screenshot="$WORK/shot.png" "file://$WORK/overlay.html" 2>> console.log \
    || fail "chromium --screenshot"
  python3 "$HERE/png_check.py" shot.png || fail "the screenshot lacks a plot"
  [ -n "${KESTREL_BENCH_KEEP:-}" ] && cp shot.png overlay.html "$KESTREL_BENCH_KEEP/"
else
  echo "SKIP the Chromium check: chromium is not installed"
fi
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
if "$KESTREL" serve --help > /dev/null 2>&1; then
  echo "== against kestrel serve: tensors through system shared memory (gRPC and HTTP, tiny model)"
  TH=$(free_port); TG=$(free_port); TM=$(free_port)
  TINY=("$KESTREL" serve --model "$HERE/../server/data/tiny.onnx" --backend cpu --http-port "$TH"
        --grpc-port "$TG" --metrics-port "$TM" --engine-cache-dir none)
  "$KESTREL" bench -m tiny -i grpc -u 127.0.0.1:$TG --shared-memory system \
    --concurrency-range 1:2 -p 500 -r 3 -s 100 --no-progress -f shm.csv --json shm.json \
    --cold-start -- "${TINY[@]}" --allow-client-shm > shm.out 2>&1 \
    || fail "bench --shared-memory system: $(tail -20 shm.out)"
  cat shm.out
  [ "$(wc -l < shm.csv)" = 3 ] || fail "shared-memory CSV rows"
  python3 - shm.json <<'PY' || fail "shared-memory JSON"
import json, sys
for p in json.load(open(sys.argv[1]))["points"]:
    s = p["summary"]
    assert s["requests"] > 0 and s["errors"] == 0, s
PY
  "$KESTREL" bench -m tiny -u 127.0.0.1:$TH --shared-memory system --concurrency-range 2 -p 500 \
    -r 3 -s 100 --no-progress -f shm_http.csv --cold-start -- "${TINY[@]}" --allow-client-shm \
    > shm_http.out 2>&1 || fail "bench --shared-memory system over HTTP: $(tail -20 shm_http.out)"
  cat shm_http.out
  [ "$(wc -l < shm_http.csv)" = 2 ] || fail "shared-memory CSV over HTTP"
  ls /dev/shm | grep -q kestrel_bench_ && fail "the bench left shared-memory objects behind"
  "$KESTREL" bench -m tiny -i grpc -u 127.0.0.1:$TG --shared-memory system -p 300 -r 1 \
    --no-progress --cold-start -- "${TINY[@]}" > noshm.out 2>&1 \
    && fail "bench --shared-memory against a server that does not allow it succeeded"
  grep -q "allow-client-shm" noshm.out || fail "no hint to --allow-client-shm: $(tail -5 noshm.out)"
  ls /dev/shm | grep -q kestrel_bench_ && fail "a failed shared-memory run left objects behind"
  if [ ! -e /dev/nvidiactl ]; then
    echo "== --shared-memory cuda without a GPU: a clear error"
    "$KESTREL" bench -m tiny -i grpc -u 127.0.0.1:$TG --shared-memory cuda -p 300 -r 1 \
      --no-progress --cold-start -- "${TINY[@]}" --allow-client-shm > nogpu.out 2>&1 \
      && fail "bench --shared-memory cuda without a GPU succeeded"
    grep -qi "CUDA" nogpu.out || fail "no word of CUDA in the error: $(tail -5 nogpu.out)"
    tail -2 nogpu.out
  fi
  echo "== a bench stopped with SIGTERM stops the server it started"
  XH=$(free_port); XG=$(free_port); XM=$(free_port)
  "$KESTREL" bench -m tiny -i grpc -u 127.0.0.1:$XG -p 20000 -r 3 --no-progress --cold-start -- \
    "$KESTREL" serve --model "$HERE/../server/data/tiny.onnx" --backend cpu --http-port "$XH" \
    --grpc-port "$XG" --metrics-port "$XM" --engine-cache-dir none > killed.out 2>&1 &
  BPID=$!
  for _ in $(seq 200); do grep -q "cold start:" killed.out && break; sleep 0.1; done
  grep -q "cold start:" killed.out || fail "the bench to be stopped did not start: $(tail -5 killed.out)"
  pgrep -f -- "^[^ ]*kestrel serve .*--http-port $XH " > /dev/null || fail "pgrep does not see the server to be stopped"
  kill -TERM $BPID; wait $BPID
  for _ in $(seq 100); do pgrep -f -- "^[^ ]*kestrel serve .*--http-port $XH " > /dev/null || break; sleep 0.1; done
  pgrep -f -- "^[^ ]*kestrel serve .*--http-port $XH " > /dev/null && fail "a bench stopped with SIGTERM left its server"
fi
MODEL="${KESTREL_SHARED:-}/models/yolov5n.onnx"
if [ $ACCURACY = 1 ] && [ -f "$MODEL" ] && "$KESTREL" serve --help > /dev/null 2>&1; then
  echo "== against kestrel serve (CPU): cold start, /detect under load, --accuracy"
  SH=$(free_port); SG=$(free_port); SM=$(free_port)
  SERVE=("$KESTREL" serve --model "$MODEL" --backend cpu --http-port "$SH" --grpc-port "$SG"
         --metrics-port "$SM")
  "$KESTREL" bench -m yolov5n -u 127.0.0.1:$SH --images images --accuracy --labels labels \
    -p 1500 -r 3 -s 100 --no-progress --cold-start -f serve.csv --json serve.json \
    --report serve.html --label "kestrel serve, /detect" -- "${SERVE[@]}" > serve.out 2>&1 \
    || fail "bench against kestrel serve: $(tail -20 serve.out)"
  cat serve.out
  [ "$(head -1 serve.csv)" = "$HEADER" ] || fail "serve CSV header"
  python3 - serve.json <<'PY' || fail "serve JSON"
import json, sys
d = json.load(open(sys.argv[1]))
s = d["points"][0]["summary"]
assert s["requests"] > 0 and s["errors"] == 0, s
assert s["server"]["compute_infer_us"] > 0, s  # the stats endpoint's breakdown
assert d["cold_start"]["first_answer_s"] >= d["cold_start"]["ready_s"] > 0, d["cold_start"]
assert d["accuracy"]["images"] == 4 and d["accuracy"]["labels"] > 0, d["accuracy"]
PY
  # The server's answers must score what the engine scores directly (kestrel eval, same method,
  # same thresholds).
  "$KESTREL" eval "$MODEL" --images images --labels labels > eval.out 2>&1 || fail "kestrel eval"
  python3 - serve.json eval.out <<'PY' || fail "mAP through the server differs from kestrel eval"
import json, re, sys
a = json.load(open(sys.argv[1]))["accuracy"]
m = re.search(r"mAP@0.5 = ([0-9.]+)\s+mAP@0.5:0.95 = ([0-9.]+)", open(sys.argv[2]).read())
print("server:", a["map50"], a["map50_95"], "eval:", m.group(1), m.group(2))
assert abs(a["map50"] - float(m.group(1))) < 0.01 and abs(a["map50_95"] - float(m.group(2))) < 0.01
PY
  echo "== against kestrel serve: random tensors over gRPC"
  "$KESTREL" bench -m yolov5n -i grpc -u 127.0.0.1:$SG --shape images:1,3,640,640 -p 1500 -r 3 \
    -s 100 --no-progress --cold-start -f serve_grpc.csv -- "${SERVE[@]}" > serve_grpc.out 2>&1 \
    || fail "gRPC bench against kestrel serve: $(tail -20 serve_grpc.out)"
  cat serve_grpc.out
  [ "$(wc -l < serve_grpc.csv)" = 2 ] || fail "serve gRPC CSV"
else
  echo "SKIP the kestrel serve run: no serve subcommand, model or labelled images"
fi
echo "PASS"
