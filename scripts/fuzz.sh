#!/usr/bin/env bash
# Fuzzes Kestrel's parsers with libFuzzer for SECONDS in all (default 60): the ONNX importer (half
# the time, seeded with the models of ONNX's node tests), engine files (a quarter, seeded with
# engine files built from those models) and config.pbtxt (a quarter, seeded with
# tests/fuzz/seeds/model_config). Builds with clang in build-fuzz. Exits non-zero when a fuzzer
# finds a crash; the reproducer is left in build-fuzz/crash-*.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKESTREL_FUZZ=ON -DKESTREL_CUDA=OFF >/dev/null
cmake --build build-fuzz --target import_fuzzer engine_file_fuzzer model_config_fuzzer
seeds=/usr/share/libonnx-testdata/data/node
cd build-fuzz
mkdir -p corpus corpus-kplan corpus-config
if [ -d "$seeds" ] && [ -z "$(ls -A corpus)" ]; then
  for d in "$seeds"/*/; do cp "$d/model.onnx" "corpus/$(basename "$d").onnx"; done
fi
if [ -d "$seeds" ] && [ -z "$(ls -A corpus-kplan)" ]; then
  KESTREL_FUZZ_WRITE_SEEDS=corpus-kplan ./tests/engine_file_fuzzer -- \
    "$seeds"/test_conv_*/model.onnx "$seeds"/test_relu/model.onnx "$seeds"/test_add/model.onnx \
    "$seeds"/test_concat_*/model.onnx "$seeds"/test_maxpool_*/model.onnx \
    "$seeds"/test_resize_*/model.onnx "$seeds"/test_transpose_*/model.onnx
fi
cp -n ../tests/fuzz/seeds/model_config/*.pbtxt corpus-config/
run() {  # fuzzer corpus seconds
  ./tests/"$1" -max_total_time="$3" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 "$2"
}
run import_fuzzer corpus $((seconds / 2))
run engine_file_fuzzer corpus-kplan $((seconds / 4))
run model_config_fuzzer corpus-config $((seconds / 4))
