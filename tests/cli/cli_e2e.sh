#!/bin/bash
# `kestrel perf`, `build`, `inspect` and `run` end to end on yolov5n, on the CPU (see tests.cmake):
# perf --streams N runs N execution contexts at once and reports their aggregate throughput, with
# the default of 1 keeping the single-stream table; --tf32 is refused with --fp16, is recorded in
# engine files (inspect shows it) and asked of an engine file that lacks it is an error naming it.
# Usage: cli_e2e.sh KESTREL
set -u
KESTREL=$1
MODEL=${KESTREL_SHARED:-../shared}/models/yolov5n.onnx
if [ ! -f "$MODEL" ]; then
  echo "SKIP: needs $MODEL (set KESTREL_SHARED)"
  exit 77
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$WORK"

# The fields of perf's row for batch 1 (the first column is the batch).
row() { awk '$1 == "1" && NF >= 8' "$1"; }

echo "-- perf --streams 2"
"$KESTREL" perf "$MODEL" --backend cpu --batch 1 -n 3 --warmup 1 --streams 2 > streams.txt 2>&1 ||
  fail "perf --streams 2: $(cat streams.txt)"
cat streams.txt
grep -q "^2 streams" streams.txt || fail "no '2 streams' line"
grep -q "mean ms" streams.txt || fail "no 'mean ms' column in the --streams table"
[ -n "$(row streams.txt)" ] || fail "no row for batch 1"
row streams.txt | awk '{ exit !($2 > 0 && $3 > 0 && $3 <= $4 && $4 <= $5) }' ||
  fail "img/s and p50 <= p90 <= p99 expected: $(row streams.txt)"

echo "-- perf, one stream (the table as before)"
"$KESTREL" perf "$MODEL" --backend cpu --batch 1 -n 2 --warmup 1 > one.txt 2>&1 ||
  fail "perf: $(cat one.txt)"
grep -q "streams" one.txt && fail "the single-stream table mentions streams"
grep -Eq "^ +batch +img/s +p50 ms +p90 ms +p99 ms +H2D ms +compute +D2H ms" one.txt ||
  fail "the single-stream header changed: $(cat one.txt)"
[ -n "$(row one.txt)" ] || fail "no row for batch 1"

echo "-- perf --streams 0 is refused"
"$KESTREL" perf "$MODEL" --backend cpu --batch 1 --streams 0 > zero.txt 2>&1 &&
  fail "--streams 0 accepted"
grep -q "streams must be at least 1" zero.txt || fail "unclear error: $(cat zero.txt)"

echo "-- build --tf32 --fp16 is refused"
"$KESTREL" build "$MODEL" --backend cpu --tf32 --fp16 -o both.kplan > both.txt 2>&1 &&
  fail "--tf32 with --fp16 accepted"
grep -q "TF32 is a float32 mode" both.txt || fail "unclear error: $(cat both.txt)"

echo "-- build --tf32, inspect, perf"
"$KESTREL" build "$MODEL" --backend cpu --tf32 --max-batch 2 -o tf32.kplan > build.txt 2>&1 ||
  fail "build --tf32: $(cat build.txt)"
grep -q "TF32 in [0-9]* convolutions" build.txt || fail "build does not say TF32: $(cat build.txt)"
"$KESTREL" inspect tf32.kplan > inspect.txt 2>&1 || fail "inspect: $(cat inspect.txt)"
cat inspect.txt
grep -q "^precision  tf32" inspect.txt || fail "inspect does not show tf32"
"$KESTREL" perf tf32.kplan --tf32 --batch 1 -n 2 --warmup 1 > perf_tf32.txt 2>&1 ||
  fail "perf on the tf32 engine: $(cat perf_tf32.txt)"
grep -q "loaded tf32.kplan .*: tf32 " perf_tf32.txt || fail "load summary: $(cat perf_tf32.txt)"

echo "-- --tf32 on an engine built without it is refused"
"$KESTREL" build "$MODEL" --backend cpu --max-batch 1 -o fp32.kplan > build32.txt 2>&1 ||
  fail "build: $(cat build32.txt)"
"$KESTREL" inspect fp32.kplan | grep -q "^precision  fp32" || fail "inspect does not show fp32"
"$KESTREL" perf fp32.kplan --tf32 --batch 1 -n 1 > mismatch.txt 2>&1 &&
  fail "--tf32 accepted on an fp32 engine"
grep -q "rebuild it with --tf32" mismatch.txt || fail "unclear error: $(cat mismatch.txt)"

echo "-- run --tf32"
"$KESTREL" run "$MODEL" --backend cpu --tf32 --random -o out > run.txt 2>&1 ||
  fail "run --tf32: $(cat run.txt)"
[ -f out/output.npy ] || fail "run wrote no output.npy: $(ls out)"

echo "PASS"
