#!/bin/bash
# The bench's own overhead (issue 6: "it sustains >= 50,000 requests/s over gRPC on 16 cores"):
# kestrel bench over gRPC against fake_kserve_server with no service time, on the same host, with
# the CPU seconds each side used. Not a CI test: it wants a 16-core machine.
#
#   tests/bench/overhead.sh build/src/kestrel build/tests/fake_kserve_server
#
# On the lent H100 machine (no Debian libraries there) it ran from a bundle of both stripped
# binaries, their shared libraries and Debian's ld-linux, as `lib/ld-linux-x86-64.so.2
# --library-path lib ./kestrel ...` (set RUN to that prefix). FAKE_ARGS: more flags for the fake
# server (--grpc-cqs N, --grpc-max-pollers N).
set -u
KESTREL=$1
FAKE=$2
RUN=${RUN:-}
WORK=$(mktemp -d)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
lscpu | grep "Model name"; nproc
$RUN "$FAKE" --port-file "$WORK/ports" --service-us 0 ${FAKE_ARGS:-} > "$WORK/fake.log" 2>&1 &
FP=$!
trap 'kill $FP; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do [ -s "$WORK/ports" ] && break; sleep 0.05; done
read -r _ GRPC < "$WORK/ports"
TIMEFORMAT="  client CPU: user %U s, sys %S s, wall %R s"
for c in ${CONCURRENCIES:-16 32 64}; do
  before=$(cpu $FP)
  time $RUN "$KESTREL" bench -m fake -i grpc -u 127.0.0.1:$GRPC --concurrency-range $c \
    -p 2000 -r 3 -s 30 --no-progress | tail -1
  echo "  server CPU: $(( ($(cpu $FP) - before) / 100 )) s"
done
# Open loop at 50,000 requests/s: whatever is not kept up with shows as latency (no omission).
$RUN "$KESTREL" bench -m fake -i grpc -u 127.0.0.1:$GRPC --request-rate-range 50000 \
  --max-threads 64 -p 2000 -r 4 -s 20 --no-progress | tail -2
