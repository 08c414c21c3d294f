#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer (warnings are errors), runs every test, then fuzzes the parsers briefly
# (scripts/fuzz.sh).
# Tests that need a GPU or ../shared skip with a message when those are absent.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKESTREL_SANITIZE=ON \
  -DKESTREL_WERROR=ON >/dev/null
cmake --build build-test
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
ctest --test-dir build-test --output-on-failure -j2
scripts/fuzz.sh 60
