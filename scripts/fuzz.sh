#!/usr/bin/env bash
# Fuzzes the ONNX importer with libFuzzer for SECONDS (default 60), seeded with the models of ONNX's
# node tests. Builds with clang in build-fuzz. Exits non-zero when the fuzzer finds a crash; the
# reproducer is left in build-fuzz/crash-*.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKESTREL_FUZZ=ON -DKESTREL_CUDA=OFF >/dev/null
cmake --build build-fuzz --target import_fuzzer
corpus=build-fuzz/corpus
mkdir -p "$corpus"
seeds=/usr/share/libonnx-testdata/data/node
if [ -d "$seeds" ] && [ -z "$(ls -A "$corpus")" ]; then
  for d in "$seeds"/*/; do cp "$d/model.onnx" "$corpus/$(basename "$d").onnx"; done
fi
cd build-fuzz
./tests/import_fuzzer -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 corpus
